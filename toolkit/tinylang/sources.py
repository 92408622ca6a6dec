"""Reading stories from wherever they are: a corpus directory, a TinyStories-style ``.txt``, ``.jsonl``,
``.parquet``, or a Hugging Face dataset. Training and corpus translation both start here.

    for text in read_stories("corpora/fi/seed-stories.txt", split="train"):
        ...
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

STORY_SEPARATOR = "<|endoftext|>"
SPLITS = ("train", "validation")
_FILE_SUFFIXES = (".parquet", ".jsonl", ".txt")


class SourceError(ValueError):
    """A story source that cannot be read; the message says what was expected."""


@dataclass(frozen=True)
class StorySource:
    """Where stories come from and how to pick the ones of a split.

    ``files`` maps split name -> files for sources that ship their own splits (corpus directories,
    Hugging Face datasets with a validation split). Otherwise every story is assigned to train or
    validation by a hash of its text, so the assignment is stable when the file grows or is reordered.
    """

    location: str
    kind: str  # "directory", "file" or "huggingface"
    files: dict[str, list[Path]]
    text_column: str = "text"
    validation_fraction: float = 0.05
    hf_config: str | None = None

    @property
    def has_own_splits(self) -> bool:
        return self.kind == "directory"


def in_validation(text: str, fraction: float) -> bool:
    """Deterministic hold-out: the same story always lands in the same split."""
    return zlib.crc32(text.encode("utf-8")) % 10_000 < fraction * 10_000


def _split_files(directory: Path, split: str) -> list[Path]:
    found: list[Path] = []
    for suffix in _FILE_SUFFIXES:
        if (directory / f"{split}{suffix}").is_file():
            found.append(directory / f"{split}{suffix}")
        found += sorted(directory.glob(f"{split}-*{suffix}"))
        found += sorted((directory / split).glob(f"*{suffix}")) if (directory / split).is_dir() else []
    return found


def open_source(
    location: str | Path, text_column: str = "text", validation_fraction: float = 0.05, hf_config: str | None = None
) -> StorySource:
    """Decide what ``location`` is. Existing paths are local; anything else is a Hugging Face name."""
    path = Path(location)
    common = dict(text_column=text_column, validation_fraction=validation_fraction, hf_config=hf_config)
    if path.is_dir():
        files = {split: _split_files(path, split) for split in SPLITS}
        if not files["train"] and not files["validation"] and _hub_layout(path):  # e.g. a downloaded dataset: data/train-00000-of-00004.parquet
            return StorySource(str(path), "huggingface", {}, **common)
        if not files["train"]:
            raise SourceError(
                f"{path}: a corpus directory needs train.parquet, train.jsonl or train.txt "
                "(or train-*.parquet shards, or a train/ folder of them)"
            )
        if not files["validation"]:
            # A directory with only training data: hold out by hash like a single file.
            return StorySource(str(path), "file", {"train": files["train"]}, **common)
        return StorySource(str(path), "directory", files, **common)
    if path.is_file():
        if path.suffix not in _FILE_SUFFIXES:
            raise SourceError(f"{path}: expected a .txt, .jsonl or .parquet file, or a corpus directory")
        return StorySource(str(path), "file", {"train": [path]}, **common)
    if str(location).startswith((".", "/", "~")) or str(location).endswith(_FILE_SUFFIXES):
        raise SourceError(f"{location}: no such file or directory")
    return StorySource(str(location), "huggingface", {}, **common)


def _hub_layout(path: Path) -> bool:
    """A folder datasets.load_dataset can read (data files below it), though not in our split layout."""
    return any(p.suffix in (".parquet", ".jsonl", ".json", ".csv", ".arrow") for p in path.rglob("*") if p.is_file())


def _read_txt(path: Path) -> Iterator[str]:
    """TinyStories release format: stories separated by lines holding only <|endoftext|>."""
    lines: list[str] = []
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip() == STORY_SEPARATOR:
                story = "".join(lines).strip()
                if story:
                    yield story
                lines = []
            else:
                lines.append(line)
    story = "".join(lines).strip()
    if story:
        yield story


def _read_file(path: Path, column: str) -> Iterator[str]:
    return (text for _, text in _read_rows(path, column, id_column="id"))


def read_huggingface(name: str, split: str, column: str = "text", config: str | None = None) -> Iterator[str]:
    """Stream one split of a Hugging Face dataset (a hub name, or a local folder of data files)."""
    return (text for _, text in _read_huggingface_rows(name, split, column, "id", config))


def _huggingface_splits(source: StorySource) -> set[str]:
    import datasets

    try:
        return set(datasets.get_dataset_split_names(source.location, source.hf_config))
    except Exception as error:
        raise SourceError(
            f"{source.location}: not a local file or directory, and not a loadable Hugging Face dataset "
            f"({type(error).__name__}: {error})"
        ) from None


def read_stories(source: StorySource, split: str) -> Iterator[str]:
    """Yield the non-empty stories of ``split`` ("train" or "validation")."""
    if split not in SPLITS:
        raise SourceError(f"unknown split {split!r}; expected one of {SPLITS}")
    if source.kind == "huggingface":
        names = _huggingface_splits(source)
        if split in names:
            stories = read_huggingface(source.location, split, source.text_column, source.hf_config)
            yield from (s for s in stories if s and s.strip())
            return
        stories = read_huggingface(source.location, "train", source.text_column, source.hf_config)
        yield from _held_out(stories, split, source.validation_fraction)
        return
    if source.has_own_splits:
        for path in source.files[split]:
            yield from (s for s in _read_file(path, source.text_column) if s and s.strip())
        return
    for path in source.files["train"]:
        yield from _held_out(_read_file(path, source.text_column), split, source.validation_fraction)


def _held_out(stories: Iterator[str], split: str, fraction: float) -> Iterator[str]:
    want_validation = split == "validation"
    for story in stories:
        if story and story.strip() and in_validation(story, fraction) == want_validation:
            yield story


def fingerprint(source: StorySource) -> str:
    """Identifies the content of a local source (paths, sizes, modification times) for caching."""
    if source.kind == "huggingface":
        return f"hf:{source.location}:{source.hf_config}"
    parts = []
    for split, paths in sorted(source.files.items()):
        for p in paths:
            stat = p.stat()
            parts.append(f"{split}:{p.resolve()}:{stat.st_size}:{stat.st_mtime_ns}")
    return "|".join(parts)


def iter_source_stories(
    location: str | Path, split: str = "train", text_column: str = "text", id_column: str = "id",
    hf_config: str | None = None,
) -> Iterator[tuple[str, str]]:
    """(id, text) pairs of a source in its own order, for translation: ids come from ``id_column``
    when the source has one, else from the position (``train-00000042``), so they are stable."""
    path = Path(location)
    if path.is_dir() and not any(_split_files(path, s) for s in SPLITS) and _hub_layout(path):
        rows = _read_huggingface_rows(str(path), split, text_column, id_column, hf_config)
    elif path.is_dir():
        files = _split_files(path, split)
        if not files:
            raise SourceError(f"{path}: no {split} files (expected {split}.parquet, {split}.jsonl or {split}.txt)")
        rows = (row for file in files for row in _read_rows(file, text_column, id_column))
    elif path.is_file():
        rows = _read_rows(path, text_column, id_column)
    else:
        open_source(location)  # raises the usual error for missing local paths
        rows = _read_huggingface_rows(str(location), split, text_column, id_column, hf_config)
    for index, (row_id, text) in enumerate(rows):
        if text and text.strip():
            yield (str(row_id) if row_id is not None else f"{split}-{index:08d}"), text.strip()


def _read_rows(path: Path, text_column: str, id_column: str) -> Iterator[tuple[str | None, str]]:
    if path.suffix == ".txt":
        yield from ((None, text) for text in _read_txt(path))
        return
    if path.suffix == ".jsonl":
        with path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                if line.strip():
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError as error:
                        raise SourceError(f"{path}:{number}: not valid JSON ({error.msg})") from None
                    if text_column not in row:
                        raise SourceError(f"{path}:{number}: no {text_column!r} field (fields: {', '.join(row)})")
                    yield row.get(id_column), row[text_column]
        return
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(path)
    names = parquet.schema_arrow.names
    if text_column not in names:
        raise SourceError(f"{path}: no {text_column!r} column (columns: {', '.join(names)})")
    columns = [text_column] + ([id_column] if id_column in names else [])
    for batch in parquet.iter_batches(columns=columns, batch_size=4096):
        for row in batch.to_pylist():
            yield row.get(id_column), row[text_column]


def _read_huggingface_rows(name: str, split: str, text_column: str, id_column: str, config: str | None):
    import datasets

    try:
        dataset = datasets.load_dataset(name, config, split=split, streaming=True)
    except ValueError as error:  # unknown split
        raise SourceError(f"{name}: {error}") from None
    except Exception as error:  # offline, unknown name, no access: say so plainly
        raise SourceError(f"{name}: could not load the Hugging Face dataset ({type(error).__name__}: {error})") from None
    for row in dataset:
        if text_column not in row:
            raise SourceError(f"{name}: no {text_column!r} column (columns: {', '.join(row)})")
        yield row.get(id_column), row[text_column]
