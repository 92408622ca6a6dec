"""``tinylang build-corpus``: plan requests, write stories (LLM or story grammar), then the splits.

    result = build_corpus(BuildOptions(lang="fi", n=20_000))   # offline: the story grammar
    result = build_corpus(BuildOptions(lang="fi", n=1000, model="gpt-4o-mini"))  # with OPENAI_API_KEY

The folder it fills (default ``data/<lang>-<mode>``): ``raw/shard-*.jsonl`` (append-only, written as
results arrive), ``failures.jsonl``, ``llm-cache.sqlite``, ``train.parquet``, ``validation.parquet``,
``rejected.jsonl`` (filtered builds), ``stats.json`` and ``card.md``; the splits and rejected.jsonl
are replaced together (``write_corpus_splits``). Running the same command again resumes: finished
stories are kept, failed ones are asked again (``failures.jsonl`` then holds only the stories still
missing), and cached answers are not paid for twice. It writes only into a new, empty or earlier build-corpus
folder, and a rerun must plan the same stories (``corpus/folder.py``).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import time
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

from rich.console import Console

from ..langpack import LanguagePack, PackError, load_pack
from ..llm import PRICES_PER_MTOK, LLMClient, LLMFatalError, LLMRequestFailed, LLMSettings, estimate_tokens
from ..records import KEPT_SCRATCH_FILE, REJECTED_FILE, SPLIT_FILES, StagedFiles, StoryRecord
from .card import forget_splits_fingerprint, write_card, write_stats
from .folder import current_plan, folder_problem, plan_conflict, stored_plan
from .options import BuildOptions, endpoint_configured, option_problem, resolve_backend
from .plan import StoryRequest, grammar_words, pack_words, plan_generation, plan_translation, with_instruct
from .progress import BuildProgress
from .store import CorpusStore, is_build_folder, read_failures, read_stats, split_key


class BuildError(RuntimeError):
    """A build that cannot start or had to stop; what was written so far is kept."""


@dataclass
class BuildResult:
    out: Path
    backend: str
    stats: dict = field(default_factory=dict)


def priced_settings(options: BuildOptions) -> LLMSettings:
    """The model and its prices only, for a dry run without an endpoint: what the build would cost."""
    model = options.model or os.environ.get("OPENAI_MODEL")
    if not model:
        raise BuildError("no model given: pass --model (or set OPENAI_MODEL) to estimate what the LLM would cost")
    known_input, known_output = PRICES_PER_MTOK.get(model, (None, None))
    return LLMSettings(
        model=model, max_tokens=options.max_tokens,
        price_input_per_mtok=options.price_input_per_mtok if options.price_input_per_mtok is not None else known_input,
        price_output_per_mtok=options.price_output_per_mtok if options.price_output_per_mtok is not None else known_output,
    )


def llm_settings(options: BuildOptions) -> LLMSettings:
    return LLMSettings.resolve(
        model=options.model, base_url=options.base_url, concurrency=options.concurrency,
        max_attempts=options.max_attempts, timeout_s=options.timeout_s, backoff_s=options.backoff_s,
        temperature=options.temperature, top_p=options.top_p, max_tokens=options.max_tokens,
        price_input_per_mtok=options.price_input_per_mtok, price_output_per_mtok=options.price_output_per_mtok,
    )


def source_language_name(code: str) -> str:
    """'en' -> 'English' when a pack of that code exists; anything else is used as written."""
    try:
        return load_pack(code).spec.name
    except PackError:
        return code


def messages_for(pack: LanguagePack, request: StoryRequest, source_language: str) -> list[dict]:
    if request.source_text is not None:
        content = pack.translation_prompt(request.source_text, source_language)
    else:
        w = request.words
        content = pack.generation_prompt(w["noun"], w["verb"], w["adjective"], list(request.features))
    return [{"role": "user", "content": content}]


def plan(pack: LanguagePack, options: BuildOptions, backend: str) -> list[StoryRequest]:
    if options.mode == "translate":
        if not options.source:
            raise BuildError("--mode translate needs --source (a Hugging Face dataset name or a local file)")
        return plan_translation(options.source, options.n, options.source_split, options.text_column)
    words = grammar_words(pack) if backend == "grammar" else pack_words(pack)
    return plan_generation(pack, options.n, options.seed, words)


def grammar_version(pack: LanguagePack) -> str:
    """Changes whenever the templates or the lexicon change."""
    digest = hashlib.sha256()
    for path in sorted((pack.directory / "grammar").glob("*")):
        digest.update(path.read_bytes())
    return f"grammar-{digest.hexdigest()[:10]}"


def story_record(pack: LanguagePack, options: BuildOptions, request: StoryRequest, text: str, **fields) -> StoryRecord:
    """A record with everything the request asked for; the backend adds source, model and usage."""
    record = StoryRecord(
        id=request.id, lang=pack.code, text=text, mode=options.mode, words=dict(request.words),
        features=list(request.features), source_id=request.source_id,
        source_dataset=options.source if options.mode == "translate" else None, **fields,
    )
    return with_instruct(pack, record) if options.format == "instruct" else record


def run_grammar(pack: LanguagePack, options: BuildOptions, pending: list[StoryRequest], store: CorpusStore,
                progress: BuildProgress) -> None:
    grammar, version = pack.grammar, grammar_version(pack)
    for request in pending:
        w = request.words
        rng = random.Random(f"{options.seed}:{request.id}")
        text = grammar.render(w["noun"], w["verb"], w["adjective"], list(request.features), rng)
        store.write(story_record(pack, options, request, text, source="grammar", model=f"grammar/{pack.code}",
                            prompt_version=version, params={"seed": options.seed}))
        progress.advance()


async def run_llm(pack: LanguagePack, options: BuildOptions, pending: list[StoryRequest], store: CorpusStore,
                  progress: BuildProgress, client: LLMClient) -> int:
    """Keep ``concurrency`` requests in flight; write each story the moment it arrives."""
    settings = client.settings
    queue = iter(pending)
    failures = 0
    source_language = source_language_name(options.source_lang)
    params = {"temperature": settings.temperature, "top_p": settings.top_p, "max_tokens": settings.max_tokens,
              "seed": options.seed}
    params = {k: v for k, v in params.items() if v is not None}

    async def worker() -> None:
        nonlocal failures
        for request in queue:
            try:
                completion = await client.complete(messages_for(pack, request, source_language), request.id)
            except LLMRequestFailed as error:
                store.write_failure(request.id, error.kind, str(error), error.attempts)
                failures += 1
                progress.advance(failed=True)
                continue
            usage = {"prompt_tokens": completion.prompt_tokens, "completion_tokens": completion.completion_tokens}
            store.write(story_record(pack, options, request, completion.text, source="llm", model=completion.model,
                                prompt_version=pack.spec.prompts.version, params=params, usage=usage))
            progress.advance()

    # Twice as many workers as slots: a worker sleeping before a retry leaves its slot to another.
    tasks = [asyncio.create_task(worker()) for _ in range(min(len(pending), 2 * settings.concurrency))]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    return failures


def dry_run_estimate(pack: LanguagePack, options: BuildOptions, settings: LLMSettings | None,
                     pending: list[StoryRequest]) -> dict:
    """Requests, tokens and cost of the pending stories; the grammar sends nothing and costs nothing."""
    if settings is None:
        return {"requests": 0, "stories": len(pending), "prompt_tokens": 0, "completion_tokens": 0,
                "completion_tokens_max": 0, "cost_usd": 0.0}
    source_language = source_language_name(options.source_lang)
    prompt_tokens = sum(estimate_tokens(messages_for(pack, r, source_language)[0]["content"]) for r in pending)
    story_tokens = options.expected_story_tokens
    if options.mode == "translate":  # a translation is about as long as its source
        story_tokens = sum(estimate_tokens(r.source_text or "") for r in pending) // max(1, len(pending))
    story_tokens = min(story_tokens, options.max_tokens)  # no answer is longer than --max-tokens
    estimate = {"requests": len(pending), "stories": len(pending), "prompt_tokens": prompt_tokens,
                "completion_tokens": story_tokens * len(pending), "completion_tokens_max": options.max_tokens * len(pending)}
    cost = settings.cost_usd(estimate["prompt_tokens"], estimate["completion_tokens"])
    if cost is not None and options.batch_api:
        cost /= 2
    estimate["cost_usd"] = cost
    estimate["model"] = settings.model
    return estimate


def choose_backend(pack: LanguagePack, options: BuildOptions, console: Console) -> tuple[str, LLMSettings | None]:
    """The backend and, for the LLM, its settings; says why when ``auto`` picked the grammar, and
    refuses a named --model without an endpoint (a dry run still prices it)."""
    backend = resolve_backend(options)
    if backend == "grammar" and options.mode == "translate":
        raise BuildError("translation needs an LLM: pass --base-url/--model (or set OPENAI_API_KEY)")
    if backend == "grammar" and not pack.has_grammar:
        raise BuildError(f"the {pack.name} pack has no story grammar, so it needs an LLM: pass --base-url and "
                         "--model (or set OPENAI_API_KEY)")
    if backend == "grammar":
        if options.backend == "auto":
            console.print("No LLM endpoint configured (--base-url, OPENAI_BASE_URL or OPENAI_API_KEY): "
                          f"writing stories with the offline {pack.name} story grammar (source: grammar).")
        return backend, None
    if not endpoint_configured(options) and options.dry_run:
        settings = priced_settings(options)
        console.print(f"No LLM endpoint configured: estimating what {settings.model} would cost; the real build "
                      "needs OPENAI_API_KEY (or --base-url for a local server).")
        return backend, settings
    if not endpoint_configured(options) and options.model:
        grammar = (f", or leave out --model to write stories with the offline {pack.name} story grammar"
                   if pack.has_grammar and options.mode == "generate" else "")
        raise BuildError(f"--model {options.model} needs an endpoint: set OPENAI_API_KEY for api.openai.com, or pass "
                         f"--base-url for a local server{grammar}")
    try:
        return backend, llm_settings(options)
    except LLMFatalError as error:
        raise BuildError(str(error)) from None


def reconcile_plan(pack: LanguagePack, options: BuildOptions, out: Path, planned: int, console: Console) -> BuildOptions:
    """Refuse a build that would plan other or fewer stories than ``out`` holds; an instruct folder
    stays instruct, and a plain one becomes instruct on request. (A translation has no Instruct
    rendering: a translated folder that an older version recorded as instruct is written plain.)"""
    stored = stored_plan(out)
    problem = plan_conflict(out, stored, current_plan(pack.code, options, planned))
    if problem:
        raise BuildError(problem)
    if stored.get("format") == "instruct" and options.format == "plain" and options.mode == "generate":
        console.print(f"{out} is an instruct corpus (built with --format instruct): keeping the instruct column.")
        return replace(options, format="instruct")
    if stored.get("format") == "plain" and options.format == "instruct":
        console.print(f"{out} was built with --format plain: its stories get the instruct column too, "
                      "rendered from their words, features and text (nothing is asked again); the splits are rewritten.")
    return options


def build_corpus(options: BuildOptions, console: Console | None = None) -> BuildResult:
    console = console or Console(stderr=True)
    problem = option_problem(options)
    if problem:
        raise BuildError(problem)
    pack = load_pack(options.lang)
    out = options.out_dir
    problem = folder_problem(out)  # first: a wrong --out must not cost a source download
    if problem:
        raise BuildError(problem)
    backend, settings = choose_backend(pack, options, console)
    requests = plan(pack, options, backend)
    if options.mode == "translate" and not requests:
        raise BuildError(f"{options.source}: no stories to translate in its {options.source_split} split "
                         f"(column {options.text_column!r})")
    if options.mode == "translate" and len(requests) < options.n:
        console.print(f"[yellow]The source has only {len(requests)} stories; translating those.[/]")
    options = reconcile_plan(pack, options, out, len(requests), console)
    if options.dry_run:
        done = CorpusStore(out).done_ids() if is_build_folder(out) else set()
        pending = [r for r in requests if r.id not in done]
        estimate = dry_run_estimate(pack, options, settings, pending) | {"backend": backend, "already_done": len(done)}
        if backend == "grammar":
            console.print(f"Dry run: the offline {pack.name} story grammar would write {len(pending):,} stories "
                          f"({len(done):,} already in {out}); it sends no requests and costs nothing.")
        return BuildResult(out, backend, {"dry_run": estimate})
    try:
        store = CorpusStore(out)
    except OSError as error:
        raise BuildError(f"cannot write to {out}: {error.strerror or error}") from None
    written = store.scan()
    others = sorted(set(written.values()) - {backend})
    if others:
        store.close()
        raise BuildError(f"{out} already holds stories written by {', '.join(others)}, and this build uses the "
                         f"{backend}: choose another --out (or delete {out}) rather than mix them")
    done = set(written)
    pending = [r for r in requests if r.id not in done]
    remove_leftovers(out)
    if store.repaired_bytes:
        console.print(f"Cut {store.repaired_bytes} bytes of a record torn by an earlier interruption.")
    if done:
        console.print(f"Resuming {out}: {len(requests) - len(pending):,} of {len(requests):,} stories already written.")
    started = time.perf_counter()
    failures = 0
    client = llm_client(options, settings, out) if settings else None
    try:
        with BuildProgress(console, total=len(requests), done=len(requests) - len(pending),
                           usage=client.usage if client else None) as progress:
            if backend == "grammar":
                run_grammar(pack, options, pending, store, progress)
            elif options.batch_api:
                from .batch import run_batch

                try:
                    failures = run_batch(pack, options, pending, store, progress, client)
                finally:
                    asyncio.run(client.aclose())
            else:
                failures = asyncio.run(_run_with_client(pack, options, pending, store, progress, client))
    except LLMFatalError as error:
        raise BuildError(f"{error}. Stories written so far are kept in {out}; fix that and run the same command "
                         "again to continue.") from None
    finally:
        store.close()
        store.prune_failures()
    seconds = time.perf_counter() - started
    planned = [r.id for r in requests]
    fingerprint = splits_fingerprint(pack, options, store, len(planned))
    previous = read_stats(out)
    if previous.get("splits_fingerprint") == fingerprint and all((out / name).is_file() for name in SPLIT_FILES):
        # Nothing changed (stories, pack, thresholds): keep the splits as they are, so caches built on them stay valid.
        filter_stats, split_counts = previous.get("filter"), previous["splits"]
    else:
        filter_stats, split_counts = write_corpus_splits(pack, options, store, planned, console)
    run = {"backend": backend, "written": len(pending) - failures, "failed": failures, "seconds": round(seconds, 2),
           "stories_per_s": round((len(pending) - failures) / seconds, 1) if seconds > 0 else None}
    if client:
        run["llm"] = client.usage.as_dict() | {"settings": settings.public()}
    stats = write_stats(out, pack, options, requests, split_counts, run, filter_stats, fingerprint,
                        current_plan(pack.code, options, len(planned)))
    write_card(out, pack, options, stats)
    return BuildResult(out, backend, stats)


def llm_client(options: BuildOptions, settings: LLMSettings, out: Path) -> LLMClient:
    """The run's client; stories the endpoint rejected in an earlier run (failures.jsonl) are expected
    to be rejected again, so a rerun asking only for them is not taken for a wrong parameter."""
    rejected_before = {story_id for story_id, entry in read_failures(out).items() if entry.get("kind") == "bad_request"}
    cache = Path(options.cache) if options.cache else out / "llm-cache.sqlite"
    return LLMClient(settings, cache, known_rejections=rejected_before)


def write_corpus_splits(pack: LanguagePack, options: BuildOptions, store: CorpusStore, planned: list[str],
                        console: Console) -> tuple[dict | None, dict[str, int]]:
    """Filter stats (None without filtering) and split counts of freshly written splits. The splits and
    rejected.jsonl are written under temporary names and replaced together, after the stored
    fingerprint is dropped (``forget_splits_fingerprint``), so a build stopped at any moment leaves
    either the old files, consistent with the old stats.json, or a folder the next build filters again."""
    out = store.directory
    records = split_records(pack, options, store, planned)
    if options.filter:
        from ..filters.run import filter_records

        stats = filter_records(pack, records, out, len(planned), options.filter_workers, options.validation_fraction,
                               console, before_commit=lambda: forget_splits_fingerprint(out))
        return stats.as_dict(), {split: _parquet_rows(out / f"{split}.parquet") for split in ("train", "validation")}
    key = partial(split_key, lang=pack.code, mode=options.mode)
    with StagedFiles(out, SPLIT_FILES) as staged:
        split_counts = store.write_splits(records, planned, options.validation_fraction, key, staged)
        forget_splits_fingerprint(out)
        staged.commit()
    _remove_stale_rejections(out, console)
    return None, split_counts


def remove_leftovers(out: Path) -> None:
    """The temporary files of a run killed outright (SIGKILL, a power cut), which no ``finally`` could
    remove: a rerun that keeps the splits must not leave them lying beside them."""
    StagedFiles(out, (*SPLIT_FILES, REJECTED_FILE, "stats.json")).discard()
    (out / KEPT_SCRATCH_FILE).unlink(missing_ok=True)


def _remove_stale_rejections(out: Path, console: Console) -> None:
    """Unfiltered splits hold every story, so an earlier filtered build's rejected.jsonl would list
    stories that are now in them; the raw shards keep every story, so nothing is lost."""
    rejected = out / REJECTED_FILE
    if rejected.exists():
        rejected.unlink()
        console.print(f"Splits written without filtering (--no-filter): removed {rejected} of an earlier filtered "
                      "build, whose stories are now in the splits.")


def split_records(pack: LanguagePack, options: BuildOptions, store: CorpusStore, planned: list[str]):
    """The planned stories as they go into the splits: with the instruct column in an instruct corpus."""
    records = store.final_records(planned)
    return (with_instruct(pack, r) for r in records) if options.format == "instruct" else records


def splits_fingerprint(pack: LanguagePack, options: BuildOptions, store: CorpusStore, planned: int) -> str:
    """What the splits depend on: the raw shards, the plan size, the split fraction, filtering on or
    off, the instruct column, and every pack file the filters read (pack.yaml thresholds, vocabulary,
    word lists)."""
    instruct = ":instruct" if options.format == "instruct" else ""  # plain corpora keep their old fingerprint
    # Translations are split by their id and language (split_key); translated folders split before that
    # by the bare source id get new splits once. Generated corpora keep their fingerprint and splits.
    translated = ":split-by-lang" if options.mode == "translate" else ""
    digest = hashlib.sha256(f"{planned}:{options.validation_fraction}:{options.filter}{instruct}{translated}".encode())
    for shard in store.shards():
        digest.update(f"{shard.name}:{shard.stat().st_size}".encode())
    for name in ("pack.yaml", "vocabulary.tsv", "function-words.txt", "names.txt"):
        digest.update((pack.directory / name).read_bytes())
    return digest.hexdigest()[:16]


def _parquet_rows(path: Path) -> int:
    import pyarrow.parquet as pq

    return pq.ParquetFile(path).metadata.num_rows


async def _run_with_client(pack, options, pending, store, progress, client) -> int:
    try:
        return await run_llm(pack, options, pending, store, progress, client)
    finally:
        await client.aclose()
