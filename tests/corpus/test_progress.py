"""The build-corpus progress bar: its last frame agrees with the summary, and failures are not progress."""

from __future__ import annotations

import io

from rich.console import Console

from tinylang.corpus.progress import BuildProgress
from tinylang.llm import UsageStats


def last_frame(console: Console) -> str:
    return [line for line in console.file.getvalue().splitlines() if line.strip()][-1]


def test_the_last_frame_shows_the_final_tokens_and_counts_failures_apart():
    console = Console(file=io.StringIO(), width=200)
    usage = UsageStats(prompt_tokens=100, completion_tokens=20)
    with BuildProgress(console, total=4, done=1) as progress:
        progress.advance(usage=usage)  # the first advance refreshes the display
        usage.prompt_tokens, usage.completion_tokens = 4_000, 5_437  # later answers, within the refresh interval
        progress.advance(failed=True)
    frame = last_frame(console)
    assert "9,437 tok" in frame  # what the summary prints, not the figure of the last refresh
    assert "2/4" in frame and "1 failed" in frame  # the failed story is not counted as done
