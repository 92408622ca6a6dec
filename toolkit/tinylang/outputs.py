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
