"""The build-corpus progress bar: stories written, failures, rate, tokens, cost so far and ETA.

    with BuildProgress(console, total=1000, done=0, usage=client.usage) as progress:
        progress.advance()
"""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from ..llm import UsageStats

REFRESH_S = 0.2


class BuildProgress:
    """The bar counts stories written; a failed story is shown as failed, not as done, so a run whose
    requests all failed does not end on a full bar. Token and cost figures are read from ``usage``
    (the client's running totals), so the last frame shows the same numbers as the summary."""

    def __init__(self, console: Console, total: int, done: int, usage: UsageStats | None = None) -> None:
        self._progress = Progress(
            TextColumn("[bold]stories"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"),
            TextColumn("{task.fields[llm]}"), TimeRemainingColumn(), console=console, transient=False,
        )
        self._task = self._progress.add_task("build", total=total, completed=done, rate="", llm="")
        self._usage = usage
        self._pending = 0
        self.failed = 0
        self._written = 0
        self._started = time.perf_counter()
        self._last = 0.0

    def __enter__(self) -> "BuildProgress":
        self._progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self._flush()
        self._progress.stop()

    def advance(self, failed: bool = False) -> None:
        """Cheap per story; the display is refreshed at most every REFRESH_S seconds."""
        self.failed += failed
        self._written += not failed
        self._pending += not failed
        now = time.perf_counter()
        if now - self._last >= REFRESH_S:
            self._last = now
            self._flush()

    def _flush(self) -> None:
        elapsed = max(1e-9, time.perf_counter() - self._started)
        fields = {"rate": f"{self._written / elapsed:,.1f}/s", "llm": self._llm_text()}
        self._progress.update(self._task, advance=self._pending, **fields)
        self._pending = 0

    def _llm_text(self) -> str:
        """'12,345 tok $0.0123 (4 cached) 2 failed' from the running totals; failures also without an LLM."""
        failed = f" [red]{self.failed:,} failed[/]" if self.failed else ""
        usage = self._usage
        if usage is None:
            return failed.lstrip()
        tokens = usage.prompt_tokens + usage.completion_tokens
        cost = f" ${usage.cost_usd:.4f}" if usage.cost_usd is not None else ""
        return f"{tokens:,} tok{cost} ({usage.cache_hits} cached){failed}"
