"""``tinylang compare``: evaluations of several runs side by side, as tables and plots.

    compare_runs([Path("runs/fi-tiny"), Path("runs/en-tiny")], Path("results/compare"))

Writes ``comparison.md`` and ``comparison.csv`` (one row per run: language, parameters, training
bytes, the evaluation's settings, every metric with its 95% interval as ``_ci95_low`` and
``_ci95_high`` columns), ``judge_scores.png`` (judge scores by language and model) and
``bpb_vs_bytes.png`` (validation bits per byte against training bytes, from each run's
metrics.jsonl). Bits per byte favours no language fairly (Finnish spends more bytes per idea than
English), so runs are also compared in bits per story on the evaluation beginnings, which are the
same stories in every language pack. Evaluations made with different settings (samples, bytes,
temperature, --limit, judge) are compared anyway, with a warning per setting.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from ..outputs import make_folder

METRICS = ("judge_grammar", "judge_creativity", "judge_consistency", "judge_plot", "vocabulary_adherence",
           "dictionary_coverage", "language_ok", "words", "repetition")
JUDGE = ("judge_grammar", "judge_creativity", "judge_consistency", "judge_plot")
# Settings that change what the numbers mean: (column, label in warnings).
SETTINGS = (("samples", "samples per beginning (--samples)"), ("max_bytes", "bytes per completion (--max-bytes)"),
            ("temperature", "sampling temperature (--temperature)"), ("limit", "beginnings (--limit)"),
            ("judge_model", "judge model"))
# Settings only warned about: they change instruct evaluations, and story models have none.
WARNED_SETTINGS = (("guidance", "word guidance (--guidance)"),)
REQUIRED = ("lang", "completions", "metrics", "held_out.bits_per_byte", "held_out.bits_per_char",
            "held_out.bits_per_story")


class CompareError(ValueError):
    """Runs that cannot be compared; the message says what is missing."""


def _has(summary: dict, dotted: str) -> bool:
    value = summary
    for key in dotted.split("."):
        if not isinstance(value, dict) or key not in value:
            return False
        value = value[key]
    return True


def load_summary(run: Path, name: str) -> dict:
    """A run's summary.json, checked for what the comparison reads: a missing, unreadable or older
    summary is a CompareError naming the file, not a traceback."""
    path = Path(run) / "eval" / name / "summary.json"
    if not path.is_file():
        raise CompareError(f"{run}: no evaluation named {name!r} ({path} is missing): run `tinylang evaluate {run}"
                           + ("" if name == "default" else f" --name {name}") + "` first")
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CompareError(f"{path} is not a readable summary ({error}): run `tinylang evaluate {run}` again") from None
    missing = [key for key in REQUIRED if not _has(summary, key)] if isinstance(summary, dict) else ["everything"]
    if missing:
        raise CompareError(f"{path} has no {', '.join(missing)} (written by an older tinylang?): run "
                           f"`tinylang evaluate {run}` again")
    return summary


def evaluation_settings(summary: dict) -> dict:
    """The settings an evaluation was made with (limit None: all beginnings; judge_model None: no judge)."""
    return {"samples": summary.get("samples"), "max_bytes": summary.get("max_bytes"),
            "temperature": summary.get("temperature"), "limit": summary.get("limit"),
            "judge_model": (summary.get("judge") or {}).get("model"), "guidance": summary.get("guidance")}


def setting_warnings(runs: list[Path], summaries: list[dict]) -> list[str]:
    """One line per setting that differs between the evaluations: their numbers are not like for like."""
    lines = []
    for setting, label in SETTINGS + WARNED_SETTINGS:
        values = [evaluation_settings(summary)[setting] for summary in summaries]
        if len(set(map(repr, values))) > 1:
            lines.append(f"the evaluations differ in {label}: " + ", ".join(
                f"{run} {_setting_cell(setting, value)}" for run, value in zip(runs, values))
                + "; their numbers are not like for like")
    return lines


def comparison_table(runs: list[Path], name: str = "default") -> tuple[pd.DataFrame, list[dict]]:
    summaries = [load_summary(run, name) for run in runs]
    rows = []
    for run, summary in zip(runs, summaries):
        row = {"run": str(run), "lang": summary["lang"], "parameters": summary.get("parameters"),
               "training_bytes": summary.get("training_bytes"), "completions": summary["completions"],
               **evaluation_settings(summary)}
        for metric in METRICS:
            value = summary["metrics"].get(metric)
            bounds = value["ci95"] if value and value["ci95"][0] is not None else (None, None)
            row[metric] = value["mean"] if value else None
            row[f"{metric}_ci95_low"], row[f"{metric}_ci95_high"] = (
                None if bound is None else round(bound, 3) for bound in bounds)
        held = summary["held_out"]
        row["held_out_bits_per_byte"] = held["bits_per_byte"]
        row["held_out_bits_per_char"] = held["bits_per_char"]
        row["held_out_bits_per_story"] = held["bits_per_story"]
        row["validation_bits_per_byte"] = (summary.get("validation") or {}).get("bits_per_byte")
        rows.append(row)
    return pd.DataFrame(rows), summaries


def interval(row, metric: str) -> tuple[float, float] | None:
    """A metric's 95% interval from its _ci95_low/_ci95_high columns; None where it has none."""
    low, high = row.get(f"{metric}_ci95_low"), row.get(f"{metric}_ci95_high")
    return None if low is None or high is None or pd.isna(low) or pd.isna(high) else (low, high)


def parallel_bits(summaries: list[dict]) -> dict | None:
    """Mean bits per story over the beginning ids every run shares (the same stories in each language)."""
    shared = set.intersection(*(set(s["held_out"].get("bits_by_id", {})) for s in summaries)) if summaries else set()
    if not shared:
        return None
    return {"stories": len(shared),
            "bits_per_story": [sum(s["held_out"]["bits_by_id"][i] for i in shared) / len(shared) for s in summaries]}


def _cell(value, interval=None) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return "-"
    if isinstance(value, str):
        return value
    text = f"{value:,.3f}" if isinstance(value, float) and not float(value).is_integer() else f"{int(value):,}"
    return text + (f" [{interval[0]:.2f}, {interval[1]:.2f}]" if interval else "")


def _setting_cell(name: str, value) -> str:
    """A setting as the table and the warnings show it: no --limit is "all", no judge is "none"."""
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return {"limit": "all", "judge_model": "none"}.get(name, "-")
    return _cell(value)


def markdown(frame: pd.DataFrame, parallel: dict | None) -> str:
    settings = [setting for setting, _ in SETTINGS]
    columns = ["run", "lang", "parameters", "training_bytes", *settings, *METRICS, "held_out_bits_per_byte",
               "held_out_bits_per_char", "held_out_bits_per_story", "validation_bits_per_byte"]
    lines = ["| " + " | ".join(c.replace("_", " ") for c in columns) + " |", "|" + "---|" * len(columns)]
    for _, row in frame.iterrows():
        cells = [_cell(row[c], interval(row, c)) if c in METRICS else _setting_cell(c, row[c]) if c in settings
                 else _cell(row[c]) for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    notes = ["", "Means with 95% intervals. Bits per byte favours no language fairly: the same story takes more "
             "bytes in Finnish than in English."]
    if parallel:
        notes.append(f"On the {parallel['stories']} evaluation beginnings every pack shares (the same stories, "
                     "translated), the models need " + ", ".join(f"{b:,.0f}" for b in parallel["bits_per_story"])
                     + " bits per story (in the order of the table): that comparison is fair across languages.")
    if frame["lang"].nunique() > 1 and frame["judge_model"].notna().any():
        notes.append("Warning: judge scores across languages also measure the judge's skill in each language; "
                     "compare them within a language, or with care.")
    return "\n".join(lines + notes) + "\n"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def _finish(plt, fig, ax, title: str, path: Path) -> bool:
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def plot_judge_scores(frame: pd.DataFrame, path: Path) -> bool:
    judged = frame.dropna(subset=["judge_grammar"])
    if judged.empty:
        return False
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.8 / len(judged)
    for k, (_, row) in enumerate(judged.iterrows()):
        label = f"{row['lang']} {Path(row['run']).name} ({(row['parameters'] or 0) / 1e6:.1f}M)"
        means = [row[m] for m in JUDGE]
        errors = [[m - (interval(row, c) or (m, m))[0] for m, c in zip(means, JUDGE)],
                  [(interval(row, c) or (m, m))[1] - m for m, c in zip(means, JUDGE)]]
        ax.bar([i + k * width for i in range(len(JUDGE))], means, width, yerr=errors, capsize=3, label=label)
    ax.set_xticks([i + width * (len(judged) - 1) / 2 for i in range(len(JUDGE))], [m[6:] for m in JUDGE])
    ax.set_ylim(0, 10)
    ax.set_ylabel("judge score (1-10)")
    return _finish(plt, fig, ax, "Judge scores by language and model", path)


def plot_bpb_vs_bytes(runs: list[Path], frame: pd.DataFrame, path: Path) -> bool:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    drawn = False
    for run, lang in zip(runs, frame["lang"]):
        log = Path(run) / "metrics.jsonl"
        if not log.is_file():
            continue
        points = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines() if line.strip()]
        points = [(p["bytes"], p["val_bpb"]) for p in points if p.get("val_bpb") is not None]
        if points:
            ax.plot(*zip(*points), marker="o", markersize=3, label=f"{lang} {Path(run).name}")
            drawn = True
    if not drawn:
        plt.close(fig)
        return False
    ax.set_xscale("log")
    ax.set_xlabel("training bytes")
    ax.set_ylabel("validation bits per byte")
    return _finish(plt, fig, ax, "Bits per byte against training bytes", path)


def plot_training_curve(run: Path, path: Path) -> bool:
    """One run's learning curve from its metrics.jsonl: training loss and validation, both in bits
    per byte, against training bytes."""
    log = Path(run) / "metrics.jsonl"
    if not log.is_file():
        return False
    rows = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not rows:
        return False
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot([r["bytes"] for r in rows], [r["train_loss"] / math.log(2) for r in rows], linewidth=1,
            label="training batches")
    val = [(r["bytes"], r["val_bpb"]) for r in rows if r.get("val_bpb") is not None]
    if val:
        ax.plot(*zip(*val), marker="o", markersize=4, label="validation")
    ax.set_xlabel("training bytes")
    ax.set_ylabel("bits per byte")
    return _finish(plt, fig, ax, f"Learning curve of {Path(run).name}", path)


def plot_story_metrics(summary: dict, path: Path) -> bool:
    """One evaluation's story measurements that are shares (0-1), with their 95% intervals."""
    shares = [(label, summary["metrics"][name]) for name, label in (
        ("language_ok", "language ID"), ("dictionary_coverage", "dictionary words"),
        ("vocabulary_adherence", "restricted vocabulary"), ("requested_words_used", "requested words"),
        ("repetition", "repetition")) if name in summary["metrics"]]
    if not shares:
        return False
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.5))
    means = [m["mean"] for _, m in shares]
    errors = [[m["mean"] - (m["ci95"][0] if m["ci95"][0] is not None else m["mean"]) for _, m in shares],
              [(m["ci95"][1] if m["ci95"][1] is not None else m["mean"]) - m["mean"] for _, m in shares]]
    ax.bar(range(len(shares)), means, yerr=errors, capsize=3, label=f"{summary['completions']} completions")
    ax.set_xticks(range(len(shares)), [label for label, _ in shares])
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("share of the completions' words / stories")
    return _finish(plt, fig, ax, "Story measurements (95% intervals)", path)


def prepare_out(out: Path) -> None:
    """Create the output folder, or say in one line why it cannot be."""
    if out.exists() and not out.is_dir():
        raise CompareError(f"--out {out} is a file, not a folder: give a folder for the comparison")
    problem = make_folder(out, "--out")
    if problem:
        raise CompareError(problem)


def compare_runs(runs: list[Path], out: Path, name: str = "default") -> dict:
    """Write the comparison of ``runs``; ``warnings`` in the result are lines to show the user."""
    if not runs:
        raise CompareError("give at least one run directory")
    frame, summaries = comparison_table(runs, name)
    parallel = parallel_bits(summaries)
    prepare_out(out)
    try:
        frame.to_csv(out / "comparison.csv", index=False)
        (out / "comparison.md").write_text(markdown(frame, parallel), encoding="utf-8")
        plots = [p for p, made in (("judge_scores.png", plot_judge_scores(frame, out / "judge_scores.png")),
                                   ("bpb_vs_bytes.png", plot_bpb_vs_bytes(runs, frame, out / "bpb_vs_bytes.png"))) if made]
    except OSError as error:
        raise CompareError(f"cannot write to {out}: {error.strerror or error}") from None
    return {"out": str(out), "runs": len(runs), "plots": plots, "parallel": parallel,
            "warnings": setting_warnings(runs, summaries)}
