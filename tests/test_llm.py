"""The LLM layer through real HTTP and the real openai client, against a local fault-injecting server."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.openai_errors import BAD_PARAMETER, CONTEXT_TOO_LONG, NO_SUCH_MODEL, QUOTA, ErrorServer, prompt_of
from tinylang.llm import (REJECTIONS_BEFORE_FATAL, LLMClient, LLMFatalError, LLMRequestFailed, LLMSettings,
                          request_key)
from tinylang.testing.openai_server import OpenAIServer

PROMPT = [{"role": "user", "content": 'Write about "koira".'}]


def settings_for(server: OpenAIServer, **overrides) -> LLMSettings:
    values = dict(model="test-model", base_url=server.url, api_key="sk-test-secret-123", backoff_s=0.01,
                  timeout_s=1.0, max_attempts=3, price_input_per_mtok=1.0, price_output_per_mtok=2.0)
    return LLMSettings(**(values | overrides))


def complete(client: LLMClient, key: str = "r1", messages=PROMPT):
    async def run():
        try:
            return await client.complete(messages, key)
        finally:
            await client.aclose()

    return asyncio.run(run())


@pytest.mark.parametrize("fault,kind", [
    ("500", "server_error"), ("drop", "connection"), ("empty", "empty"), ("length", "truncated"),
    ("truncated", "malformed"), ("malformed", "malformed"), ("slow", "timeout"),
])
def test_transient_faults_are_retried(llm_server, fault, kind):
    llm_server.faults.append(fault)
    client = LLMClient(settings_for(llm_server))
    completion = complete(client)
    assert "koira" in completion.text
    assert client.usage.retries_by_kind == {kind: 1}
    assert len(llm_server.requests) == 2 and client.usage.requests == 1


def test_rate_limit_waits_as_long_as_retry_after_says(llm_server):
    llm_server.retry_after_s = 0.6
    llm_server.faults.append("429")
    client = LLMClient(settings_for(llm_server, backoff_s=0.0))
    started = time.perf_counter()
    complete(client)
    assert time.perf_counter() - started >= 0.6
    assert client.usage.retries_by_kind == {"rate_limit": 1}


def test_authentication_error_stops_at_once_without_leaking_the_key(llm_server):
    llm_server.faults.extend(["401", "401"])
    client = LLMClient(settings_for(llm_server))
    with pytest.raises(LLMFatalError, match="refused the API key") as error:
        complete(client)
    assert "sk-test-secret-123" not in str(error.value)
    assert len(llm_server.requests) == 1


def test_a_request_that_keeps_failing_is_reported_with_its_kind(llm_server):
    llm_server.faults.extend(["500"] * 3)
    client = LLMClient(settings_for(llm_server))
    with pytest.raises(LLMRequestFailed) as error:
        complete(client)
    assert error.value.kind == "server_error" and error.value.attempts == 3
    assert client.usage.failures_by_kind == {"server_error": 1}


def test_cache_answers_a_repeat_without_http_and_never_stores_the_key(llm_server, tmp_path):
    cache = tmp_path / "cache.sqlite"
    first = complete(LLMClient(settings_for(llm_server), cache))
    client = LLMClient(settings_for(llm_server), cache)
    again = complete(client)
    assert again.text == first.text and again.cached
    assert len(llm_server.requests) == 1 and client.usage.cache_hits == 1 and client.usage.requests == 0
    assert b"sk-test-secret-123" not in cache.read_bytes()
    other = LLMClient(settings_for(llm_server), cache)
    complete(other, key="r2")  # another request id is another story: asked anew
    assert len(llm_server.requests) == 2


def test_usage_and_cost_are_counted(llm_server):
    client = LLMClient(settings_for(llm_server))
    completion = complete(client)
    assert client.usage.prompt_tokens == completion.prompt_tokens > 0
    expected = (completion.prompt_tokens * 1.0 + completion.completion_tokens * 2.0) / 1e6
    assert client.usage.cost_usd == pytest.approx(expected)


def test_concurrency_is_bounded(tmp_path):
    with OpenAIServer(latency_s=0.1) as server:
        client = LLMClient(settings_for(server, concurrency=3))

        async def run():
            try:
                await asyncio.gather(*(client.complete(PROMPT, f"r{i}") for i in range(12)))
            finally:
                await client.aclose()

        started = time.perf_counter()
        asyncio.run(run())
        assert server.max_in_flight == 3
        assert time.perf_counter() - started >= 0.4  # 12 requests, 3 at a time, 0.1 s each


def test_request_key_depends_on_model_messages_parameters_and_id(llm_server):
    base = settings_for(llm_server)
    key = request_key(base, PROMPT, "a")
    assert key == request_key(settings_for(llm_server, api_key="other"), PROMPT, "a")
    assert key != request_key(base, PROMPT, "b")
    assert key != request_key(settings_for(llm_server, temperature=0.5), PROMPT, "a")
    assert key != request_key(settings_for(llm_server, model="other"), PROMPT, "a")


def test_settings_resolve_from_the_environment(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.delenv("OPENAI_MODEL", raising=False)
    with pytest.raises(LLMFatalError, match="--model"):
        LLMSettings.resolve()
    with pytest.raises(LLMFatalError, match="no endpoint"):
        LLMSettings.resolve(model="gpt-4o-mini")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env-secret")
    settings = LLMSettings.resolve(model="gpt-4o-mini")
    assert settings.price_input_per_mtok == 0.15 and "sk-env-secret" not in repr(settings)
    assert "api_key" not in settings.public()


# --- errors told apart by their body: quota, one rejected request, every request rejected ---------------------


def complete_all(client: LLMClient, keys: list[str], messages=PROMPT) -> list:
    """Each request in turn; its completion or the exception it raised."""
    async def run():
        results = []
        try:
            for key in keys:
                try:
                    results.append(await client.complete(messages, key))
                except (LLMRequestFailed, LLMFatalError) as error:
                    results.append(error)
        finally:
            await client.aclose()
        return results

    return asyncio.run(run())


def test_a_spent_quota_stops_at_once_although_its_message_does_not_say_insufficient_quota():
    with ErrorServer(lambda body: (429, QUOTA)) as server:
        client = LLMClient(settings_for(server))
        with pytest.raises(LLMFatalError, match="no quota left"):
            complete(client)
        assert len(server.requests) == 1  # not retried as a rate limit


def test_an_ordinary_rate_limit_is_still_retried():
    limits = iter([(429, {"message": "Rate limit reached.", "type": "requests", "code": "rate_limit_exceeded"})])
    with ErrorServer(lambda body: next(limits, None)) as server:
        client = LLMClient(settings_for(server))
        assert "koira" in complete(client).text
        assert client.usage.retries_by_kind == {"rate_limit": 1}


@pytest.mark.parametrize("status", [400, 422])
def test_a_rejected_request_fails_alone_without_retries(status):
    too_long = [{"role": "user", "content": 'Translate "LONG" ' + "word " * 50}]
    with ErrorServer(lambda body: (status, CONTEXT_TOO_LONG) if "LONG" in prompt_of(body) else None) as server:
        client = LLMClient(settings_for(server))

        async def run():
            try:
                with pytest.raises(LLMRequestFailed) as failed:
                    await client.complete(too_long, "long-one")
                return failed.value, await client.complete(PROMPT, "short-one")
            finally:
                await client.aclose()

        error, completion = asyncio.run(run())
    assert error.kind == "bad_request" and error.attempts == 1
    assert f"HTTP {status} (context_length_exceeded)" in str(error) and "maximum context length" in str(error)
    assert len(server.rejected) == 1  # asking again would get the same answer
    assert "koira" in completion.text  # the run goes on
    assert client.usage.failures_by_kind == {"bad_request": 1} and client.usage.retries == 0


def test_an_unknown_model_stops_the_run():
    with ErrorServer(lambda body: (404, NO_SUCH_MODEL)) as server:
        with pytest.raises(LLMFatalError, match=r"no such model or route \(404\)"):
            complete(LLMClient(settings_for(server)))
        assert len(server.requests) == 1


def test_the_first_requests_all_rejected_stop_the_run_as_a_wrong_parameter():
    with ErrorServer(lambda body: (400, BAD_PARAMETER)) as server:
        results = complete_all(LLMClient(settings_for(server)), [f"r{i}" for i in range(REJECTIONS_BEFORE_FATAL + 2)])
    kinds = [type(r).__name__ for r in results]
    assert kinds[: REJECTIONS_BEFORE_FATAL - 1] == ["LLMRequestFailed"] * (REJECTIONS_BEFORE_FATAL - 1)
    assert kinds[REJECTIONS_BEFORE_FATAL - 1] == "LLMFatalError"
    assert "a parameter is probably wrong" in str(results[REJECTIONS_BEFORE_FATAL - 1])
    assert "max_tokens" in str(results[REJECTIONS_BEFORE_FATAL - 1])


def test_rejections_after_an_answer_or_known_from_an_earlier_run_do_not_stop_it():
    many = REJECTIONS_BEFORE_FATAL + 2

    def answer_only_the_first(body: dict):  # the requests go one at a time
        return None if len(server.requests) == 1 else (400, CONTEXT_TOO_LONG)

    with ErrorServer(answer_only_the_first) as server:
        results = complete_all(LLMClient(settings_for(server)), [f"r{i}" for i in range(many)])
    assert "koira" in results[0].text
    assert all(isinstance(r, LLMRequestFailed) for r in results[1:])
    keys = [f"old{i}" for i in range(many)]
    with ErrorServer(lambda body: (400, CONTEXT_TOO_LONG)) as server:
        results = complete_all(LLMClient(settings_for(server), known_rejections=keys), keys)
    assert all(isinstance(r, LLMRequestFailed) and r.kind == "bad_request" for r in results)
