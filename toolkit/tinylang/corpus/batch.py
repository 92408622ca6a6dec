"""``build-corpus --batch-api``: the same requests through the OpenAI Batch API, at half price.

Requests go up as JSONL files (at most 50,000 lines each), the batches are polled until they end,
and their answers become records like any others (and enter the response cache). ``batches.json``
in the corpus folder remembers what was submitted, so an interrupted build resumes polling the
batches it already paid for instead of submitting them again.

    failures = run_batch(pack, options, pending, store, progress, client)
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import openai

from ..langpack import LanguagePack
from ..llm import Completion, LLMClient, LLMFatalError, LLMSettings, request_key
from .plan import StoryRequest
from .progress import BuildProgress
from .store import CorpusStore

MAX_REQUESTS_PER_BATCH = 50_000
ENDPOINT = "/v1/chat/completions"
FINAL_STATES = ("completed", "failed", "expired", "cancelled")
BATCH_PRICE_FACTOR = 0.5


def _state_path(store: CorpusStore) -> Path:
    return store.directory / "batches.json"


def load_state(store: CorpusStore) -> list[dict]:
    path = _state_path(store)
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else []


def save_state(store: CorpusStore, batches: list[dict]) -> None:
    path = _state_path(store)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(batches, indent=1), encoding="utf-8")
    temporary.replace(path)


def request_line(settings: LLMSettings, request: StoryRequest, messages: list[dict]) -> dict:
    body = {"model": settings.model, "messages": messages, "temperature": settings.temperature,
            "max_tokens": settings.max_tokens}
    if settings.top_p is not None:
        body["top_p"] = settings.top_p
    return {"custom_id": request.id, "method": "POST", "url": ENDPOINT, "body": body}


def run_batch(pack: LanguagePack, options, pending: list[StoryRequest], store: CorpusStore, progress: BuildProgress,
              client: LLMClient) -> int:
    """Submit what is pending (minus cached answers and batches in flight), poll, collect; returns failures."""
    settings = client.settings
    from .build import messages_for, source_language_name, story_record  # build imports this module lazily

    api = openai.OpenAI(base_url=settings.base_url, api_key=settings.api_key, timeout=settings.timeout_s, max_retries=5)
    source_language = source_language_name(options.source_lang)
    messages = {r.id: messages_for(pack, r, source_language) for r in pending}
    by_id = {r.id: r for r in pending}
    params = {"temperature": settings.temperature, "max_tokens": settings.max_tokens, "seed": options.seed, "batch_api": True}

    def write(request: StoryRequest, completion: Completion) -> None:
        usage = {"prompt_tokens": completion.prompt_tokens, "completion_tokens": completion.completion_tokens}
        store.write(story_record(pack, options, request, completion.text, source="llm", model=completion.model,
                            prompt_version=pack.spec.prompts.version, params=params, usage=usage))
        progress.advance()

    def fail(request_id: str, kind: str, message: str) -> None:
        store.write_failure(request_id, kind, message, 1)
        progress.advance(failed=True)

    # Answers already cached (an earlier run collected them) cost nothing: write them first.
    for request in list(pending):
        hit = client.cache.get(request_key(settings, messages[request.id], request.id)) if client.cache else None
        if hit:
            completion = Completion(**(hit | {"cached": True}))
            client.usage.add(completion, settings)
            write(request, completion)
            del by_id[request.id]
    batches = load_state(store)
    in_flight = {i for b in batches if not b.get("collected") for i in b["request_ids"]}
    to_submit = [r for r in by_id.values() if r.id not in in_flight]
    try:
        for start in range(0, len(to_submit), MAX_REQUESTS_PER_BATCH):
            chunk = to_submit[start : start + MAX_REQUESTS_PER_BATCH]
            data = "".join(json.dumps(request_line(settings, r, messages[r.id]), ensure_ascii=False) + "\n" for r in chunk)
            uploaded = api.files.create(file=("tinylang-batch.jsonl", data.encode("utf-8")), purpose="batch")
            batch = api.batches.create(input_file_id=uploaded.id, endpoint=ENDPOINT, completion_window="24h")
            batches.append({"id": batch.id, "request_ids": [r.id for r in chunk], "status": batch.status, "collected": False})
            save_state(store, batches)
        failures = 0
        while any(not b.get("collected") for b in batches):
            for entry in batches:
                if entry.get("collected"):
                    continue
                info = api.batches.retrieve(entry["id"])
                entry["status"] = info.status
                if info.status in FINAL_STATES:
                    failures += _collect(api, info, entry, by_id, messages, settings, client, write, fail)
                    entry["collected"] = True
                save_state(store, batches)
            if any(not b.get("collected") for b in batches):
                time.sleep(options.poll_interval_s)
    except (openai.AuthenticationError, openai.PermissionDeniedError, openai.BadRequestError, openai.NotFoundError) as error:
        raise LLMFatalError(f"the Batch API refused the request ({error.status_code}): {error.message}") from None
    return failures


def _collect(api, info, entry, by_id, messages, settings, client, write, fail) -> int:
    """Turn a finished batch's output into records; everything else becomes a failure to retry."""
    answered: set[str] = set()
    failures = 0
    for file_id in (info.output_file_id, info.error_file_id):
        if not file_id:
            continue
        for line in api.files.content(file_id).text.splitlines():
            if not line.strip():
                continue
            result = json.loads(line)
            request = by_id.get(result.get("custom_id"))
            if request is None or request.id in answered:
                continue
            answered.add(request.id)
            response = result.get("response") or {}
            body = response.get("body") or {}
            choice = (body.get("choices") or [{}])[0]
            text = ((choice.get("message") or {}).get("content") or "").strip()
            if response.get("status_code") != 200 or not text or choice.get("finish_reason") == "length":
                reason = result.get("error") or body.get("error") or choice.get("finish_reason") or "empty answer"
                fail(request.id, "batch_error", json.dumps(reason)[:500])
                failures += 1
                continue
            usage = body.get("usage") or {}
            completion = Completion(text=text, prompt_tokens=usage.get("prompt_tokens", 0),
                                    completion_tokens=usage.get("completion_tokens", 0),
                                    finish_reason=choice.get("finish_reason") or "stop", model=body.get("model") or settings.model)
            if client.cache:
                key = request_key(settings, messages[request.id], request.id)
                client.cache.put(key, {k: v for k, v in completion.__dict__.items() if k != "cached"})
            client.usage.add(completion, settings, price_factor=BATCH_PRICE_FACTOR)
            write(request, completion)
    for request_id in entry["request_ids"]:
        if request_id in by_id and request_id not in answered:
            fail(request_id, f"batch_{info.status}", f"batch {entry['id']} ended {info.status}")
            failures += 1
    return failures
