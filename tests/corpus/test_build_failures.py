"""build-corpus when requests fail: runs that write nothing, stories the endpoint rejects, a spent quota,
a wrong parameter, and failures.jsonl across reruns."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.openai_errors import BAD_PARAMETER, CONTEXT_TOO_LONG, QUOTA, ErrorServer, prompt_of
from tinylang.cli import app
from tinylang.corpus.build import BuildOptions, build_corpus
from tinylang.corpus.store import read_failures
from tinylang.llm import REJECTIONS_BEFORE_FATAL
from tinylang.records import read_parquet


@pytest.fixture(autouse=True)
def no_endpoint(monkeypatch):
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_MODEL"):
        monkeypatch.delenv(name, raising=False)


def build_command(lang: str, server, out: Path, *extra: str) -> list[str]:
    return ["build-corpus", "--lang", lang, "--out", str(out), "--base-url", server.url, "--model", "test-model",
            *extra]


def one_line(output: str) -> str:
    return " ".join(output.split())


def corpus_ids(out: Path) -> set[str]:
    return {r.id for split in ("train", "validation") for r in read_parquet(out / f"{split}.parquet")}


def english_source(tmp_path: Path, long_ids: set[int], count: int) -> Path:
    """Stories to translate; those in ``long_ids`` say LONG, which the error server rejects as too long."""
    rows = [{"id": f"s{i:02d}", "text": f"Tom had a dog number {i}." + (" LONG" if i in long_ids else "")}
            for i in range(count)]
    path = tmp_path / "english.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def reject_long(body: dict):
    return (400, CONTEXT_TOO_LONG) if "LONG" in prompt_of(body) else None


@pytest.mark.parametrize("fault,options", [("500", []), ("slow", ["--timeout", "1"])])
def test_a_run_where_every_request_fails_prints_its_summary_writes_the_card_and_exits_2(tmp_path, llm_server, fault,
                                                                                       options):
    """The real Finnish pack, so the filters run (on no stories at all)."""
    llm_server.faults.extend([fault] * 4)
    out = tmp_path / "c"
    result = CliRunner().invoke(app, build_command("fi", llm_server, out, "--n", "4", "--max-attempts", "1",
                                                   "--concurrency", "4", *options))
    text = one_line(result.output)
    assert result.exit_code == 2, result.output
    assert "Wrote 0 stories" in text and "4 requests failed" in text
    assert "0/4" in text and "4 failed" in text  # the bar counts failures as failed, not as written
    assert "no stories to check yet" in (out / "card.md").read_text()
    assert json.loads((out / "stats.json").read_text())["missing"] == 4
    assert len(read_failures(out)) == 4


def test_a_story_the_endpoint_rejects_is_recorded_and_the_build_goes_on(tiny_pack, tmp_path):
    long_ids = {1, 3, 5, 7, 9, 11}  # more than REJECTIONS_BEFORE_FATAL, each after an answered story
    assert len(long_ids) > REJECTIONS_BEFORE_FATAL
    source = english_source(tmp_path, long_ids, 12)
    out = tmp_path / "translated"
    command = ["--mode", "translate", "--source", str(source), "--n", "12", "--concurrency", "1", "--no-filter"]
    with ErrorServer(reject_long) as server:
        first = CliRunner().invoke(app, build_command(str(tiny_pack), server, out, *command))
        assert first.exit_code == 2, first.output
        assert "The endpoint rejected 6 of them" in one_line(first.output)
        assert len(server.rejected) == 6  # each asked once: a rejection is not retried
        assert corpus_ids(out) == {f"s{i:02d}" for i in range(12)} - {f"s{i:02d}" for i in long_ids}
        failures = read_failures(out)
        assert sorted(failures) == sorted(f"s{i:02d}" for i in long_ids)
        assert all(f["kind"] == "bad_request" and "context_length_exceeded" in f["message"] for f in failures.values())
        # A rerun asks only for the rejected stories; all of them are rejected again, which is no reason to
        # call the parameters wrong: the build ends as before, with the same six failures.
        sent_before = len(server.requests)
        again = CliRunner().invoke(app, build_command(str(tiny_pack), server, out, *command))
        assert again.exit_code == 2, again.output
        assert len(server.requests) - sent_before == 6 and len(server.rejected) == 12
    assert sorted(read_failures(out)) == sorted(failures)
    assert len((out / "failures.jsonl").read_text().splitlines()) == 6  # one line per story, the latest


def test_a_parameter_every_request_is_rejected_for_stops_the_build(tiny_pack, tmp_path):
    out = tmp_path / "c"
    with ErrorServer(lambda body: (400, BAD_PARAMETER)) as server:
        result = CliRunner().invoke(app, build_command(str(tiny_pack), server, out, "--n", "40", "--concurrency", "2"))
    text = one_line(result.output)
    assert result.exit_code == 1, result.output
    assert f"rejected the first {REJECTIONS_BEFORE_FATAL} requests" in text and "max_tokens" in text
    assert len(server.requests) <= REJECTIONS_BEFORE_FATAL + 1  # not one per story


def test_a_spent_quota_stops_the_build_with_exit_1(tiny_pack, tmp_path):
    out = tmp_path / "c"
    with ErrorServer(lambda body: (429, QUOTA)) as server:
        result = CliRunner().invoke(app, build_command(str(tiny_pack), server, out, "--n", "20", "--concurrency", "2"))
    assert result.exit_code == 1, result.output
    assert "no quota left" in one_line(result.output)
    assert len(server.requests) <= 2  # the requests already in flight; none retried


def test_failures_jsonl_holds_only_the_stories_still_missing(tiny_pack, tmp_path, llm_server):
    out = tmp_path / "c"
    options = BuildOptions(lang=str(tiny_pack), n=20, out=out, model="test-model", base_url=llm_server.url,
                           backoff_s=0.01, timeout_s=1.0, max_attempts=1, concurrency=1, filter=False)
    llm_server.faults.extend(["500"] * 3)
    build_corpus(options)
    first_failures = read_failures(out)
    assert len(first_failures) == 3
    llm_server.faults.append("500")  # the rerun asks for the three again; one fails a second time
    second = build_corpus(options)
    still_missing = read_failures(out)
    assert len(still_missing) == 1 and set(still_missing) <= set(first_failures)
    assert len((out / "failures.jsonl").read_text().splitlines()) == 1
    assert second.stats["missing"] == second.stats["failed_pending_retry"] == 1
    assert not set(still_missing) & corpus_ids(out)
    third = build_corpus(options)
    assert third.stats["missing"] == 0 and not (out / "failures.jsonl").exists()
