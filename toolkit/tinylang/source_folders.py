"""How a local folder splits into story files: a corpus directory (train.* and validation.* at its
top), a downloaded Hugging Face dataset (files below whose names say their split), or the Hugging
Face cache (one revision of it). ``sources.open_source`` asks this module what a folder holds.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

SPLITS = ("train", "validation")
FILE_SUFFIXES = (".parquet", ".jsonl", ".txt")
# Data files that Hugging Face datasets reads and these readers do not: a folder of only these goes to datasets.
OTHER_DATA_SUFFIXES = (".json", ".csv", ".tsv", ".arrow")
# Words that name a split in a file or folder name, as Hugging Face datasets infers splits
# (data/train-00000-of-00004.parquet); at the top of a corpus directory the first name found wins.
_SPLIT_WORDS = {
    "train": ("train", "training"),
    "validation": ("validation", "valid", "val", "dev"),
    "test": ("test", "testing", "eval", "evaluation"),
}
LAYOUTS = (
    "train.parquet, train.jsonl or train.txt (with validation.* or valid.* beside it), train-*/validation-* "
    "shards, train/ and validation/ folders, or files below whose names say their split (data/train-00000.parquet)"
)


class SourceError(ValueError):
    """A story source that cannot be read; the message says what was expected."""


def _corpus_split_files(directory: Path, split: str) -> tuple[list[Path], dict[Path, str]]:
    """The corpus-directory layout at the top of ``directory``: split.*, split-*.* shards or a split/
    folder, where validation may also be called valid, val or dev (valid.txt beside train.txt). One
    name is read (validation before valid, val, dev), and of split.parquet / .jsonl / .txt side by
    side one format (copies of each other); the files left out are returned with why."""
    by_name: dict[str, tuple[list[Path], dict[Path, str]]] = {}
    for name in _SPLIT_WORDS[split]:
        whole = [directory / f"{name}{x}" for x in FILE_SUFFIXES if (directory / f"{name}{x}").is_file()]
        kept, ignored = _one_format(whole, split)
        for suffix in FILE_SUFFIXES:
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
    suffix = next((x for x in FILE_SUFFIXES if any(p.suffix == x for p in files)), None)
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


def files_below(folder: Path) -> list[Path]:
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


def _corpus_folders_below(path: Path, stories: list[Path]) -> list[Path]:
    """The outermost folders below ``path`` laid out as corpus directories (train.* at their top)
    that hold some of ``stories``. Several of them means ``path`` is a folder of corpora (data/ with a
    build in each subfolder): reading them all would silently train on their union. One is normal
    (a Hugging Face download's data/train-00000-of-00004.parquet)."""
    is_corpus: dict[Path, bool] = {}
    found: set[Path] = set()
    for story in stories:
        folder = path
        for part in story.relative_to(path).parent.parts:
            folder = folder / part
            if folder not in is_corpus:
                is_corpus[folder] = any(_corpus_split_files(folder, split)[0] for split in SPLITS)
            if is_corpus[folder]:
                found.add(folder)
                break
    return sorted(found)


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


def folder_layout(path: Path) -> FolderLayout | None:
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
        layout = folder_layout(snapshot)
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
    found = files_below(path)
    stories = [p for p in found if p.suffix in FILE_SUFFIXES]
    if not stories:
        return None if any(p.suffix in OTHER_DATA_SUFFIXES for p in found) else FolderLayout({s: [] for s in SPLITS}, {})
    corpora = _corpus_folders_below(path, stories)
    if len(corpora) > 1:
        shown = ", ".join(str(p.relative_to(path)) for p in corpora[:4]) + (", ..." if len(corpora) > 4 else "")
        raise SourceError(f"{path} holds {len(corpora)} corpora ({shown}), not one: point data.path at one of them "
                          "(to train on several, put their split files in one folder)")
    named = {p: _named_split(p.relative_to(path)) for p in stories}
    if not any(split in SPLITS for split in named.values()):
        shown = ", ".join(str(p.relative_to(path)) for p in stories[:3]) + (", ..." if len(stories) > 3 else "")
        raise SourceError(f"{path}: no file here names its split ({shown}); a folder needs {LAYOUTS}. "
                          "To train on one file, point data.path at it")
    ignored = {p: ("a test split" if split == "test" else "names no split") for p, split in named.items()
               if split not in SPLITS}
    files: dict[str, list[Path]] = {}
    for split in SPLITS:
        candidates = [p for p, named_split in named.items() if named_split == split]
        files[split], copies = _one_format(candidates, split)
        ignored |= copies
    return FolderLayout(files, ignored)
