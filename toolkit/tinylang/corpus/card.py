"""``stats.json`` and ``card.md`` of a built corpus: counts, cost, provenance, licence note.

    stats = write_stats(out, pack, options, requests, split_counts, run)
    write_card(out, pack, options, stats)
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from ..langpack import LanguagePack
from ..records import read_jsonl
from .store import raw_shards, read_failures, read_stats


def corpus_totals(out: Path, wanted: set[str]) -> tuple[dict, set[str]]:
    """Provenance and token totals over every run that contributed to the corpus."""
    sources, models, versions, features = Counter(), Counter(), Counter(), Counter()
    prompt_tokens = completion_tokens = words = 0
    seen: set[str] = set()
    for shard in raw_shards(out):
        for record in read_jsonl(shard):
            if record.id not in wanted or record.id in seen:
                continue
            seen.add(record.id)
            sources[record.source] += 1
            models[record.model or "?"] += 1
            versions[record.prompt_version or "?"] += 1
            features.update(record.features or ["none"])
            prompt_tokens += record.usage.get("prompt_tokens", 0)
            completion_tokens += record.usage.get("completion_tokens", 0)
            words += len(record.text.split())
    return {"stories": len(seen), "sources": dict(sources), "models": dict(models), "prompt_versions": dict(versions),
            "features": dict(features), "prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "mean_words": round(words / len(seen), 1) if seen else 0}, seen


def write_stats(out: Path, pack: LanguagePack, options, requests, split_counts: dict, run: dict,
                filter_stats: dict | None = None, splits_fingerprint: str | None = None, plan: dict | None = None) -> dict:
    """``plan`` (lang, mode, seed or source, n, format) is what the next build of ``out`` is checked against."""
    wanted = {r.id for r in requests}
    failed_ids = set(read_failures(out))
    totals, written = corpus_totals(out, wanted)
    stats = {
        "lang": pack.code, "mode": options.mode, "format": options.format, "requested": len(requests),
        "source": options.source, "splits": split_counts, "corpus": totals,
        "missing": len(wanted - written),
        "failed_pending_retry": len((failed_ids & wanted) - written),
        "filter": filter_stats,
        "splits_fingerprint": splits_fingerprint,
        "plan": plan,
        "last_run": run,
    }
    _write_stats_file(out, stats)
    return stats


def forget_splits_fingerprint(out: Path) -> None:
    """Drop the stored ``splits_fingerprint`` before the splits and rejected.jsonl are replaced: the
    next build trusts the splits only while the fingerprint matches, so a build stopped while the new
    files are being renamed into place (some new, some old) is filtered again instead of trusted."""
    stats = read_stats(out)
    if stats.get("splits_fingerprint") is not None:
        _write_stats_file(out, stats | {"splits_fingerprint": None})


def _write_stats_file(out: Path, stats: dict) -> None:
    """Written whole or not at all (a temporary file renamed over it): the plan in it guards reruns."""
    temporary = out / "stats.json.tmp"
    temporary.write_text(json.dumps(stats, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    temporary.replace(out / "stats.json")


def write_card(out: Path, pack: LanguagePack, options, stats: dict) -> None:
    corpus = stats["corpus"]
    lines = [
        f"# {pack.name} TinyStories-style corpus ({options.mode})",
        "",
        f"Built with `tinylang build-corpus --lang {pack.code} --mode {options.mode} --n {options.n}"
        + (f" --seed {options.seed}" if options.mode == "generate" and options.seed else "")
        + (" --format instruct" if options.format == "instruct" else "") + "`.",
        "",
        "| | |", "|---|---|",
        f"| language | {pack.name} ({pack.code}) |",
        f"| stories written | {corpus['stories']:,} |",
        f"| in the splits | train {stats['splits'].get('train', 0):,}, validation {stats['splits'].get('validation', 0):,} |",
        f"| written by | {', '.join(f'{k}: {v:,}' for k, v in corpus['sources'].items()) or '-'} |",
        f"| models | {', '.join(f'{k}: {v:,}' for k, v in corpus['models'].items()) or '-'} |",
        f"| prompt versions | {', '.join(corpus['prompt_versions']) or '-'} |",
        f"| mean length | {corpus['mean_words']} words |",
        f"| features | {', '.join(f'{k}: {v:,}' for k, v in sorted(corpus['features'].items()))} |",
    ]
    if corpus["prompt_tokens"]:
        lines.append(f"| tokens | {corpus['prompt_tokens']:,} prompt + {corpus['completion_tokens']:,} completion |")
    if options.mode == "translate":
        lines.append(f"| translated from | {options.source} ({options.source_split}); ids are the source ids |")
    if stats["missing"]:
        lines.append(f"| missing | {stats['missing']:,} requests failed; rerun the command to retry them |")
    lines += [
        "",
        "Stories marked `source: grammar` were written by the pack's offline story grammar, not by an LLM.",
        _filter_note(stats.get("filter"), pack),
        "",
        "Licence: generated text follows the terms of the model that wrote it; translations of",
        "TinyStories inherit its CDLA-Sharing-1.0 licence. Check both before publishing.",
    ]
    (out / "card.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


def _filter_note(filter_stats: dict | None, pack: LanguagePack) -> str:
    if not filter_stats:
        return "The splits hold every story, unfiltered (built with --no-filter)."
    if not filter_stats["seen"]:  # every request failed: nothing reached the filters, and there is no share
        return f"The {pack.name} pack's filter pipeline had no stories to check yet."
    reasons = ", ".join(f"{name}: {sum(r.values()):,}" for name, r in filter_stats["dropped_by"].items()) or "none"
    return (f"Filtered with the {pack.name} pack's pipeline: kept {filter_stats['kept']:,} of {filter_stats['seen']:,} "
            f"({filter_stats['kept_share']:.1%}); dropped by {reasons}; every dropped story is in rejected.jsonl with its reason.")
