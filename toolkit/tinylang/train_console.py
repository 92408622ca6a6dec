"""What the trainer writes and shows besides the model: its metrics and samples logs (JSON lines),
samples as one line each, the progress bar, and Ctrl-C that lets the step finish and saves.

train.py's loop uses these; they hold no training state of their own.
"""

from __future__ import annotations

import contextlib
import json
import signal
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


def append_jsonl(path: Path, row: dict[str, Any]) -> None:
    with path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def truncate_jsonl(path: Path, last_step: int) -> None:
    """Drop rows logged after the checkpoint we resume from, so the log matches the weights."""
    if not path.is_file():
        return
    rows = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    kept = [line for line in rows if json.loads(line).get("step", 0) <= last_step]
    path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")


def one_line(text: str, width: int) -> str:
    """A sample as one printable line: whitespace collapsed, control characters shown as U+FFFD."""
    flat = " ".join(text.split())
    flat = "".join(c if c.isprintable() else "\ufffd" for c in flat)
    return flat if len(flat) <= width else flat[: width - 1] + "…"


class StopRequest:
    """First Ctrl-C: finish the current step, save, exit. Second Ctrl-C: stop at once."""

    def __init__(self, console: Console):
        self.requested, self.console, self.previous = False, console, None

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        self.console.print("[yellow]Stopping after this step and saving a checkpoint (Ctrl-C again to abort)")

    def __enter__(self):
        with contextlib.suppress(ValueError):  # not the main thread: leave signals alone
            self.previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc):
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)


def progress_bar(console: Console) -> Progress:
    return Progress(
        TextColumn("[bold]step {task.completed}/{task.total}"),
        BarColumn(),
        TextColumn("loss {task.fields[loss]}"),
        TextColumn("val bpb {task.fields[bpb]}"),
        TextColumn("{task.fields[rate]} B/s"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
    )


__all__ = ["StopRequest", "append_jsonl", "one_line", "progress_bar", "truncate_jsonl"]
