"""tinylang evaluate when the judge misbehaves: failed requests and unparsed answers are recorded,
counted and warned about, never scored, and everything else is still written; fatal errors stop with
one line; a judge without an endpoint stops the command before anything slow."""

from __future__ import annotations

import json
import threading

import pandas as pd
from tinylang.cli import app
from tinylang.testing.openai_server import OpenAIServer
from typer.testing import CliRunner

SCORES = {"grammar": 6, "creativity": 4, "consistency": 5, "plot": 3, "age_group": "B"}


def _evaluate(run, name: str, *options: str):
    return CliRunner().invoke(app, ["evaluate", str(run), "--lang", "fi", "--samples", "2", "--limit", "2",
                                    "--max-bytes", "30", "--name", name, "--judge-model", "judge", *options])


def _first_answer_refuses():
    lock, calls = threading.Lock(), []

    def answer(messages):
        with lock:
            calls.append(1)
            first = len(calls) == 1
        return "I refuse to grade this." if first else json.dumps(SCORES)

    return answer


def test_failed_requests_and_unparsed_answers_are_counted_warned_and_never_scored(tiny_run, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    with OpenAIServer(answer=_first_answer_refuses(), slow_s=3) as server:
        server.faults.extend(["slow", "500"])  # with one attempt each: a timeout and a server error
        result = _evaluate(tiny_run, "failures", "--base-url", server.url, "--judge-timeout", "1",
                           "--judge-max-attempts", "1", "--judge-max-tokens", "300")
        bodies = list(server.requests)
    assert result.exit_code == 0, result.output
    assert {body["max_tokens"] for body in bodies} == {300} and {body["temperature"] for body in bodies} == {0.0}
    out = tiny_run / "eval" / "failures"
    frame = pd.read_parquet(out / "completions.parquet")
    assert len(frame) == 4 and frame["judge_failed"].sum() == 2
    assert sorted(frame.loc[frame["judge_failed"], "judge_failure"]) == ["server_error", "timeout"]
    assert frame.loc[frame["judge_failed"], "judge_grammar"].isna().all()
    assert frame.loc[frame["judge_failed"], "judge_error"].str.startswith("judge request failed").all()
    summary = json.loads((out / "summary.json").read_text())
    judge = summary["judge"]
    assert (judge["parsed"], judge["unparsed"], judge["failed"]) == (1, 1, 2)
    assert judge["failures_by_kind"] == {"server_error": 1, "timeout": 1}
    assert judge["timeout_s"] == 1 and judge["max_attempts"] == 1 and judge["max_tokens"] == 300
    assert summary["metrics"]["judge_grammar"]["n"] == 1 and summary["held_out"]["stories"] == 2
    assert "2 failed requests" in (out / "report.md").read_text()
    warnings = result.stderr.strip().splitlines()
    assert len(warnings) == 2, result.stderr
    assert warnings[0].startswith("warning: 2 of 4 judge requests failed (1 server_error, 1 timeout;")
    assert warnings[1].startswith("warning: 1 of 4 judge answers could not be parsed (first: unparsed (prose)")
    for bar in ("completions", "judge", "held-out bits", "validation bits"):
        assert bar in result.stdout


def test_a_fatal_judge_error_stops_with_one_line_and_keeps_the_completions(tiny_run, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-wrong-key")
    with OpenAIServer(answer=lambda messages: json.dumps(SCORES), api_key="sk-right-key") as server:
        result = _evaluate(tiny_run, "fatal", "--base-url", server.url)
    assert result.exit_code == 1
    error = result.stderr.strip()
    assert "\n" not in error and error.startswith("error: the endpoint refused the API key (401)")
    assert "sk-wrong-key" not in result.output
    kept = tiny_run / "eval" / "fatal" / "completions-unjudged.parquet"
    assert str(kept) in error and len(pd.read_parquet(kept)) == 4
    assert not (tiny_run / "eval" / "fatal" / "summary.json").exists()


def test_a_judge_without_an_endpoint_stops_before_the_model_is_even_loaded(tiny_run, monkeypatch):
    for variable in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(variable, raising=False)

    def load_model(*args, **kwargs):
        raise AssertionError("the model was loaded before the judge settings were checked")

    monkeypatch.setattr("tinylang.evaluate.run.load_model", load_model)
    result = _evaluate(tiny_run, "no-endpoint")
    assert result.exit_code == 1, result.output
    assert result.stderr.strip().startswith("error: no endpoint: set OPENAI_API_KEY")
    assert not (tiny_run / "eval" / "no-endpoint").exists()


def test_an_instruct_judge_that_leaves_out_instruction_following_is_counted_as_unparsed(tiny_run, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    with OpenAIServer(answer=lambda messages: json.dumps(SCORES)) as server:
        result = _evaluate(tiny_run, "instruct-missing", "--instruct", "--base-url", server.url)
    assert result.exit_code == 0, result.output
    summary = json.loads((tiny_run / "eval" / "instruct-missing" / "summary.json").read_text())
    assert summary["judge"]["parsed"] == 4 and summary["judge"]["instruction_following_unparsed"] == 4
    assert "judge_instruction_following" not in summary["metrics"] and summary["metrics"]["judge_grammar"]["n"] == 4
    assert "warning: 4 of 4 parsed judge answers gave no instruction_following score" in result.stderr
