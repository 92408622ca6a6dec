"""``report.md`` of an evaluation: tables with means and 95% intervals, and example completions.

    write_report(Path("runs/x/eval/default/report.md"), summary, rows, pack)
"""

from __future__ import annotations

from pathlib import Path

from ..langpack import LanguagePack
from .summary import completion_scores

LABELS = {
    "judge_grammar": "judge: grammar (1-10)", "judge_creativity": "judge: creativity (1-10)",
    "judge_consistency": "judge: consistency (1-10)", "judge_plot": "judge: plot (1-10)",
    "judge_instruction_following": "judge: instruction following (1-10)",
    "requested_words_used": "requested words used (lemmatised)",
    "words": "completion length (words)", "bytes": "completion length (bytes)",
    "dictionary_coverage": "dictionary coverage", "vocabulary_adherence": "vocabulary adherence",
    "repetition": "repetition (share in repeated 5-grams)", "language_ok": "language-ID rate",
}


def _number(value) -> str:
    return "-" if value is None else f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"


def example_completions(rows: list[dict], count: int) -> list[dict]:
    """The first sample of each of the first ``count`` beginnings, with its judge scores averaged over
    the judge's repeats: one example per beginning, however many samples and repeats there are."""
    scores = {(r["beginning_id"], r["sample"]): r for r in completion_scores(rows)}
    chosen: dict[str, dict] = {}
    for row in rows:
        if row["beginning_id"] not in chosen and len(chosen) < count:
            chosen[row["beginning_id"]] = row | scores[(row["beginning_id"], row["sample"])]
    return list(chosen.values())


def held_out_title(summary: dict) -> str:
    which = "the first {} of the pack's" if summary.get("limit") else "the pack's {}"
    return f"held-out text ({which.format(summary['held_out']['stories'])} evaluation beginnings, no end-of-story)"


def judge_lines(judge: dict) -> list[str]:
    """What the judge was and how many of its answers count."""
    failed = f", {judge['failed']:,} failed requests" if judge.get("failed") else ""
    lines = [f"Judge: `{judge['model']}`, prompt `{judge['prompt_version']}`, {judge['repeats']} repeat(s) at "
             f"temperature {judge.get('temperature', 0):g}; {judge['parsed']:,} answers parsed, {judge['unparsed']:,} "
             f"unparsed{failed} (kept with their raw text or reason in completions.parquet, never scored). Age groups: "
             + (", ".join(f"{k} {v}" for k, v in sorted(judge["age_groups"].items())) or "-") + "."]
    if judge.get("instruction_following_unparsed"):
        lines.append(f"{judge['instruction_following_unparsed']:,} parsed answers gave no instruction-following score "
                     "(unparsed for that score).")
    if judge["repeats"] > 1:
        lines.append("Judge scores are averaged over the repeats of each completion first, so n counts completions.")
    if judge.get("repeat_sd"):
        lines.append("Judge variance: mean standard deviation over repeats of the same completion: "
                     + ", ".join(f"{k} {v:.2f}" for k, v in judge["repeat_sd"].items() if v is not None) + ".")
    lines.append("Judges favour longer completions; compare the scores with the mean length above. Scores across "
                 "languages also depend on the judge's skill in each language.")
    return lines


def write_report(path: Path, summary: dict, rows: list[dict], pack: LanguagePack, examples: int = 3) -> None:
    lines = [
        f"# Evaluation `{summary['name']}` of `{summary['run']}` ({pack.name})",
        "",
        f"{summary['completions']:,} completions: {summary['beginnings']} story beginnings x {summary['samples']} samples, "
        f"temperature {summary['temperature']}, at most {summary['max_bytes']} bytes, seed {summary['seed']}."
        + (f" Instruct requests: three words from the {summary['requested_words_from']} and 0-3 features per "
           "beginning." if summary.get("requested_words_from") else "")
        + (f" Word guidance {summary['guidance']:g} (sampling steered toward requested words not yet used; "
           "0 is the model alone)." if summary.get("instruct") and summary.get("guidance") is not None else ""),
        "",
        "| metric | mean | 95% interval | n |",
        "|---|---:|---:|---:|",
    ]
    for name, label in LABELS.items():
        metric = summary["metrics"].get(name)
        if metric:
            low, high = metric["ci95"]
            interval = f"{_number(low)} - {_number(high)}" if low is not None else "-"
            lines.append(f"| {label} | {_number(metric['mean'])} | {interval} | {metric['n']:,} |")
    for name, value in summary["distinct"].items():
        lines.append(f"| {name.replace('_', '-')} | {value:.3f} | | |")
    for title, bits in ((held_out_title(summary), summary["held_out"]),
                        ("corpus validation split", summary["validation"])):
        if bits:
            lines.append(f"| bits per byte, {title} | {_number(bits['bits_per_byte'])} | | {bits['stories']} |")
            lines.append(f"| bits per character, {title} | {_number(bits['bits_per_char'])} | | |")
    for part, gain in (summary.get("request_gain") or {}).items():
        if isinstance(gain, dict) and gain.get("gain_bits_per_story") is not None:
            low, high = gain["ci95"]
            lines.append(f"| bits per story saved by its own requested {part} (vs another story's) | "
                         f"{_number(gain['gain_bits_per_story'])} | {_number(low)} - {_number(high)} | {gain['n']} |")
    lines.append("")
    judge = summary["judge"]
    if judge is None:
        lines.append("Judge scores were skipped: no judge endpoint was configured (`--judge-model`, with `--base-url` "
                     "or `OPENAI_API_KEY`).")
    else:
        lines += judge_lines(judge)
    lines += ["", "## Example completions", ""]
    for row in example_completions(rows, examples):
        scores = ", ".join(f"{k[6:]} {row[k]:.3g}" for k in ("judge_grammar", "judge_creativity", "judge_consistency",
                                                          "judge_plot") if row.get(k) is not None)
        lines += [f"**{row['beginning_id']}** " + (f"({scores})" if scores else ""), "",
                  f"> {row['beginning']} **{row['completion']}**".replace("\n", "\n> "), ""]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
