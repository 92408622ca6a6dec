"""``tinylang filter``: read stories from anywhere, run the pack's pipeline, write the clean corpus.

    stats = run_pipeline(load_pack("fi"), read_input(Path("stories.jsonl"), "fi"), Path("data/fi-clean"), None)

Writes ``train.parquet`` / ``validation.parquet`` (kept stories, split by id), ``rejected.jsonl``
(every dropped story with its filter, reason and detail) and ``stats.json``. Every input row ends up
kept or rejected, empty ones included (rejected by ``normalise`` as empty); an input without a single
row is an error. The output folder must be new, empty or an earlier ``tinylang filter`` output:
anything else would be overwritten. The outputs are written under temporary names and renamed into
place together at the end, so a run stopped early (Ctrl-C, a file that is not UTF-8) leaves the
earlier output as it was and no temporary files.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import chain
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from ..corpus.folder import stored_plan
from ..corpus.plan import with_instruct
from ..corpus.store import is_build_folder, raw_shards, record_split_key, validation_ids
from ..langpack import LanguagePack, load_pack
from ..outputs import make_folder, output_folder_problem
from ..records import KEPT_SCRATCH_FILE, REJECTED_FILE, SPLIT_FILES, StagedFiles, StoryRecord, read_jsonl, record_line, write_split_parquets
from ..sources import SPLITS, SourceError, StorySource, open_source, split_rows
from .pipeline import FilterPipeline, FilterStats, Rejection

INPUT_SUFFIXES = (".jsonl", ".parquet", ".txt")
FILTER_OUTPUTS = (*SPLIT_FILES, REJECTED_FILE)  # replaced together by every run
COMMAND_OUTPUTS = (*FILTER_OUTPUTS, "stats.json")  # tinylang filter's, stats.json included


class FilterOutputError(ValueError):
    """An --out that the filter must not write into (a file, or a folder of other data)."""


class FilterInputError(SourceError):
    """An input that holds no stories at all: "kept 0 of 0" would hide a wrong path or an empty file."""


@dataclass(frozen=True)
class StoryInput:
    """The stories of one input, read lazily (iterate it); made by ``read_input``, which checks the
    input first so a wrong path fails before anything is written."""

    location: Path
    lang: str
    source: StorySource | None = None  # opened by read_input (once: opening a folder walks it)

    def __iter__(self) -> Iterator[StoryRecord]:
        location = self.location
        if is_build_folder(location):  # its raw shards
            # an instruct folder made from a plain one keeps instruct renderings only in its splits
            pack = load_pack(self.lang) if stored_plan(location).get("format") == "instruct" else None
            for shard in raw_shards(location):
                records = read_jsonl(shard)
                yield from (with_instruct(pack, r) for r in records) if pack else records
        elif location.is_file() and location.suffix == ".jsonl" and _holds_story_records(location):
            yield from read_jsonl(location)
        else:
            yield from self._rows()

    def _rows(self) -> Iterator[StoryRecord]:
        for split, story_id, text in source_rows(self.source or open_source(self.location)):
            yield StoryRecord(id=story_id if split == "train" else f"{split}/{story_id}", lang=self.lang, text=text,
                              source="dataset", mode="import", source_dataset=str(self.location))


def read_input(location: Path, lang: str, text_column: str = "text") -> StoryInput:
    """StoryRecords from a build-corpus folder (its raw shards), a JSONL of records, or any story source
    (.jsonl, .parquet, .txt, a corpus folder, a Hugging Face dataset name; stories in ``text_column``).
    A missing path or an unsupported file type raises SourceError here, before anything is written."""
    location = Path(location)
    if location.is_file() and location.suffix not in INPUT_SUFFIXES:
        raise SourceError(f"{location}: unsupported file type {location.suffix or '(none)'} (expected a build-corpus "
                          "folder, a corpus folder, .jsonl, .parquet or .txt)")
    if is_build_folder(location):
        return StoryInput(location, lang)
    # the usual one-line error for a missing path or a folder without stories, before anything is written
    return StoryInput(location, lang, open_source(location, text_column))


def source_rows(source: StorySource) -> Iterator[tuple[str, str, str]]:
    """(split, id, text) of every row, empty and null texts included as "" (the filter rejects them
    with a reason). A source with its own splits gives both; a single file is read whole; a Hugging
    Face dataset gives its train split, and its validation split when it has one."""
    splits = SPLITS if source.has_own_splits or source.kind == "huggingface" else ("train",)
    for split in splits:
        rows = split_rows(source, split)
        try:
            first = next(rows, None)
        except SourceError:
            if split == "train":
                raise
            continue  # a dataset without a validation split
        for row_id, text in chain([first], rows) if first is not None else ():
            yield split, row_id, (text or "").strip()


def count_input(location: Path) -> int | None:
    """Stories in the input when that is cheap to know (JSONL lines), for the progress bar."""
    location = Path(location)
    if location.is_dir():
        files = raw_shards(location)
    else:
        files = [location] if location.is_file() else []
    if not files or any(f.suffix != ".jsonl" for f in files):
        return None
    total = 0
    for path in files:
        with path.open("rb") as handle:  # counted as bytes: a file that is not UTF-8 fails later, naming its line
            total += sum(1 for line in handle if line.strip())
    return total


def output_problem(out: Path, input_location: Path | None = None) -> str | None:
    """Why the filter must not write into ``out``, or None: the input itself; a build-corpus folder
    (rebuild it with build-corpus to refilter); a file, or a folder of files the filter did not write."""
    out = Path(out)
    if input_location is not None and input_location.exists():
        source, target = input_location.resolve(), out.resolve()
        if source == target or target in source.parents:
            return f"--out {out} holds the input {input_location}; filtering there would overwrite it: choose another --out"
        if source.is_dir() and source in target.parents:  # its output would be read back as input
            return f"--out {out} is inside the input folder {input_location}: choose an --out outside it"
    if is_build_folder(out):
        return (f"{out} is a build-corpus folder; rerun build-corpus there to refilter it (its raw shards keep every "
                "story), or choose another --out")
    return output_folder_problem(out, "tinylang filter", _is_filter_output)


def run_pipeline(pack: LanguagePack, records: Iterable[StoryRecord], out: Path, total: int | None, workers: int = 1,
                 validation_fraction: float = 0.05, console: Console | None = None) -> FilterStats:
    """``tinylang filter``: check ``out`` (see ``output_problem``) and that the input holds stories, then
    filter into ``out`` with ``stats.json`` replaced together with the other outputs. A run that fails
    leaves no temporary files, and no ``out`` folder when it made it."""
    location = records.location if isinstance(records, StoryInput) else None
    problem = output_problem(out, location)
    if problem:
        raise FilterOutputError(problem)
    repeated: list[str] = []
    records = _noting_repeated_ids(_with_first_story(records, location), repeated)
    made = [folder for folder in (out, *out.parents) if not folder.exists()]  # innermost first
    try:
        _make_output_folder(out)
        with StagedFiles(out, COMMAND_OUTPUTS) as staged:
            stats = stage_filtered(pack, records, staged, total, workers, validation_fraction, console)
            staged.path("stats.json").write_text(json.dumps(stats.as_dict(), indent=2, ensure_ascii=False) + "\n",
                                                 encoding="utf-8")
            staged.commit()
    except BaseException:
        _remove_empty_folders(made)
        raise
    if repeated and console is not None:
        console.print(f"[yellow]warning:[/] {len(repeated):,} row(s) of the input repeat an earlier row's id (first: "
                      f"{repeated[0]!r}); every row was filtered, but reasons such as 'same text as ID' and the "
                      "splits cannot tell such rows apart: give each row its own id.", highlight=False)
    return stats


def _noting_repeated_ids(records: Iterable[StoryRecord], repeated: list[str]) -> Iterator[StoryRecord]:
    """``records`` unchanged, appending to ``repeated`` each id already seen."""
    seen: set[str] = set()
    for record in records:
        if record.id in seen:
            repeated.append(record.id)
        seen.add(record.id)
        yield record


def filter_records(pack: LanguagePack, records: Iterable[StoryRecord], out: Path, total: int | None, workers: int = 1,
                   validation_fraction: float = 0.05, console: Console | None = None,
                   before_commit: Callable[[], None] | None = None) -> FilterStats:
    """Filter ``records`` into ``out``: the splits and rejected.jsonl are staged under temporary names,
    then ``before_commit`` runs (build-corpus drops its stored fingerprint there) and they are renamed
    into place together; until then the earlier files stay as they were."""
    _make_output_folder(out)
    with StagedFiles(out, FILTER_OUTPUTS) as staged:
        stats = stage_filtered(pack, records, staged, total, workers, validation_fraction, console)
        if before_commit:
            before_commit()
        staged.commit()
    return stats


def stage_filtered(pack: LanguagePack, records: Iterable[StoryRecord], staged: StagedFiles, total: int | None,
                   workers: int = 1, validation_fraction: float = 0.05, console: Console | None = None) -> FilterStats:
    """Run the pipeline over ``records`` into ``staged``'s temporary files: kept stories streamed to a
    scratch JSONL (removed whatever happens), then split to parquet; the caller commits."""
    scratch = staged.directory / KEPT_SCRATCH_FILE
    pipeline = FilterPipeline(pack)
    progress = Progress(TextColumn("[bold]filter"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[kept]}"),
                        TimeRemainingColumn(), console=console or Console(stderr=True))
    try:
        with progress, scratch.open("w", encoding="utf-8") as kept_file, \
                staged.path(REJECTED_FILE).open("w", encoding="utf-8") as rejected_file:
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
        keys = {r.id: record_split_key(r) for r in read_jsonl(scratch)}
        validation = validation_ids(keys, validation_fraction, keys.__getitem__)
        write_split_parquets(staged.directory, read_jsonl(scratch), validation, staged=staged)
    finally:
        scratch.unlink(missing_ok=True)
    return stats


def _make_output_folder(out: Path) -> None:
    problem = make_folder(out, "--out")
    if problem:
        raise FilterOutputError(problem)


def _remove_empty_folders(folders: list[Path]) -> None:
    """Remove the folders a failed run made, innermost first, as long as they are empty."""
    for folder in folders:
        if not folder.is_dir() or any(folder.iterdir()):
            return
        folder.rmdir()


def _with_first_story(records: Iterable[StoryRecord], location: Path | None) -> Iterator[StoryRecord]:
    """``records`` unchanged, once its first record is read: an input with none is a FilterInputError
    here, before anything is written (a build-corpus folder with no story yet, an empty file)."""
    iterator = iter(records)
    first = next(iterator, None)
    if first is None:
        where = f"{location}" if location is not None else "the input"
        raise FilterInputError(f"{where} holds no stories to filter: check the path (a build-corpus folder needs "
                               "stories in raw/, a file at least one row)")
    return chain([first], iterator)


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


def _holds_story_records(path: Path) -> bool:
    """A JSONL of StoryRecords (a raw shard, rejected.jsonl) rather than plain rows: its first row
    validates as a record. Plain rows that happen to have ``lang`` or ``source`` fields do not, nor
    does a first line that is not UTF-8 (read as rows, which names the line)."""
    with path.open("rb") as handle:
        for line in handle:
            if line.strip():
                try:
                    StoryRecord.model_validate_json(line.decode("utf-8"))
                except ValueError:  # UnicodeDecodeError included
                    return False
                return True
    return False


def _is_filter_output(out: Path) -> bool:
    """An earlier run's output: its stats.json (written with the other outputs) or its scratch or
    temporary files (a run killed outright)."""
    temporaries = [KEPT_SCRATCH_FILE] + [StagedFiles(out, COMMAND_OUTPUTS).path(name).name for name in COMMAND_OUTPUTS]
    if any((out / name).is_file() for name in temporaries):
        return True
    try:
        stats = json.loads((out / "stats.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(stats, dict) and {"seen", "kept", "dropped_by"} <= stats.keys() and "plan" not in stats
