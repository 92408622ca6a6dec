"""The one LLM layer: every call tinylang makes to an OpenAI-compatible API goes through here.

Bounded concurrency; retries with exponential backoff and jitter on 429 (honouring Retry-After),
5xx, timeouts, dropped connections and empty, cut-off or malformed answers. A request the endpoint
rejects (400/422, e.g. a prompt longer than the model's context) fails alone, without retries, as
``LLMRequestFailed`` of kind ``bad_request``; errors no request can get past (401/403 key, 404 model
or URL, 429 ``insufficient_quota``, or the first requests of a run all rejected) stop the run with
one clear ``LLMFatalError``. A SQLite response cache so a rerun never pays twice; token and cost
accounting. The API key is never logged, cached or written anywhere.

    client = LLMClient(LLMSettings.resolve(model="gpt-4o-mini"), cache_path=Path("data/llm-cache.sqlite"))
    completion = await client.complete([{"role": "user", "content": prompt}], cache_key="fi-000001")
"""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import json
import os
import random
import sqlite3
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import openai

# USD per million (input, output) tokens, list prices of late 2025; override with --price-input /
# --price-output for other models or providers. Unknown models get no cost figure, not a guess.
PRICES_PER_MTOK = {
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-5": (1.25, 10.00),
    "gpt-5-mini": (0.25, 2.00),
    "gpt-5-nano": (0.05, 0.40),
}
MAX_RETRY_AFTER_S = 120.0
# A run whose first this-many requests the endpoint all rejected (400/422), before it accepted any,
# stops: one over-long story is that story's failure, but every request rejected is a wrong
# parameter (--max-tokens, --temperature, a model that takes other fields), and writing a failure
# for each of thousands of stories would only hide it.
REJECTIONS_BEFORE_FATAL = 5


class LLMFatalError(RuntimeError):
    """An error that no request of the run can get past (bad key, unknown model or URL, no quota,
    every request rejected): stop the run."""


class LLMRequestFailed(RuntimeError):
    """A request that failed every attempt, or that the endpoint rejected (kind ``bad_request``,
    not retried); ``kind`` says how (rate_limit, timeout, bad_request, ...)."""

    def __init__(self, kind: str, message: str, attempts: int) -> None:
        super().__init__(f"{kind} after {attempts} attempt{'s' if attempts != 1 else ''}: {message}")
        self.kind = kind
        self.attempts = attempts


class _Retryable(Exception):
    def __init__(self, kind: str, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.retry_after_s = retry_after_s


class _Rejected(Exception):
    """The endpoint refused this one request (400/422): asking again gets the same answer."""


@dataclass(frozen=True)
class LLMSettings:
    model: str
    base_url: str | None = None
    api_key: str | None = field(default=None, repr=False)
    concurrency: int = 8
    max_attempts: int = 6
    timeout_s: float = 120.0
    backoff_s: float = 1.0  # first retry waits about this long, doubling each time (capped at 60 s)
    temperature: float = 1.0
    top_p: float | None = None
    max_tokens: int = 1024
    price_input_per_mtok: float | None = None
    price_output_per_mtok: float | None = None

    @classmethod
    def resolve(cls, model: str | None = None, base_url: str | None = None, **options) -> "LLMSettings":
        """Fill what flags left open from OPENAI_MODEL / OPENAI_BASE_URL / OPENAI_API_KEY."""
        model = model or os.environ.get("OPENAI_MODEL")
        if not model:
            raise LLMFatalError("no model given: pass --model (or set OPENAI_MODEL)")
        base_url = base_url or os.environ.get("OPENAI_BASE_URL")
        api_key = os.environ.get("OPENAI_API_KEY")
        if not api_key and not base_url:
            raise LLMFatalError("no endpoint: set OPENAI_API_KEY for api.openai.com, or pass --base-url for a local server")
        known = PRICES_PER_MTOK.get(model, (None, None))
        for name, price in zip(("price_input_per_mtok", "price_output_per_mtok"), known):
            if options.get(name) is None:
                options[name] = price
        options = {k: v for k, v in options.items() if v is not None or k.startswith("price")}
        return cls(model=model, base_url=base_url, api_key=api_key or "not-needed", **options)

    def cost_usd(self, prompt_tokens: int, completion_tokens: int) -> float | None:
        if self.price_input_per_mtok is None or self.price_output_per_mtok is None:
            return None
        return (prompt_tokens * self.price_input_per_mtok + completion_tokens * self.price_output_per_mtok) / 1e6

    def public(self) -> dict:
        """What may be written into records, stats and cards (never the key)."""
        data = asdict(self)
        data.pop("api_key")
        return data


@dataclass
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str
    model: str
    cached: bool = False


@dataclass
class UsageStats:
    requests: int = 0  # answers received from the endpoint (not cache hits)
    cache_hits: int = 0
    attempts: int = 0
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = None
    retries_by_kind: Counter = field(default_factory=Counter)
    failures_by_kind: Counter = field(default_factory=Counter)

    def add(self, completion: Completion, settings: LLMSettings, price_factor: float = 1.0) -> None:
        if completion.cached:
            self.cache_hits += 1
            return
        self.requests += 1
        self.prompt_tokens += completion.prompt_tokens
        self.completion_tokens += completion.completion_tokens
        cost = settings.cost_usd(completion.prompt_tokens, completion.completion_tokens)
        if cost is not None:
            self.cost_usd = (self.cost_usd or 0.0) + cost * price_factor

    def as_dict(self) -> dict:
        data = asdict(self)
        data["retries_by_kind"] = dict(self.retries_by_kind)
        data["failures_by_kind"] = dict(self.failures_by_kind)
        return data


class ResponseCache:
    """Answers by request key in SQLite (WAL): a rerun, or a resumed run, gets them for free."""

    def __init__(self, path: Path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, value TEXT NOT NULL, created REAL)")

    def get(self, key: str) -> dict | None:
        row = self._db.execute("SELECT value FROM responses WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, key: str, value: dict) -> None:
        self._db.execute("INSERT OR REPLACE INTO responses VALUES (?, ?, ?)", (key, json.dumps(value), time.time()))

    def close(self) -> None:
        self._db.close()


def request_key(settings: LLMSettings, messages: list[dict], cache_key: str) -> str:
    """Same model, messages, sampling parameters and request id -> same answer from the cache."""
    identity = {"model": settings.model, "messages": messages, "temperature": settings.temperature,
                "top_p": settings.top_p, "max_tokens": settings.max_tokens, "id": cache_key}
    return hashlib.sha256(json.dumps(identity, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def retry_after_s(response) -> float | None:
    """Seconds the server asked us to wait (Retry-After seconds or HTTP date, retry-after-ms)."""
    if response is None:
        return None
    headers = response.headers
    if headers.get("retry-after-ms"):
        try:
            return float(headers["retry-after-ms"]) / 1000
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value)
        return max(0.0, parsed.timestamp() - time.time()) if parsed else None


class LLMClient:
    """Chat completions with concurrency, retries, cache and accounting. One per run.

    ``known_rejections``: request ids (``cache_key``) the endpoint rejected in an earlier run; their
    rejecting again is expected and does not count towards REJECTIONS_BEFORE_FATAL, so a rerun that
    asks only for them records them again instead of calling the parameters wrong. After an
    ``LLMFatalError`` the client sends nothing more: requests waiting for a slot raise the same error
    instead of spending one more request each on a key, quota or model that cannot work.
    """

    def __init__(self, settings: LLMSettings, cache_path: Path | None = None,
                 known_rejections: Iterable[str] = ()) -> None:
        self.settings = settings
        self.usage = UsageStats()
        self.cache = ResponseCache(cache_path) if cache_path else None
        self.known_rejections = frozenset(known_rejections)
        self._rejections_before_answer = 0
        self._fatal: LLMFatalError | None = None
        self._client = openai.AsyncOpenAI(
            base_url=settings.base_url, api_key=settings.api_key, timeout=settings.timeout_s, max_retries=0
        )
        self._slots = asyncio.Semaphore(settings.concurrency)

    async def aclose(self) -> None:
        await self._client.close()
        if self.cache:
            self.cache.close()

    def _scrub(self, message: str) -> str:
        key = self.settings.api_key
        return message.replace(key, "***") if key and len(key) > 4 else message

    async def complete(self, messages: list[dict], cache_key: str) -> Completion:
        """One answer for ``messages``; raises LLMRequestFailed or LLMFatalError."""
        key = request_key(self.settings, messages, cache_key)
        if self.cache and (hit := self.cache.get(key)):
            completion = Completion(**(hit | {"cached": True}))
            self.usage.add(completion, self.settings)
            return completion
        last: _Retryable | None = None
        for attempt in range(1, self.settings.max_attempts + 1):
            if last is not None:
                self.usage.retries += 1
                self.usage.retries_by_kind[last.kind] += 1
                await asyncio.sleep(self._delay_s(attempt, last))
            try:
                async with self._slots:
                    if self._fatal is not None:
                        raise LLMFatalError(str(self._fatal))
                    self.usage.attempts += 1
                    completion = await self._attempt(messages, cache_key)
            except _Retryable as error:
                last = error
                continue
            except _Rejected as error:
                raise self._rejection(cache_key, self._scrub(str(error)), attempt) from None
            except LLMFatalError as error:
                self._fatal = self._fatal or error
                raise
            if self.cache:
                self.cache.put(key, {k: v for k, v in asdict(completion).items() if k != "cached"})
            self.usage.add(completion, self.settings)
            return completion
        self.usage.failures_by_kind[last.kind] += 1
        raise LLMRequestFailed(last.kind, self._scrub(str(last)), self.settings.max_attempts)

    def _rejection(self, cache_key: str, message: str, attempts: int) -> Exception:
        """This request's failure, or the run's end when the endpoint has rejected every request so far."""
        if self.usage.requests == 0 and cache_key not in self.known_rejections:
            self._rejections_before_answer += 1
            if self._rejections_before_answer >= REJECTIONS_BEFORE_FATAL:
                self._fatal = LLMFatalError(
                    f"the endpoint rejected the first {self._rejections_before_answer} requests of this run and "
                    f"accepted none, so a parameter is probably wrong (--model, --max-tokens, --temperature, "
                    f"--base-url): {message}"
                )
                return self._fatal
        self.usage.failures_by_kind["bad_request"] += 1
        return LLMRequestFailed("bad_request", message, attempts)

    def _delay_s(self, attempt: int, error: _Retryable) -> float:
        if error.retry_after_s is not None:
            return min(error.retry_after_s, MAX_RETRY_AFTER_S)
        return min(60.0, self.settings.backoff_s * 2 ** (attempt - 2)) * random.uniform(0.5, 1.0)

    async def _attempt(self, messages: list[dict], request_id: str) -> Completion:
        settings = self.settings
        body = {"model": settings.model, "messages": messages, "temperature": settings.temperature,
                "max_tokens": settings.max_tokens}
        if settings.top_p is not None:
            body["top_p"] = settings.top_p
        headers = {"X-Client-Request-Id": request_id} if request_id.isascii() and len(request_id) <= 256 else {}
        try:
            # The client's documented raw path: the same HTTP, errors and timeouts as
            # chat.completions.create, without its per-request type transforms, which cost a
            # fifth of a core at 150 requests/s (benchmarks/bench_corpus.py).
            data = await self._client.post("/chat/completions", body=body, cast_to=object, options={"headers": headers})
        except (openai.AuthenticationError, openai.PermissionDeniedError) as error:
            raise LLMFatalError(
                f"the endpoint refused the API key ({error.status_code}): check OPENAI_API_KEY "
                f"and --base-url ({self._scrub(_message(error))})"
            ) from None
        except openai.RateLimitError as error:
            if _is_out_of_quota(error):
                raise LLMFatalError(f"the account has no quota left (429 insufficient_quota): "
                                    f"{self._scrub(_message(error))}") from None
            raise _Retryable("rate_limit", _message(error), retry_after_s(error.response)) from None
        except openai.NotFoundError as error:
            raise LLMFatalError(f"the endpoint has no such model or route (404): check --model and --base-url "
                                f"({self._scrub(_message(error))})") from None
        except (openai.BadRequestError, openai.UnprocessableEntityError) as error:
            raise _Rejected(f"HTTP {error.status_code}{_code_note(error)}: {_message(error)}") from None
        except openai.APITimeoutError:
            raise _Retryable("timeout", f"no answer within {settings.timeout_s:g} s") from None
        except openai.APIConnectionError as error:
            raise _Retryable("connection", f"connection failed ({error.__cause__ or error})") from None
        except openai.APIStatusError as error:  # 5xx, 409, ...
            raise _Retryable("server_error", f"HTTP {error.status_code}: {_message(error)}", retry_after_s(error.response)) from None
        except (openai.APIResponseValidationError, ValueError) as error:  # ValueError includes JSONDecodeError
            raise _Retryable("malformed", f"unreadable answer ({type(error).__name__})") from None
        return _completion_from(data, settings)


def _completion_from(data, settings: LLMSettings) -> Completion:
    """Read a chat-completion JSON body; anything unusable is a retryable fault."""
    try:
        choice = data["choices"][0]
        text = (choice.get("message") or {}).get("content") or ""
        finish_reason = choice.get("finish_reason") or "stop"
        usage = data.get("usage") or {}
    except (TypeError, KeyError, IndexError, AttributeError):
        raise _Retryable("malformed", "an answer without choices") from None
    if not isinstance(text, str) or not text.strip():
        raise _Retryable("empty", "the answer had no text")
    if finish_reason == "length":
        raise _Retryable("truncated", f"the answer was cut at max_tokens={settings.max_tokens}")
    return Completion(
        text=text.strip(),
        prompt_tokens=int(usage.get("prompt_tokens") or 0),
        completion_tokens=int(usage.get("completion_tokens") or 0),
        finish_reason=finish_reason,
        model=data.get("model") or settings.model,
    )


def _error_fields(error: openai.APIStatusError) -> set[str]:
    """The error's ``code`` and ``type`` as the client parsed them and as the body has them (the body is
    the inner ``error`` object, or the whole answer when a server nests it differently)."""
    fields = {getattr(error, "code", None), getattr(error, "type", None)}
    body = error.body
    for part in (body, body.get("error") if isinstance(body, dict) else None):
        if isinstance(part, dict):
            fields |= {part.get("code"), part.get("type")}
    return {str(f) for f in fields if f}


def _is_out_of_quota(error: openai.RateLimitError) -> bool:
    """OpenAI marks a spent quota in ``code``/``type``; its message is prose ("You exceeded your current
    quota"), so the message alone cannot tell it from an ordinary rate limit, which is retried."""
    return "insufficient_quota" in _error_fields(error)


def _code_note(error: openai.APIStatusError) -> str:
    """' (context_length_exceeded)': the machine-readable reason, when the endpoint gives one."""
    code = getattr(error, "code", None)
    return f" ({code})" if code else ""


def _message(error: openai.APIStatusError) -> str:
    body = error.body
    if isinstance(body, dict):
        body = body.get("error", body)
        if isinstance(body, dict) and body.get("message"):
            return str(body["message"])
    return str(error.message)


def estimate_tokens(text: str) -> int:
    """Rough token count for dry-run estimates: ~4 bytes per token (more tokens for non-English)."""
    return max(1, len(text.encode("utf-8")) // 4)
