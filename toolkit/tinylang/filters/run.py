"""``tinylang filter``: read stories from anywhere, run the pack's pipeline, write the clean corpus.

    result = filter_corpus(Path("data/fi-generate"), load_pack("fi"), Path("data/fi-clean"))

Writes ``train.parquet`` / ``validation.parquet`` (kept stories, split by id), ``rejected.jsonl``
(every dropped story with its filter, reason and detail) and ``stats.json``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from itertools import chain
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from ..corpus.store import validation_ids
from ..langpack import LanguagePack
from ..records import StoryRecord, read_jsonl, record_line, write_split_parquets
from ..sources import SPLITS, SourceError, iter_source_stories
from .pipeline import FilterPipeline, FilterStats, Rejection


def read_input(location: Path, lang: str) -> Iterator[StoryRecord]:
    """StoryRecords from a build-corpus folder (its raw shards), a JSONL of records, or any story source."""
    location = Path(location)
    if location.is_dir() and (location / "raw").is_dir():
        for shard in sorted((location / "raw").glob("shard-*.jsonl")):
            yield from read_jsonl(shard)
        return
    if location.is_file() and location.suffix == ".jsonl":
        with location.open(encoding="utf-8") as handle:
            first = handle.readline()
        if '"source"' in first and '"lang"' in first:
            yield from read_jsonl(location)
            return
    for split in SPLITS if location.is_dir() else ("train",):
        rows = iter_source_stories(location, split)
        try:
            first = next(rows)
        except StopIteration:
            continue
        except SourceError:
            if split == "train":
                raise
            continue  # a folder without a validation split
        for story_id, text in chain([first], rows):
            yield StoryRecord(id=story_id if split == "train" else f"{split}/{story_id}", lang=lang, text=text,
                              source="dataset", mode="import", source_dataset=str(location))


def count_input(location: Path) -> int | None:
    """Stories in the input when that is cheap to know (JSONL lines), for the progress bar."""
    location = Path(location)
    files = sorted((location / "raw").glob("shard-*.jsonl")) if location.is_dir() else [location]
    if not files or any(f.suffix != ".jsonl" for f in files):
        return None
    return sum(sum(1 for line in f.open(encoding="utf-8") if line.strip()) for f in files)


def run_pipeline(pack: LanguagePack, records, out: Path, total: int | None, workers: int = 1,
                 validation_fraction: float = 0.05, console: Console | None = None) -> FilterStats:
    """Filter ``records`` into ``out``: kept stories streamed to a scratch JSONL, then split to parquet."""
    out.mkdir(parents=True, exist_ok=True)
    scratch = out / "kept.jsonl.tmp"
    pipeline = FilterPipeline(pack)
    progress = Progress(TextColumn("[bold]filter"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[kept]}"),
                        TimeRemainingColumn(), console=console or Console(stderr=True))
    with progress, scratch.open("w", encoding="utf-8") as kept_file, \
            (out / "rejected.jsonl").open("w", encoding="utf-8") as rejected_file:
        task = progress.add_task("filter", total=total, kept="")
        counts = {"kept": 0, "seen": 0}

        def on_kept(record: StoryRecord) -> None:
            kept_file.write(record_line(record))
            counts["kept"] += 1

        def on_rejected(rejection: Rejection) -> None:
            rejected_file.write(json.dumps(rejection.as_dict(), ensure_ascii=False) + "\n")

        def on_progress(n: int) -> None:
            counts["seen"] += n
            progress.update(task, advance=n, kept=f"{counts['kept']:,} kept ({counts['kept'] / counts['seen']:.1%})")

        stats = pipeline.run(records, on_kept, on_rejected, workers=workers, on_progress=on_progress)
    validation = validation_ids([r.id for r in read_jsonl(scratch)], validation_fraction)
    write_split_parquets(out, read_jsonl(scratch), validation)
    scratch.unlink()
    return stats


def stats_table(stats: FilterStats, filter_names: list[str]) -> str:
    """Markdown: seen, kept, and every filter with its drop reasons."""
    lines = ["| filter | reason | dropped | share of seen |", "|---|---|---:|---:|"]
    for name in filter_names:
        for reason, count in sorted(stats.dropped.get(name, {}).items(), key=lambda kv: -kv[1]):
            lines.append(f"| {name} | {reason} | {count:,} | {count / max(1, stats.seen):.2%} |")
    lines.append(f"| **kept** | | **{stats.kept:,}** of {stats.seen:,} | **{stats.kept / max(1, stats.seen):.2%}** |")
    if stats.repaired:
        lines.append("")
        lines.append("Repaired on kept stories: " + ", ".join(f"{k} {v:,}" for k, v in stats.repaired.most_common()))
    return "\n".join(lines)
