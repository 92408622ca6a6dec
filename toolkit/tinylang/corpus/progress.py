"""The build-corpus progress bar: stories done, rate, tokens, cost so far and ETA.

    with BuildProgress(console, total=1000, done=0) as progress:
        progress.advance()
"""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from ..llm import UsageStats

REFRESH_S = 0.2


class BuildProgress:
    def __init__(self, console: Console, total: int, done: int) -> None:
        self._progress = Progress(
            TextColumn("[bold]stories"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"),
            TextColumn("{task.fields[llm]}"), TimeRemainingColumn(), console=console, transient=False,
        )
        self._task = self._progress.add_task("build", total=total, completed=done, rate="", llm="")
        self._pending = 0
        self.failed = 0
        self._written = 0
        self._started = time.perf_counter()
        self._last = 0.0

    def __enter__(self) -> "BuildProgress":
        self._progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self._flush(None)
        self._progress.stop()

    def advance(self, failed: bool = False, usage: UsageStats | None = None) -> None:
        """Cheap per story; the display is refreshed at most every REFRESH_S seconds."""
        self._pending += 1
        self.failed += failed
        self._written += not failed
        now = time.perf_counter()
        if now - self._last >= REFRESH_S:
            self._last = now
            self._flush(usage)

    def _flush(self, usage: UsageStats | None) -> None:
        elapsed = max(1e-9, time.perf_counter() - self._started)
        fields = {"rate": f"{self._written / elapsed:,.1f}/s"}
        if usage is not None:
            tokens = usage.prompt_tokens + usage.completion_tokens
            cost = f" ${usage.cost_usd:.4f}" if usage.cost_usd is not None else ""
            failed = f" [red]{self.failed} failed[/]" if self.failed else ""
            fields["llm"] = f"{tokens:,} tok{cost} ({usage.cache_hits} cached){failed}"
        self._progress.update(self._task, advance=self._pending, **fields)
        self._pending = 0
