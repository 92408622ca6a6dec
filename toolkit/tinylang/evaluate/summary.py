"""``summary.json`` of an evaluation: means with 95% intervals, the judge's bookkeeping, and the
warnings a user must see.

    summary = summarise(rows, judged_rows, settings, options, pack, held_out, validation, usage, seconds)

Judge scores are averaged over the repeats of each completion before the interval is taken: the
repeats grade the same text, so they are not independent samples, and counting each as one would
narrow the interval by the square root of the number of repeats. The judge's own spread across
repeats is reported separately. Unparsed answers and failed requests are counted, never scored.
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np

from .judge import CRITERIA, FAILED_PREFIX, OPTIONAL_CRITERIA
from .metrics import distinct_n, mean_ci

SHARE = (0.0, 1.0)
SCORE = (1.0, 10.0)
BOUNDS = {"judge_grammar": SCORE, "judge_creativity": SCORE, "judge_consistency": SCORE, "judge_plot": SCORE,
          "judge_instruction_following": SCORE, "dictionary_coverage": SHARE, "vocabulary_adherence": SHARE,
          "repetition": SHARE, "language_ok": SHARE, "requested_words_used": SHARE,
          "words": (0.0, float("inf")), "bytes": (0.0, float("inf"))}
JUDGE_SCORES = tuple(f"judge_{name}" for name in CRITERIA + OPTIONAL_CRITERIA)
SUMMARY_METRICS = ("judge_grammar", "judge_creativity", "judge_consistency", "judge_plot", "judge_instruction_following",
                   "words", "bytes", "dictionary_coverage", "vocabulary_adherence", "repetition", "language_ok",
                   "requested_words_used")


def _present(value) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def _repeats_by_completion(judged_rows: list[dict]) -> dict[tuple, list[dict]]:
    groups: dict[tuple, list[dict]] = {}
    for row in judged_rows:
        groups.setdefault((row["beginning_id"], row["sample"]), []).append(row)
    return groups


def completion_scores(judged_rows: list[dict]) -> list[dict]:
    """One row per completion (beginning id, sample, each judge score averaged over the repeats that
    gave it; None where none did): the unit that judge intervals are taken over."""
    averaged = []
    for (beginning_id, sample), group in _repeats_by_completion(judged_rows).items():
        row = {"beginning_id": beginning_id, "sample": sample}
        for name in JUDGE_SCORES:
            values = [float(r[name]) for r in group if _present(r.get(name))]
            row[name] = sum(values) / len(values) if values else None
        averaged.append(row)
    return averaged


def judge_repeat_spread(judged_rows: list[dict]) -> dict:
    """Mean standard deviation of the judge's scores over repeats of the same completion, per criterion."""
    spread = {}
    for name in CRITERIA + OPTIONAL_CRITERIA:
        sds = []
        for group in _repeats_by_completion(judged_rows).values():
            values = [float(r[f"judge_{name}"]) for r in group if _present(r.get(f"judge_{name}"))]
            if len(values) > 1:
                sds.append(float(np.std(values, ddof=1)))
        if sds or name in CRITERIA:
            spread[name] = sum(sds) / len(sds) if sds else None
    return spread


def metric_summaries(rows: list[dict], judged_rows: list[dict]) -> dict:
    """Mean, 95% interval and n of every metric: completion metrics over completions, judge scores
    over completions too (repeats averaged first)."""
    per_completion = completion_scores(judged_rows)
    metrics = {}
    for name in SUMMARY_METRICS:
        source = per_completion if name.startswith("judge_") else rows
        values = [float(r[name]) for r in source if _present(r.get(name))]
        mean, low, high = mean_ci(values, BOUNDS.get(name))
        if mean is not None:
            metrics[name] = {"mean": mean, "ci95": [low, high], "n": len(values)}
    return metrics


def judge_counts(judged_rows: list[dict], instruct: bool) -> dict:
    """How many judge answers parsed, could not be parsed, or never came (failed requests, by kind),
    with the first reason of each: the numbers behind the console warnings and report.md."""
    failed = [r for r in judged_rows if r.get("judge_failed")]
    unparsed = [r for r in judged_rows if not r.get("judge_parsed") and not r.get("judge_failed")]
    parsed = [r for r in judged_rows if r.get("judge_parsed")]
    counts = {"answers": len(judged_rows), "parsed": len(parsed), "unparsed": len(unparsed), "failed": len(failed),
              "failures_by_kind": dict(Counter(r.get("judge_failure") or "unknown" for r in failed)),
              "first_unparsed": unparsed[0].get("judge_error") if unparsed else None,
              "first_failure": failed[0].get("judge_error", "").removeprefix(FAILED_PREFIX) if failed else None}
    if instruct:  # parsed answers that left out the instruct criterion: that score is unparsed
        counts["instruction_following_unparsed"] = sum(
            1 for r in parsed if not _present(r.get("judge_instruction_following")))
    return counts


def judge_warnings(judge: dict | None) -> list[str]:
    """One line per kind of problem with the judge's answers, for stderr; none when all parsed."""
    if not judge:
        return []
    lines = []
    answers = judge.get("answers", judge.get("parsed", 0) + judge.get("unparsed", 0))
    if judge.get("failed"):
        kinds = ", ".join(f"{count} {kind}" for kind, count in sorted(judge["failures_by_kind"].items()))
        lines.append(f"{judge['failed']:,} of {answers:,} judge requests failed ({kinds}; first: "
                     f"{judge['first_failure']}): recorded as judge-failed in completions.parquet and never scored; "
                     "run the same command again to retry them (answers so far are cached)")
    if judge.get("unparsed"):
        lines.append(f"{judge['unparsed']:,} of {answers:,} judge answers could not be parsed (first: "
                     f"{judge['first_unparsed']}): kept with their raw text in completions.parquet, never scored")
    if judge.get("instruction_following_unparsed"):
        lines.append(f"{judge['instruction_following_unparsed']:,} of {judge['parsed']:,} parsed judge answers gave no "
                     "instruction_following score: counted as unparsed for that score")
    return lines


def judge_summary(judged_rows: list[dict], settings, options, pack, usage) -> dict:
    age_groups = Counter(r["judge_age_group"] for r in judged_rows if r.get("judge_age_group"))
    return {
        "model": settings.model, "prompt_version": pack.spec.grading.version, "repeats": options.judge_repeats,
        "temperature": settings.temperature, "max_tokens": settings.max_tokens, "timeout_s": settings.timeout_s,
        "max_attempts": settings.max_attempts,
        **judge_counts(judged_rows, options.instruct),
        "age_groups": dict(sorted(age_groups.items())),
        "repeat_sd": judge_repeat_spread(judged_rows) if options.judge_repeats > 1 else None,
        "usage": usage.as_dict() if usage else None,
    }


def summarise(rows, judged_rows, settings, options, pack, held_out, validation, judge_usage, seconds) -> dict:
    texts = [r["completion"] for r in rows]
    return {
        "run": str(options.run), "name": options.name, "lang": pack.code, "beginnings": len({r["beginning_id"] for r in rows}),
        "completions": len(rows), "samples": options.samples, "temperature": options.temperature,
        "top_k": options.top_k, "top_p": options.top_p, "max_bytes": options.max_bytes, "seed": options.seed,
        "limit": options.limit, "instruct": options.instruct,
        "guidance": options.guidance if options.instruct else None, "metrics": metric_summaries(rows, judged_rows),
        "distinct": {f"distinct_{n}": distinct_n(texts, n) for n in (1, 2, 3)},
        "held_out": held_out, "validation": validation,
        "judge": None if settings is None else judge_summary(judged_rows, settings, options, pack, judge_usage),
        "seconds": round(seconds, 1),
    }
