"""Commands on corpora: langpack show/check, build-corpus, filter."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ._app import app, console, fail


langpack_app = typer.Typer(help="Inspect and validate language packs (corpora/<lang>/).", no_args_is_help=True)
app.add_typer(langpack_app, name="langpack")


@langpack_app.command("show")
def langpack_show(lang: str = typer.Argument(..., metavar="LANG", help="Pack code (fi, en, sv) or a pack folder.")) -> None:
    """Summarise a language pack: vocabulary, names, features, prompts, grammar."""
    from ..langpack import PackError, load_pack, summarise_pack

    try:
        summary = summarise_pack(load_pack(lang))
    except PackError as error:
        fail(str(error))
    from rich.table import Table

    table = Table(title=f"language pack {summary['code']}: {summary['name']}", show_header=False)
    for key, value in summary.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k}: {v}" for k, v in value.items())
        table.add_row(key.replace("_", " "), str(value))
    console.print(table)


@langpack_app.command("check")
def langpack_check(
    langs: list[str] = typer.Argument(None, metavar="LANG", help="Pack codes or folders; all packs under corpora/ when omitted."),
) -> None:
    """Validate packs: templates render, vocabulary has parts of speech, no duplicates, grammar sound."""
    from ..langpack import PackError, available_packs, check_pack, load_pack

    langs = langs or available_packs()
    if not langs:
        fail("no language packs found (looked in $TINYLANG_CORPORA, ./corpora)")
    reference = None
    try:
        reference = load_pack("en")
    except PackError:
        pass
    failed = 0
    for lang in langs:
        try:
            problems = check_pack(load_pack(lang), reference)
        except PackError as error:
            problems = [str(error)]
        if problems:
            failed += 1
            console.print(f"[red]✗ {lang}[/]: {len(problems)} problem(s)")
            for problem in problems:
                console.print(f"  - {problem}", highlight=False, soft_wrap=True)
        else:
            console.print(f"[green]✓ {lang}[/]: ok")
    if failed:
        raise typer.Exit(1)


@app.command("build-corpus")
def build_corpus_command(
    lang: str = typer.Option(..., "--lang", "-l", help="Language pack code (fi, en, sv) or pack folder."),
    n: int = typer.Option(1000, "--n", min=1, help="Number of stories the corpus should hold (at most 10,000,000)."),
    mode: str = typer.Option("generate", "--mode", help="generate (TinyStories prompts) or translate."),
    source: Optional[str] = typer.Option(None, "--source", help="translate: HF dataset name, or local .txt/.jsonl/.parquet."),
    source_split: str = typer.Option("train", "--source-split", help="translate: split of the source to read."),
    source_lang: str = typer.Option("en", "--source-lang", help="translate: language pack of the source."),
    text_column: str = typer.Option("text", "--text-column", help="translate: column holding the story."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output folder (default data/<lang>-<mode>)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the word/feature sampling (and the grammar)."),
    backend: str = typer.Option("auto", "--backend", help="auto (LLM if an endpoint is configured), llm or grammar."),
    model: Optional[str] = typer.Option(None, "--model", help="Model name (or OPENAI_MODEL)."),
    base_url: Optional[str] = typer.Option(None, "--base-url", help="OpenAI-compatible endpoint (or OPENAI_BASE_URL)."),
    concurrency: int = typer.Option(8, "--concurrency", min=1, help="Requests in flight at once."),
    temperature: float = typer.Option(1.0, "--temperature", min=0.0),
    max_tokens: int = typer.Option(1024, "--max-tokens", min=1, help="Most tokens per answer."),
    timeout_s: float = typer.Option(120.0, "--timeout", help="Seconds before a request is retried (more than 0)."),
    max_attempts: int = typer.Option(6, "--max-attempts", min=1, help="Tries per request before it is recorded as failed."),
    price_input: Optional[float] = typer.Option(None, "--price-input", help="USD per 1M prompt tokens (known models have defaults)."),
    price_output: Optional[float] = typer.Option(None, "--price-output", help="USD per 1M completion tokens."),
    cache: Optional[Path] = typer.Option(None, "--cache", help="Response cache (default OUT/llm-cache.sqlite)."),
    batch_api: bool = typer.Option(False, "--batch-api", help="Use the OpenAI Batch API (half price, hours)."),
    poll_interval: float = typer.Option(30.0, "--poll-interval", help="--batch-api: seconds between status checks."),
    format_: str = typer.Option("plain", "--format", help="plain, or instruct (also keep the Instruct rendering)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print request count, tokens and cost; send nothing."),
    filter_: bool = typer.Option(True, "--filter/--no-filter", help="Run the pack's filter pipeline before the splits."),
    workers: int = typer.Option(1, "--workers", min=1, help="Processes for the filter pipeline."),
) -> None:
    """Build a TinyStories-style corpus with an LLM (generate or translate) or the offline story grammar."""
    from ..corpus.build import BuildError, BuildOptions, build_corpus
    from ..langpack import PackError
    from ..sources import SourceError

    choices = {"--mode": (mode, ("generate", "translate")), "--backend": (backend, ("auto", "llm", "grammar")),
               "--format": (format_, ("plain", "instruct"))}
    for flag, (value, allowed) in choices.items():
        if value not in allowed:
            fail(f"{flag} must be one of {', '.join(allowed)}, not {value!r}")
    options = BuildOptions(
        lang=lang, n=n, mode=mode, backend=backend, out=out, seed=seed, format=format_, source=source,
        source_split=source_split, source_lang=source_lang, text_column=text_column, model=model, base_url=base_url, concurrency=concurrency,
        temperature=temperature, max_tokens=max_tokens, timeout_s=timeout_s, max_attempts=max_attempts,
        price_input_per_mtok=price_input, price_output_per_mtok=price_output, cache=cache, batch_api=batch_api,
        poll_interval_s=poll_interval, dry_run=dry_run, filter=filter_, filter_workers=workers,
    )
    try:
        result = build_corpus(options, console=console)
    except (BuildError, PackError, SourceError, ValueError) as error:
        fail(str(error))
    except KeyboardInterrupt:
        fail("interrupted; every finished story is saved, run the same command again to continue", 130)
    if dry_run:
        estimate = result.stats["dry_run"]
        if result.backend == "grammar":
            return  # build_corpus said what the grammar would write: no requests, no tokens, no cost
        cost = estimate.get("cost_usd")
        console.print(
            f"Dry run ({result.backend}): {estimate['requests']:,} requests to send "
            f"({estimate['already_done']:,} stories already in {result.out}); about "
            f"{estimate['prompt_tokens']:,} prompt + {estimate['completion_tokens']:,} completion tokens "
            f"(at most {estimate['completion_tokens_max']:,}); "
            + (f"estimated cost ${cost:,.2f}." if cost is not None else "no price known for this model (see --price-input).")
        )
        return
    stats = result.stats
    run = stats["last_run"]
    if run["written"] == 0 and not run["failed"] and not stats["missing"]:
        console.print(f"No stories to write: {result.out} already holds all {stats['corpus']['stories']:,}; splits: "
                      f"train {stats['splits']['train']:,}, validation {stats['splits']['validation']:,}.")
        return
    console.print(
        f"Wrote {run['written']:,} stories in {run['seconds']:.1f} s ({run['stories_per_s'] or 0:,.1f}/s); "
        f"{result.out} holds {stats['corpus']['stories']:,}; splits: train {stats['splits']['train']:,}, "
        f"validation {stats['splits']['validation']:,}" + (f", {stats['missing']:,} missing" if stats["missing"] else "")
    )
    if stats.get("filter") and stats["filter"]["seen"]:  # nothing to filter when every request failed
        kept = stats["filter"]
        dropped = ", ".join(f"{name} {sum(r.values()):,}" for name, r in kept["dropped_by"].items()) or "none"
        console.print(f"Filter: kept {kept['kept']:,} of {kept['seen']:,} ({kept['kept_share']:.1%}); dropped: {dropped}; "
                      f"reasons in {result.out / 'rejected.jsonl'}")
    llm = run.get("llm")
    if llm:
        cost = f", ${llm['cost_usd']:.4f}" if llm["cost_usd"] is not None else ""
        def kinds(counts: dict) -> str:
            return ", ".join(f"{kind} {count}" for kind, count in counts.items()) or "none"

        console.print(f"LLM: {llm['requests']:,} requests, {llm['cache_hits']:,} cache hits, "
                      f"{llm['prompt_tokens'] + llm['completion_tokens']:,} tokens{cost}; "
                      f"retries: {kinds(llm['retries_by_kind'])}; failures: {kinds(llm['failures_by_kind'])}")
    if stats["missing"]:
        console.print(f"[yellow]{stats['missing']:,} requests failed (see {result.out}/failures.jsonl); "
                      "run the same command again to retry them.[/]")
        rejected = (llm or {}).get("failures_by_kind", {}).get("bad_request", 0)
        if rejected:
            console.print(f"[yellow]The endpoint rejected {rejected:,} of them (HTTP 400/422, e.g. a story longer than "
                          "the model's context): asking again gets the same answer until the model, --max-tokens or "
                          "the story changes; each reason is in failures.jsonl.[/]")
        raise typer.Exit(2)
    if stats["splits"]["train"] == 0:  # a corpus nothing can train on is a failed build, not a result
        fail(f"no story in {result.out} passed the filters, so its splits are empty: the reasons are in "
             f"{result.out / 'rejected.jsonl'}; `tinylang filter --lang {options.lang} --explain TEXT` shows each "
             "filter's verdict on one story (docs/filter.md)")


@app.command("filter")
def filter_command(
    input_: Optional[Path] = typer.Argument(None, metavar="INPUT", help="build-corpus folder, corpus folder, .jsonl, .parquet or .txt."),
    lang: str = typer.Option(..., "--lang", "-l", help="Language pack whose filters and thresholds to use."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output folder (train/validation parquet, rejected.jsonl, stats.json)."),
    workers: int = typer.Option(1, "--workers", min=1, help="Processes for the per-story filters."),
    explain: Optional[str] = typer.Option(None, "--explain", help="Show every filter's verdict for this one text."),
    text_column: str = typer.Option("text", "--text-column", help="Column holding the story in .jsonl/.parquet/Hub input."),
) -> None:
    """Filter stories: keep the clean ones, write every rejected story with its reason."""
    from ..filters.pipeline import FilterPipeline
    from ..filters.run import count_input, read_input, run_pipeline, stats_table
    from ..langpack import PackError, load_pack
    from ..sources import SourceError

    try:
        pack = load_pack(lang)
        pipeline = FilterPipeline(pack)  # a lemmatiser the pack cannot have fails here, in one line
    except (PackError, ValueError, ImportError) as error:
        fail(str(error))
    if explain is not None:
        from rich.table import Table

        table = Table(title=f"filters of the {pack.name} pack for one text")
        for column in ("filter", "verdict", "score", "detail"):
            table.add_column(column)
        failed = False
        for name, verdict in pipeline.explain(explain):
            score = "" if verdict.score is None else f"{verdict.score:.3f}"
            shown = "[green]keep[/]" if verdict.keep else f"[red]drop: {verdict.reason}[/]"
            table.add_row(name, shown, score, verdict.detail)
            failed = failed or not verdict.keep
        console.print(table)
        console.print("Verdict: " + ("[red]dropped[/] (the first drop decides)" if failed else "[green]kept[/]"))
        return
    if input_ is None or out is None:
        fail("give INPUT and --out (or --explain TEXT)")
    try:
        stats = run_pipeline(pack, read_input(input_, pack.code, text_column), out, count_input(input_), workers,
                             console=console)
    except (SourceError, ValueError) as error:
        fail(str(error))
    except KeyboardInterrupt:
        fail(f"interrupted; nothing in {out} was replaced, run the command again", 130)
    console.print(stats_table(stats, pipeline.names), highlight=False)
    console.print(f"Kept {stats.kept:,} of {stats.seen:,} stories -> {out} (rejected: {out / 'rejected.jsonl'})")


