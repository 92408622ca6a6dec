"""The one rule for folders that commands write into (build-corpus, filter, export): a new, empty,
or the command's own earlier output. Anything else is refused with one line, because writing there
would overwrite files the command did not make (a user's corpus, a README.md of theirs)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path


def output_folder_problem(out: str | Path, writer: str, is_own: Callable[[Path], bool], option: str = "--out") -> str | None:
    """Why ``writer`` must not write into ``out``: a file where a folder is needed (``out`` or a
    parent), or a folder holding files that are not ``writer``'s own output (``is_own``). None when
    it may write there."""
    out = Path(out)
    for place in (out, *out.parents):
        if place.exists() and not place.is_dir():
            return f"{place} is a file, not a folder; {option} takes a folder (new, empty, or an earlier {writer} output)"
        if place.exists():
            break
    if not out.is_dir() or is_own(out):
        return None
    entries = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    if not entries:
        return None
    shown = ", ".join(entries[:4]) + (", ..." if len(entries) > 4 else "")
    return (f"{out} already holds files that {writer} did not write ({shown}); writing there would overwrite "
            f"them: choose a new or empty {option}")


def make_folder(folder: str | Path, option: str) -> str | None:
    """Create ``folder`` (and its parents) if needed; why that failed, naming ``option`` (the recipe
    key or flag that chose it), or None. Without this a file in the way, or a place without write
    permission, ends a command in a traceback after minutes of work."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        blocking = next((p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()), None)
        why = f"{blocking} is a file, not a folder" if blocking is not None else error.strerror or str(error)
        return f"{option} {folder}: cannot create the folder ({why})"
    return None
