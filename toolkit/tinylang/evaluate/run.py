"""``tinylang evaluate``: completions of the pack's story beginnings, judged and measured.

    result = evaluate(EvalOptions(run=Path("runs/fi-tiny"), lang="fi", samples=10))

Writes ``RUN/eval/<name>/completions.parquet`` (one row per completion and judge repeat, with every
score and the judge's raw answer), ``summary.json`` and ``report.md``.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from ..checkpoint import load_model
from ..corpus.plan import grammar_words, pack_words, sample_request
from ..langpack import LanguagePack, load_pack, run_corpus_stats, run_language
from ..llm import LLMClient, LLMSettings
from ..model import BOS_ID, EOS_ID
from ..records import read_parquet
from ..runtime import pick_device
from ..sources import open_source, read_stories
from .judge import CRITERIA, judge_completion
from .metrics import CompletionMetrics, bits_summary, distinct_n, mean_ci, request_gain, story_bits
from .report import write_report

SHARE = (0.0, 1.0)
BOUNDS = {"judge_grammar": (1.0, 10.0), "judge_creativity": (1.0, 10.0), "judge_consistency": (1.0, 10.0),
          "judge_plot": (1.0, 10.0), "dictionary_coverage": SHARE, "vocabulary_adherence": SHARE,
          "repetition": SHARE, "language_ok": SHARE, "requested_words_used": SHARE,
          "judge_instruction_following": (1.0, 10.0), "words": (0.0, float("inf")), "bytes": (0.0, float("inf"))}
SUMMARY_METRICS = ("judge_grammar", "judge_creativity", "judge_consistency", "judge_plot", "judge_instruction_following",
                   "words", "bytes", "dictionary_coverage", "vocabulary_adherence", "repetition", "language_ok",
                   "requested_words_used")


@dataclass
class EvalOptions:
    run: Path
    lang: str | None = None
    name: str = "default"
    samples: int = 10
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    max_bytes: int = 600
    seed: int = 0
    limit: int | None = None  # first N beginnings only
    instruct: bool = False  # an instruct model: prompts carry requested words and features
    device: str = "auto"
    judge_model: str | None = None
    base_url: str | None = None
    judge_repeats: int = 1
    concurrency: int = 8
    validation_stories: int = 200
    extra: dict = field(default_factory=dict)


@dataclass
class EvalResult:
    out: Path
    summary: dict


@torch.no_grad()
def complete_beginnings(model, beginnings: list[str], samples: int, options: EvalOptions, progress=None) -> list[list[str]]:
    """``samples`` continuations per beginning, one batch per beginning, cached generation."""
    device = next(model.parameters()).device
    keep = model.config.context_bytes - model.config.patch_size
    generator = torch.Generator(device=device).manual_seed(options.seed)
    results = []
    for beginning in beginnings:
        prompt = [BOS_ID, *beginning.encode("utf-8")][-keep:]
        ids = torch.tensor([prompt] * samples, device=device)
        out = model.generate(ids, options.max_bytes, options.temperature, options.top_k, options.top_p,
                             stop_at_end=True, generator=generator)
        texts = []
        for row in out[:, len(prompt):].tolist():
            row = row[: row.index(EOS_ID)] if EOS_ID in row else row
            texts.append(bytes(b for b in row if b < 256).decode("utf-8", errors="replace"))
        results.append(texts)
        if progress:
            progress()
    return results


def judge_settings(options: EvalOptions) -> LLMSettings | None:
    model = options.judge_model or os.environ.get("TINYLANG_JUDGE_MODEL")
    if not model:
        return None
    return LLMSettings.resolve(model=model, base_url=options.base_url, concurrency=options.concurrency, temperature=0.0,
                               max_tokens=400)


def request_words_source(recipe) -> str:
    """Where requested words come from: the story grammar's lexicon when the run's corpus was written
    by the grammar (it never asked for other words, so asking for them measures nothing), otherwise
    the pack's whole vocabulary, as the LLM backend samples it."""
    sources = (run_corpus_stats(recipe) or {}).get("corpus", {}).get("sources", {})
    return "grammar" if sources and set(sources) == {"grammar"} else "pack"


def instruct_requests(pack: LanguagePack, count: int, seed: int, source: str = "pack"
                      ) -> list[tuple[list[str], list[str]]]:
    """Seeded words and features for each beginning, as build-corpus samples them."""
    words = grammar_words(pack) if source == "grammar" else pack_words(pack)
    requests = [sample_request(i, pack.code, seed, words) for i in range(count)]
    return [(list(r.words.values()), list(r.features)) for r in requests]


async def judge_all(pack: LanguagePack, settings: LLMSettings, cache: Path, items: list[tuple]):
    client = LLMClient(settings, cache)
    try:
        calls = (judge_completion(client, pack, b, c, key, instructions) for b, c, key, instructions in items)
        return await asyncio.gather(*calls), client.usage
    finally:
        await client.aclose()


def evaluate(options: EvalOptions, console: Console | None = None) -> EvalResult:
    console = console or Console(stderr=True)
    model, recipe = load_model(options.run, pick_device(options.device))
    pack = load_pack(options.lang or run_language(options.run, recipe))
    beginnings = list(pack.eval_beginnings[: options.limit] if options.limit else pack.eval_beginnings)
    out = Path(options.run) / "eval" / options.name
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    words_source = request_words_source(recipe) if options.instruct else None
    requests = (instruct_requests(pack, len(beginnings), options.seed, words_source) if options.instruct
                else [None] * len(beginnings))
    prompts = [b.text if r is None else pack.instruct_text(r[0], r[1], b.text) for b, r in zip(beginnings, requests)]
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=console) as bar:
        task = bar.add_task("completions", total=len(beginnings))
        completions = complete_beginnings(model, prompts, options.samples, options, lambda: bar.advance(task))
    rows = []
    for beginning, request, texts in zip(beginnings, requests, completions):
        for sample, text in enumerate(texts):
            row = {"beginning_id": beginning.id, "sample": sample, "beginning": beginning.text, "completion": text}
            if request is not None:
                row |= {"requested_words": request[0], "requested_features": request[1],
                        "instructions": pack.instruct_header(*request)}
            rows.append(row)
    wanted = [r.get("requested_words") for r in rows] if options.instruct else None
    for row, measured in zip(rows, CompletionMetrics(pack).measure([r["completion"] for r in rows], wanted)):
        row.update(measured)
    settings = judge_settings(options)
    judge_usage = None
    judged_rows = rows
    if settings is None:
        console.print("No judge configured (--judge-model, with --base-url or OPENAI_API_KEY): judge scores skipped; "
                      "automatic metrics only.")
    else:
        items, judged_rows = [], []
        for row in rows:
            for repeat in range(options.judge_repeats):
                key = f"{pack.spec.grading.version}/{row['beginning_id']}/{row['sample']}/{repeat}"
                items.append((row["beginning"], row["completion"], key, row.get("instructions")))
                judged_rows.append(row | {"judge_repeat": repeat})
        console.print(f"Judging {len(items):,} completions with {settings.model} ...")
        judgements, judge_usage = asyncio.run(judge_all(pack, settings, out / "judge-cache.sqlite", items))
        for row, (judgement, usage) in zip(judged_rows, judgements):
            row.update(judgement.as_row())
    held_out_scored = story_bits(model, [b.text for b in pack.eval_beginnings])
    held_out = bits_summary(held_out_scored) | {
        "bits_by_id": {b.id: round(bits, 3) for b, (bits, _, _) in zip(pack.eval_beginnings, held_out_scored)}}
    validation = None
    if recipe is not None:
        try:
            stories = []
            for story in read_stories(open_source(recipe.data.path, recipe.data.text_column), "validation"):
                stories.append(story)
                if len(stories) >= options.validation_stories:
                    break
            validation = bits_summary(story_bits(model, stories)) if stories else None
        except Exception as error:  # the corpus may be gone; the other metrics still stand
            console.print(f"[yellow]validation bits per byte skipped: {error}[/]")
    gain = instruct_request_gain(model, pack, recipe, options, console) if options.instruct else None
    summary = summarise(rows, judged_rows, settings, options, pack, held_out, validation, judge_usage,
                        time.perf_counter() - started)
    if gain is not None:
        summary["request_gain"] = gain
    summary["parameters"] = model.num_parameters()
    if words_source is not None:
        summary["requested_words_from"] = "story grammar lexicon" if words_source == "grammar" else "pack vocabulary"
    summary["training_bytes"] = training_bytes(Path(options.run))
    write_outputs(out, judged_rows, summary)
    write_report(out / "report.md", summary, judged_rows, pack)
    return EvalResult(out, summary)


def instruct_request_gain(model, pack: LanguagePack, recipe, options: EvalOptions, console: Console) -> dict | None:
    """request_gain on the validation split of the run's instruct corpus (a build-corpus folder,
    whose records say what each story was asked for); None when there is no such split."""
    split = Path(recipe.data.path) / "validation.parquet" if recipe is not None else None
    if split is None or not split.is_file():
        console.print("[yellow]request gain skipped: the run's corpus has no validation.parquet of requests[/]")
        return None
    stories = []
    for record in read_parquet(split):
        if record.words:
            stories.append((list(record.words.values()), list(record.features), record.text))
        if len(stories) >= options.validation_stories:
            break
    return request_gain(model, pack, stories) if len(stories) >= 2 else None


def training_bytes(run: Path) -> int | None:
    """Bytes the model was trained on, from the last line of the run's metrics.jsonl."""
    path = run / "metrics.jsonl"
    if not path.is_file():
        return None
    last = None
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            last = json.loads(line)
    return last.get("bytes") if last else None


def summarise(rows, judged_rows, settings, options, pack, held_out, validation, judge_usage, seconds) -> dict:
    metrics = {}
    for name in SUMMARY_METRICS:
        source = judged_rows if name.startswith("judge_") else rows
        values = [r.get(name) for r in source if name in r and (not name.startswith("judge_") or r.get("judge_parsed"))]
        mean, low, high = mean_ci([float(v) for v in values if v is not None], BOUNDS.get(name))
        if mean is not None:
            metrics[name] = {"mean": mean, "ci95": [low, high], "n": len(values)}
    texts = [r["completion"] for r in rows]
    parsed = sum(1 for r in judged_rows if r.get("judge_parsed"))
    variance = judge_repeat_spread(judged_rows) if settings is not None and options.judge_repeats > 1 else None
    age_groups: dict[str, int] = {}
    for r in judged_rows:
        if r.get("judge_age_group"):
            age_groups[r["judge_age_group"]] = age_groups.get(r["judge_age_group"], 0) + 1
    return {
        "run": str(options.run), "name": options.name, "lang": pack.code, "beginnings": len({r["beginning_id"] for r in rows}),
        "completions": len(rows), "samples": options.samples, "temperature": options.temperature,
        "max_bytes": options.max_bytes, "seed": options.seed, "instruct": options.instruct, "metrics": metrics,
        "distinct": {f"distinct_{n}": distinct_n(texts, n) for n in (1, 2, 3)},
        "held_out": held_out, "validation": validation,
        "judge": None if settings is None else {
            "model": settings.model, "prompt_version": pack.spec.grading.version, "repeats": options.judge_repeats,
            "parsed": parsed, "unparsed": len(judged_rows) - parsed, "age_groups": age_groups,
            "repeat_sd": variance,
            "usage": judge_usage.as_dict() if judge_usage else None,
        },
        "seconds": round(seconds, 1),
    }


def judge_repeat_spread(judged_rows: list[dict]) -> dict:
    """Mean standard deviation of the judge's scores over repeats of the same completion, per criterion."""
    groups: dict[tuple, list[dict]] = {}
    for row in judged_rows:
        if row.get("judge_parsed"):
            groups.setdefault((row["beginning_id"], row["sample"]), []).append(row)
    spread = {}
    for name in CRITERIA:
        sds = [float(np.std([r[f"judge_{name}"] for r in group], ddof=1)) for group in groups.values() if len(group) > 1]
        spread[name] = sum(sds) / len(sds) if sds else None
    return spread


def write_outputs(out: Path, rows: list[dict], summary: dict) -> None:
    import pandas as pd

    frame = pd.DataFrame(rows)
    for name in CRITERIA:
        column = f"judge_{name}"
        if column in frame:
            frame[column] = frame[column].astype("float64")
    frame.to_parquet(out / "completions.parquet", index=False)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
