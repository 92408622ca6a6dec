"""Reading stories from wherever they are: a corpus directory, a folder of story files, a TinyStories-style
``.txt``, ``.jsonl``, ``.parquet``, or a Hugging Face dataset. Training and corpus translation both start here.

    for text in read_stories(open_source("corpora/fi/seed-stories.txt"), split="train"):
        ...
"""

from __future__ import annotations

import difflib
import json
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import chain
from pathlib import Path

from .source_folders import (
    FILE_SUFFIXES,
    LAYOUTS,
    OTHER_DATA_SUFFIXES,
    SPLITS,
    SourceError,
    files_below,
    folder_layout,
)

STORY_SEPARATOR = "<|endoftext|>"


@dataclass(frozen=True)
class StorySource:
    """Where stories come from and how to pick the ones of a split.

    ``files`` maps split name -> files for sources that ship their own splits (corpus directories,
    folders whose file names say the split). Otherwise every story is assigned to train or validation
    by a hash of its text, so the assignment is stable when the file grows or is reordered; a Hugging
    Face dataset without a validation split is held out the same way.
    """

    location: str
    kind: str  # "directory" (own splits), "file" (held out by hash; also a folder of train files) or "huggingface"
    files: dict[str, list[Path]]
    text_column: str = "text"
    validation_fraction: float = 0.05
    hf_config: str | None = None
    ignored: tuple[tuple[Path, str], ...] = ()  # story files of a folder left out, with why (said when encoding)

    @property
    def has_own_splits(self) -> bool:
        return self.kind == "directory"


def in_validation(text: str, fraction: float) -> bool:
    """Deterministic hold-out: the same story always lands in the same split."""
    return zlib.crc32(text.encode("utf-8")) % 10_000 < fraction * 10_000


# --- where the stories are -------------------------------------------------------------------------------------


def open_source(
    location: str | Path, text_column: str = "text", validation_fraction: float = 0.05, hf_config: str | None = None
) -> StorySource:
    """Decide what ``location`` is. Existing paths are local, and so is anything that looks like a path
    (a missing one fails at once instead of after minutes of Hub retries); other names are Hugging Face datasets."""
    path = Path(location).expanduser()
    common = dict(text_column=text_column, validation_fraction=validation_fraction, hf_config=hf_config)
    if path.is_dir():
        layout = folder_layout(path)
        if layout is None:  # only formats datasets reads (.json, .csv, .arrow)
            return StorySource(str(path), "huggingface", {}, **common)
        if not layout.files["train"]:
            raise SourceError(f"{path}: no training stories here; a folder needs {LAYOUTS}")
        ignored = tuple(sorted(layout.ignored.items()))
        if not layout.files["validation"]:
            return StorySource(str(path), "file", {"train": layout.files["train"]}, **common, ignored=ignored)
        return StorySource(str(path), "directory", layout.files, **common, ignored=ignored)
    if path.is_file():
        if path.suffix not in FILE_SUFFIXES:
            raise SourceError(f"{path}: expected a .txt, .jsonl or .parquet file, or a corpus directory")
        return StorySource(str(path), "file", {"train": [path]}, **common)
    why_local = _looks_local(str(location))
    if why_local:
        raise SourceError(_missing_path_message(str(location), path, why_local))
    return StorySource(str(location), "huggingface", {}, **common)


def _looks_local(location: str) -> str:
    """Why ``location`` is taken for a local path ("" when it may be a Hugging Face name like owner/name)."""
    if location.startswith(("./", "../", "/", "~", ".\\")) or location in (".", ".."):
        return "a path"
    if location.endswith(FILE_SUFFIXES + OTHER_DATA_SUFFIXES):
        return "a file name"
    first = Path(location).parts[0] if Path(location).parts else ""
    if len(Path(location).parts) > 1 and Path(first).is_dir():
        return f"{first}/ is a folder here"
    return ""


def _missing_path_message(location: str, path: Path, why_local: str) -> str:
    """'no such file or folder', with the closest name in the deepest folder that does exist."""
    message = f"no such file or folder: {location}"
    existing, missing = path, []
    while not existing.exists() and existing != existing.parent:
        missing.insert(0, existing.name)
        existing = existing.parent
    if missing and existing.is_dir():
        names = sorted(p.name for p in existing.iterdir())
        close = difflib.get_close_matches(missing[0], names, n=1, cutoff=0.8)
        if close:
            message += f" (did you mean {Path(existing, close[0], *missing[1:])}?)"
    if why_local.endswith("is a folder here"):
        message += f"; read as a local path because {why_local}"
    if not path.is_absolute() and not location.startswith("~"):
        message += f" (a relative path is read from the current directory, {Path.cwd()})"
    return message


# --- reading rows ----------------------------------------------------------------------------------------------


def not_utf8_message(path: Path) -> str:
    """One line naming the first line of ``path`` that is not UTF-8 and its first bad byte: a file in
    another encoding (Latin-1, Windows-1252) fails somewhere in the middle, and a bare "'utf-8' codec
    can't decode byte 0xe9 in position 834" names neither the file nor where in it."""
    with Path(path).open("rb") as handle:
        for number, line in enumerate(handle, 1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as error:
                return (f"{path}:{number}: not UTF-8 text (byte 0x{line[error.start]:02x} at column {error.start + 1}); "
                        "stories are read as UTF-8: convert the file, e.g. iconv -f latin1 -t utf-8")
    return f"{path}: not UTF-8 text; stories are read as UTF-8: convert the file, e.g. iconv -f latin1 -t utf-8"


def _read_txt(path: Path) -> Iterator[str]:
    """TinyStories release format: stories separated by <|endoftext|>, on its own line or inside one.
    Files are read as UTF-8 with or without a byte-order mark (Windows editors write one), here and
    in JSONL: kept, it became three bytes of the first story."""
    parts: list[str] = []
    with path.open(encoding="utf-8-sig") as handle:
        for line in _utf8_lines(handle, path):
            *ended, rest = line.split(STORY_SEPARATOR)
            for piece in ended:
                story = ("".join(parts) + piece).strip()
                if story:
                    yield story
                parts = []
            parts.append(rest)
    story = "".join(parts).strip()
    if story:
        yield story


def _utf8_lines(handle, path: Path) -> Iterator[str]:
    """The lines of a file opened as UTF-8; one that is not UTF-8 is a SourceError naming the line."""
    try:
        yield from handle
    except UnicodeDecodeError:
        raise SourceError(not_utf8_message(path)) from None


_JSON_KINDS = {str: "a string", int: "a number", float: "a number", bool: "true/false", list: "an array",
               type(None): "null"}


def _checked_text(value: object, where: str, column: str) -> str | None:
    """The story text of one row, None when it is null; any other type is an error naming the row."""
    if value is None or isinstance(value, str):
        return value
    shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
    raise SourceError(f"{where}: the {column!r} column holds {type(value).__name__} {shown}, not text")


def _read_rows(path: Path, text_column: str, id_column: str) -> Iterator[tuple[str | None, str | None]]:
    """(id, text) of each row of one file; text is None where the row's text is null."""
    if path.suffix == ".txt":
        yield from ((None, text) for text in _read_txt(path))
        return
    if path.suffix == ".jsonl":
        with path.open(encoding="utf-8-sig") as handle:
            for number, line in enumerate(_utf8_lines(handle, path), 1):
                if line.strip():
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError as error:
                        raise SourceError(f"{path}:{number}: not valid JSON ({error.msg})") from None
                    if not isinstance(row, dict):
                        kind = _JSON_KINDS.get(type(row), type(row).__name__)
                        raise SourceError(
                            f"{path}:{number}: expected a JSON object with a {text_column!r} field, got {kind}"
                        )
                    if text_column not in row:
                        raise SourceError(f"{path}:{number}: no {text_column!r} field (fields: {', '.join(row)})")
                    yield row.get(id_column), _checked_text(row[text_column], f"{path}:{number}", text_column)
        return
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except (OSError, ValueError) as error:  # pyarrow's ArrowInvalid is a ValueError
        raise SourceError(f"{path}: not a readable parquet file ({error})") from None
    names = parquet.schema_arrow.names
    if text_column not in names:
        raise SourceError(f"{path}: no {text_column!r} column (columns: {', '.join(names)})")
    columns = [text_column] + ([id_column] if id_column in names else [])
    number = 0
    for batch in parquet.iter_batches(columns=columns, batch_size=4096):
        for row in batch.to_pylist():
            number += 1
            yield row.get(id_column), _checked_text(row[text_column], f"{path}: row {number}", text_column)


def _read_huggingface_rows(name: str, split: str, text_column: str, id_column: str, config: str | None):
    import datasets

    try:
        dataset = datasets.load_dataset(name, config, split=split, streaming=True)
    except ValueError as error:  # unknown split
        raise SourceError(f"{name}: {error}") from None
    except Exception as error:  # offline, unknown name, no access: say so plainly
        raise SourceError(f"{name}: could not load the Hugging Face dataset ({type(error).__name__}: {error})") from None
    try:
        for number, row in enumerate(dataset, 1):
            if text_column not in row:
                raise SourceError(f"{name}: no {text_column!r} column (columns: {', '.join(row)})")
            yield row.get(id_column), _checked_text(row[text_column], f"{name}: {split} row {number}", text_column)
    except SourceError:
        raise
    except Exception as error:  # files that disagree on their columns, a broken shard: name it, no traceback
        first_line = (str(error).splitlines() or [""])[0]
        raise SourceError(f"{name}: could not read the {split} split ({type(error).__name__}: {first_line})") from None


def _blank_reason(text: str | None) -> str | None:
    """Why a row holds no story (null or blank text), or None when it holds one."""
    if text is None:
        return "null text"
    return None if text.strip() else "empty text"


def _story_rows(rows: Iterator[tuple[object, str | None]], skipped: Counter | None) -> Iterator[tuple[object, str]]:
    """The rows that hold a story; the others are counted in ``skipped`` by reason."""
    for row_id, text in rows:
        reason = _blank_reason(text)
        if reason is None:
            yield row_id, text
        elif skipped is not None:
            skipped[reason] += 1


def _texts(rows: Iterator[tuple[object, str | None]], skipped: Counter | None) -> Iterator[str]:
    return (text for _, text in _story_rows(rows, skipped))


# --- stories of a split ----------------------------------------------------------------------------------------


def read_huggingface(name: str, split: str, column: str = "text", config: str | None = None) -> Iterator[str]:
    """Stream one split of a Hugging Face dataset (a hub name, or a local folder of data files)."""
    return _texts(_read_huggingface_rows(name, split, column, "id", config), None)


def _huggingface_splits(source: StorySource) -> set[str]:
    import datasets

    try:
        return set(datasets.get_dataset_split_names(source.location, source.hf_config))
    except Exception as error:
        raise SourceError(
            f"{source.location}: not a local file or directory, and not a loadable Hugging Face dataset "
            f"({type(error).__name__}: {error})"
        ) from None


def read_stories(source: StorySource, split: str, skipped: Counter | None = None) -> Iterator[str]:
    """Yield the stories of ``split`` ("train" or "validation").

    Rows without a story (null or blank text) are left out and counted by reason in ``skipped``, so the
    caller can report them; for a held-out source they are counted once, when reading train.
    """
    if split not in SPLITS:
        raise SourceError(f"unknown split {split!r}; expected one of {SPLITS}")
    if source.kind == "huggingface":
        names = _huggingface_splits(source)
        if "train" not in names:
            raise SourceError(f"{source.location}: no train split (splits: {', '.join(sorted(names))})")
        column, config = source.text_column, source.hf_config
        if "validation" in names:
            yield from _texts(_read_huggingface_rows(source.location, split, column, "id", config), skipped)
            return
        rows = _read_huggingface_rows(source.location, "train", column, "id", config)
    elif source.has_own_splits:
        for path in source.files[split]:
            yield from _texts(_read_rows(path, source.text_column, "id"), skipped)
        return
    else:
        rows = chain.from_iterable(_read_rows(path, source.text_column, "id") for path in source.files["train"])
    stories = _texts(rows, skipped if split == "train" else None)
    yield from _held_out(stories, split, source.validation_fraction)


def _held_out(stories: Iterator[str], split: str, fraction: float) -> Iterator[str]:
    want_validation = split == "validation"
    return (story for story in stories if in_validation(story, fraction) == want_validation)


def fingerprint(source: StorySource) -> str:
    """Identifies the content of a local source (paths, sizes, modification times) for caching."""
    files = [(split, p) for split, paths in sorted(source.files.items()) for p in paths]
    if source.kind == "huggingface":
        folder = Path(source.location)
        if not folder.is_dir():
            return f"hf:{source.location}:{source.hf_config}"
        files = [("hf", p) for p in files_below(folder)]
    parts = [f"config:{source.hf_config}"] if source.kind == "huggingface" else []
    for split, p in files:
        stat = p.stat()
        parts.append(f"{split}:{p.resolve()}:{stat.st_size}:{stat.st_mtime_ns}")
    return "|".join(parts)


def iter_source_rows(
    location: str | Path, split: str = "train", text_column: str = "text", id_column: str = "id",
    hf_config: str | None = None,
) -> Iterator[tuple[str, str | None]]:
    """(id, text) of every row of a source in its own order, rows without text included (text None when
    null): for readers that report such rows themselves (``tinylang filter`` rejects them). A folder may
    hold only the split asked for (a validation.parquet to translate); otherwise as ``split_rows``."""
    path = Path(location).expanduser()
    layout = folder_layout(path) if path.is_dir() else None
    if layout is not None:
        if split not in layout.files:
            present = sorted(name for name, files in layout.files.items() if files)
            raise SourceError(f"{path}: no {split} split here (it has: {', '.join(present) or 'none'})")
        yield from _file_rows(path, layout.files[split], split, text_column, id_column)
    else:
        yield from split_rows(open_source(location, text_column, hf_config=hf_config), split, id_column)


def split_rows(source: StorySource, split: str, id_column: str = "id") -> Iterator[tuple[str, str | None]]:
    """(id, text) of every row of ``split`` of an opened source, rows without text included. Ids come
    from ``id_column`` when the source has one, else from the position (``train-00000042``; in a shard
    or any file but a folder's train.* / validation.*, the position in that file:
    ``train-data/train-00001-of-00004.parquet-00000042``), so they stay put when a file is added. A
    single file is read whole whatever ``split``."""
    if source.kind == "huggingface":
        rows = _read_huggingface_rows(source.location, split, source.text_column, id_column, source.hf_config)
        yield from _with_ids(rows, split)
        return
    path = Path(source.location)
    files = source.files["train"] if path.is_file() else source.files.get(split, [])
    yield from _file_rows(path, files, split, source.text_column, id_column)


def _file_rows(path: Path, files: list[Path], split: str, text_column: str, id_column: str):
    if not files:
        raise SourceError(f"{path}: no {split} files (expected {split}.parquet, {split}.jsonl or {split}.txt, "
                          f"or files whose names say {split})")
    for file in files:
        whole = file == path or (file.parent == path and file.stem == split)  # the single-file id scheme
        prefix = split if whole else f"{split}-{file.relative_to(path).as_posix()}"
        yield from _with_ids(_read_rows(file, text_column, id_column), prefix)


def _with_ids(rows: Iterator[tuple[object, str | None]], prefix: str) -> Iterator[tuple[str, str | None]]:
    for index, (row_id, text) in enumerate(rows):
        yield (str(row_id) if row_id is not None else f"{prefix}-{index:08d}"), text


def iter_source_stories(
    location: str | Path, split: str = "train", text_column: str = "text", id_column: str = "id",
    hf_config: str | None = None, skipped: Counter | None = None,
) -> Iterator[tuple[str, str]]:
    """(id, stripped text) of the rows of a source that hold a story, for translation; the others are
    counted in ``skipped`` by reason. Ids as ``iter_source_rows`` gives them."""
    rows = iter_source_rows(location, split, text_column, id_column, hf_config)
    for row_id, text in _story_rows(rows, skipped):
        yield row_id, text.strip()
