"""Reading stories from wherever they are: a corpus directory, a folder of story files, a TinyStories-style
``.txt``, ``.jsonl``, ``.parquet``, or a Hugging Face dataset. Training and corpus translation both start here.

    for text in read_stories(open_source("corpora/fi/seed-stories.txt"), split="train"):
        ...
"""

from __future__ import annotations

import difflib
import json
import os
import re
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import chain
from pathlib import Path

STORY_SEPARATOR = "<|endoftext|>"
SPLITS = ("train", "validation")
_FILE_SUFFIXES = (".parquet", ".jsonl", ".txt")
# Data files that Hugging Face datasets reads and these readers do not: a folder of only these goes to datasets.
_OTHER_DATA_SUFFIXES = (".json", ".csv", ".tsv", ".arrow")
# Words that name a split in a file or folder name, as Hugging Face datasets infers splits
# (data/train-00000-of-00004.parquet); at the top of a corpus directory the first name found wins.
_SPLIT_WORDS = {
    "train": ("train", "training"),
    "validation": ("validation", "valid", "val", "dev"),
    "test": ("test", "testing", "eval", "evaluation"),
}
_LAYOUTS = (
    "train.parquet, train.jsonl or train.txt (with validation.* or valid.* beside it), train-*/validation-* "
    "shards, train/ and validation/ folders, or files below whose names say their split (data/train-00000.parquet)"
)


class SourceError(ValueError):
    """A story source that cannot be read; the message says what was expected."""


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
        layout = _folder_layout(path)
        if layout is None:  # only formats datasets reads (.json, .csv, .arrow)
            return StorySource(str(path), "huggingface", {}, **common)
        if not layout.files["train"]:
            raise SourceError(f"{path}: no training stories here; a folder needs {_LAYOUTS}")
        ignored = tuple(sorted(layout.ignored.items()))
        if not layout.files["validation"]:
            return StorySource(str(path), "file", {"train": layout.files["train"]}, **common, ignored=ignored)
        return StorySource(str(path), "directory", layout.files, **common, ignored=ignored)
    if path.is_file():
        if path.suffix not in _FILE_SUFFIXES:
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
    if location.endswith(_FILE_SUFFIXES + _OTHER_DATA_SUFFIXES):
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


def _corpus_split_files(directory: Path, split: str) -> tuple[list[Path], dict[Path, str]]:
    """The corpus-directory layout at the top of ``directory``: split.*, split-*.* shards or a split/
    folder, where validation may also be called valid, val or dev (valid.txt beside train.txt). One
    name is read (validation before valid, val, dev), and of split.parquet / .jsonl / .txt side by
    side one format (copies of each other); the files left out are returned with why."""
    by_name: dict[str, tuple[list[Path], dict[Path, str]]] = {}
    for name in _SPLIT_WORDS[split]:
        whole = [directory / f"{name}{x}" for x in _FILE_SUFFIXES if (directory / f"{name}{x}").is_file()]
        kept, ignored = _one_format(whole, split)
        for suffix in _FILE_SUFFIXES:
            kept += sorted(directory.glob(f"{name}-*{suffix}"))
            kept += sorted((directory / name).glob(f"*{suffix}")) if (directory / name).is_dir() else []
        kept = [p for p in kept if not p.name.startswith(".")]
        if kept:
            by_name[name] = (kept, ignored)
    if not by_name:
        return [], {}
    name = next(iter(by_name))
    kept, ignored = by_name.pop(name)
    for other, _ in by_name.values():
        ignored |= {p: f"{name} files are the {split} split" for p in other}
    return kept, ignored


def _one_format(files: list[Path], split: str) -> tuple[list[Path], dict[Path, str]]:
    """The files of one format (parquet, else jsonl, else txt) and the copies in others, left out."""
    suffix = next((x for x in _FILE_SUFFIXES if any(p.suffix == x for p in files)), None)
    return ([p for p in files if p.suffix == suffix],
            {p: f"a {suffix} copy of the {split} split is read instead" for p in files if p.suffix != suffix})


def _named_split(relative: Path) -> str | None:
    """The split a file's name, or else the nearest folder name on its way, says (train-0001.parquet, valid/x.jsonl)."""
    for part in (relative.with_suffix("").name, *reversed(relative.parent.parts)):
        words = set(re.split(r"[-._ 0-9]+", part.lower()))
        for split, names in _SPLIT_WORDS.items():
            if words.intersection(names):
                return split
    return None


def _files_below(folder: Path) -> list[Path]:
    """Every file below ``folder`` that is not hidden (nor in a hidden or ``__special__`` folder, which
    are not entered: a .git stays unread), following linked folders once each."""
    found, seen = [], set()
    for root, dirs, files in os.walk(folder, followlinks=True):
        real = os.path.realpath(root)
        if real in seen:  # a link back up the tree
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = sorted(d for d in dirs if not d.startswith((".", "__")))
        found += [Path(root) / name for name in sorted(files) if not name.startswith((".", "__"))]
    return found


@dataclass(frozen=True)
class FolderLayout:
    """The story files of a local folder by split, and the story files it leaves out (with why)."""

    files: dict[str, list[Path]]
    ignored: dict[Path, str]


def _hub_cache_snapshot(path: Path) -> tuple[Path | None, list[Path]]:
    """For a dataset folder of the Hugging Face cache (``datasets--owner--name`` with ``blobs/``,
    ``refs/`` and ``snapshots/<revision>/``) or its ``snapshots/`` folder: the revision ``refs/main``
    names (else the newest), and the other revisions, whose files would repeat the same stories."""
    cache = path.parent if path.name == "snapshots" else path
    snapshots = cache / "snapshots"
    if not snapshots.is_dir() or not (cache / "blobs").is_dir():
        return None, []
    revisions = sorted((p for p in snapshots.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)
    if not revisions:
        return None, []
    main = cache / "refs" / "main"
    named = snapshots / main.read_text(encoding="utf-8").strip() if main.is_file() else None
    chosen = named if named in revisions else revisions[-1]
    return chosen, [p for p in revisions if p != chosen]


def _folder_layout(path: Path) -> FolderLayout | None:
    """How a local folder splits into story files; None when it holds only data files that datasets
    must read (.json, .csv, .arrow).

    A corpus directory (train.* and validation.* at the top) keeps its layout and nothing else in it
    is read. Otherwise the files below whose name (or folder) says their split are read, as a
    downloaded Hugging Face dataset is laid out (data/train-00000-of-00004.parquet); files that name
    no split (a LICENSE.txt, names.txt) and test files are left out and listed, and when a split
    comes in several formats (TinyStories ships .txt and .parquet copies) one format is kept:
    parquet, else jsonl, else txt. A folder whose files name no split at all is refused: reading
    every .txt below would take word lists and notes for stories."""
    snapshot, older = _hub_cache_snapshot(path)
    if snapshot is not None:  # a Hugging Face cache folder: one snapshot, not every revision ever fetched
        layout = _folder_layout(snapshot)
        if layout is not None:
            layout.ignored.update({p: "another revision in the Hugging Face cache" for p in older})
        return layout
    top = {split: _corpus_split_files(path, split) for split in SPLITS}
    if any(files for files, _ in top.values()):
        return FolderLayout({split: files for split, (files, _) in top.items()},
                            {p: why for _, ignored in top.values() for p, why in ignored.items()})
    if any((path / "raw").glob("shard-*.jsonl")):
        raise SourceError(f"{path} is a build-corpus folder without its train/validation splits yet (an interrupted "
                          "build?): run the same build-corpus command again to finish it")
    found = _files_below(path)
    stories = [p for p in found if p.suffix in _FILE_SUFFIXES]
    if not stories:
        return None if any(p.suffix in _OTHER_DATA_SUFFIXES for p in found) else FolderLayout({s: [] for s in SPLITS}, {})
    named = {p: _named_split(p.relative_to(path)) for p in stories}
    if not any(split in SPLITS for split in named.values()):
        shown = ", ".join(str(p.relative_to(path)) for p in stories[:3]) + (", ..." if len(stories) > 3 else "")
        raise SourceError(f"{path}: no file here names its split ({shown}); a folder needs {_LAYOUTS}. "
                          "To train on one file, point data.path at it")
    ignored = {p: ("a test split" if split == "test" else "names no split") for p, split in named.items()
               if split not in SPLITS}
    files: dict[str, list[Path]] = {}
    for split in SPLITS:
        candidates = [p for p, named_split in named.items() if named_split == split]
        files[split], copies = _one_format(candidates, split)
        ignored |= copies
    return FolderLayout(files, ignored)


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
    """TinyStories release format: stories separated by <|endoftext|>, on its own line or inside one."""
    parts: list[str] = []
    with path.open(encoding="utf-8") as handle:
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
        with path.open(encoding="utf-8") as handle:
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

    parquet = pq.ParquetFile(path)
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
        files = [("hf", p) for p in _files_below(folder)]
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
    layout = _folder_layout(path) if path.is_dir() else None
    if layout is not None:
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
