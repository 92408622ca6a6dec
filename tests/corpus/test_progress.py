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
    with BuildProgress(console, total=4, done=1, usage=usage) as progress:
        progress.advance()  # the first advance refreshes the display
        usage.prompt_tokens, usage.completion_tokens = 4_000, 5_437  # later answers, within the refresh interval
        progress.advance(failed=True)
    frame = last_frame(console)
    assert "9,437 tok" in frame  # what the summary prints, not the figure of the last refresh
    assert "2/4" in frame and "1 failed" in frame  # the failed story is not counted as done


def test_batch_results_that_fail_reach_the_bar_as_failed(tmp_path):
    """A Batch API line with an error, and a request the batch never answered, both go to the one
    ``fail`` callback, which run_batch wires to failures.jsonl and to the bar's failed count."""
    import json
    from types import SimpleNamespace

    from tinylang.corpus.batch import _collect

    lines = [{"custom_id": "fi-1", "response": {"status_code": 400, "body": {"error": {"message": "too long"}}}}]
    api = SimpleNamespace(files=SimpleNamespace(content=lambda _id: SimpleNamespace(
        text="\n".join(json.dumps(line) for line in lines))))
    info = SimpleNamespace(output_file_id="out", error_file_id=None, status="expired")
    entry = {"id": "batch-0", "request_ids": ["fi-1", "fi-2"]}
    by_id = {"fi-1": SimpleNamespace(id="fi-1"), "fi-2": SimpleNamespace(id="fi-2")}
    failed = []
    failures = _collect(api, info, entry, by_id, {}, None, None, write=None,
                        fail=lambda story_id, kind, message: failed.append((story_id, kind)))
    assert failures == 2 and failed == [("fi-1", "batch_error"), ("fi-2", "batch_expired")]
