"""Commands on models and runs: train, generate, serve, export, evaluate, compare, quickstart."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from ..seeds import SEED_MAX, SEED_MIN
from ._app import app, console, errors, fail

DEFAULT_GUIDANCE = 6.0  # tinylang.guidance.DEFAULT_STRENGTH, without importing torch for --help


@app.command()
def train(
    recipe: Path = typer.Argument(..., metavar="RECIPE", help="Recipe YAML, e.g. recipes/fi-tiny.yaml."),
    set_: list[str] = typer.Option([], "--set", help="Override a recipe key: --set train.max_steps=500 (repeatable)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in output.dir from its checkpoint."),
) -> None:
    """Train a MEGABYTE model from a recipe."""
    from ..checkpoint import CheckpointError
    from ..recipe import RecipeError, load_recipe
    from ..sources import SourceError
    from ..train import TrainError
    from ..train import train as run_training

    try:
        result = run_training(load_recipe(recipe, set_), resume=resume, console=console)
    except (RecipeError, SourceError, CheckpointError, TrainError, RuntimeError) as error:
        fail(str(error))
    except KeyboardInterrupt:  # before the loop started, or a second Ctrl-C inside it
        fail("aborted; the last scheduled checkpoint (if any) is intact, continue with --resume", 130)
    if result.stopped_by == "interrupt":
        raise typer.Exit(130)


@app.command()
def generate(
    run: Path = typer.Argument(..., metavar="RUN", help="Run directory, checkpoint file, or exported folder."),
    prompt: str = typer.Option("", "--prompt", "-p", help="Story beginning to continue."),
    max_bytes: int = typer.Option(600, "--max-bytes", min=1, help="Most bytes to generate per story."),
    temperature: float = typer.Option(0.8, "--temperature", "-t", min=0.0, help="0 means greedy."),
    top_k: int = typer.Option(40, "--top-k", min=0, help="Sample from the k likeliest bytes (0: all of them)."),
    top_p: Optional[float] = typer.Option(None, "--top-p", min=0.0, max=1.0,
                                          help="Nucleus sampling: the likeliest bytes holding this mass (above 0)."),
    num: int = typer.Option(1, "--num", "-n", min=1, help="Number of stories."),
    seed: Optional[int] = typer.Option(None, "--seed", min=SEED_MIN, max=SEED_MAX,
                                       help="Seed for repeatable samples (story i gets seed + i)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or mps."),
    words: Optional[str] = typer.Option(None, "--words", help="Instruct models: words the story must use, comma-separated."),
    features: Optional[str] = typer.Option(None, "--features", help="Instruct models: features, e.g. dialogue,bad_ending."),
    lang: Optional[str] = typer.Option(None, "--lang", help="Pack whose instruct labels to use (default: the corpus's)."),
    guidance: Optional[float] = typer.Option(None, "--guidance", min=0.0, max=100.0, show_default=str(DEFAULT_GUIDANCE),
                                   help="With --words: steer sampling toward requested words not yet used "
                                        "(logit bonus in nats; 0 turns it off; see docs/generate.md)."),
) -> None:
    """Continue a story beginning, streaming text as it is generated (or, for instruct models, a story
    on command: --words and --features in the pack's instruct format)."""
    from ..checkpoint import CheckpointError, load_model
    from ..generate import stream_story
    from ..guidance import WordGuide, pack_matcher
    from ..run_corpus import run_text_column
    from ..runtime import pick_device

    _check_top_p(top_p)
    if seed is not None and seed + num - 1 > SEED_MAX:
        fail(f"--seed {seed} with --num {num}: story i gets seed + i, and the last would pass {SEED_MAX}")
    prompt = _utf8_argument(prompt, "--prompt")
    words = None if words is None else _utf8_argument(words, "--words")
    try:
        model, recipe = load_model(run, pick_device(device))
    except (CheckpointError, RuntimeError) as error:
        fail(str(error))
    beginning, pack, word_list = prompt, None, []
    if words is not None or features:
        column = run_text_column(run, recipe)
        if column not in (None, "instruct"):
            errors.print(f"[yellow]warning:[/] {run} was trained on the {column!r} column, not on "
                         "instruct requests: it may not follow --words/--features.", highlight=False)
        pack, word_list, prompt = _instruct_request(run, recipe, lang, words, features, prompt)
        if words is not None and not word_list:
            fail(f"--words {words!r} lists no words; give them comma-separated: --words koira,pallo")
    fits = model.config.context_bytes - 1  # the begin-of-story id takes one place
    if len(prompt.encode("utf-8")) > fits:
        what = "request and beginning" if words or features else "prompt"
        errors.print(f"[yellow]warning:[/] the {what} is {len(prompt.encode('utf-8')):,} bytes; the model sees only "
                     f"its last {fits:,} (its context){', so the start of the request is lost' if words or features else ''}.",
                     highlight=False)
    if guidance is not None and not word_list:
        errors.print("[yellow]warning:[/] --guidance steers toward --words; without them it does nothing.",
                     highlight=False)
    guidance = DEFAULT_GUIDANCE if guidance is None else guidance
    matcher = pack_matcher(pack) if word_list else None  # with guidance 0 it still says which words were used
    try:
        for i in range(num):
            story_seed = None if seed is None else seed + i
            guide = WordGuide(word_list, guidance, is_use=matcher, prompt_tail=beginning) if matcher else None
            if guide is not None and guide.unsteered and guidance and i == 0:  # before the story starts streaming
                errors.print(f"[yellow]warning:[/] not single words, left to the model and not counted: "
                             f"{escape(', '.join(guide.unsteered))}", highlight=False)
            if num > 1:
                console.print(f"[bold]--- story {i + 1}/{num}[/]", highlight=False)
            sys.stdout.write(prompt)
            sys.stdout.flush()
            for piece in stream_story(model, prompt, max_bytes, temperature, top_k or None, top_p, story_seed, guide):
                sys.stdout.write(piece)
                sys.stdout.flush()
            sys.stdout.write("\n")
            sys.stdout.flush()
            if guide is not None:
                used = guide.used()
                missing = [w for w in guide.words if w not in used]
                errors.print(f"[dim]requested words used: {len(used)}/{len(guide.words)}"
                             + (f" (not: {escape(', '.join(missing))})" if missing else "") + "[/]", highlight=False)
    except KeyboardInterrupt:
        sys.stdout.write("\n")
        raise typer.Exit(130) from None


def _utf8_argument(value: str, option: str) -> str:
    """``value`` as valid text. Python hands over command-line bytes that are not UTF-8 (a Latin-1
    terminal's ä) as lone surrogates, which cannot be encoded or printed; each becomes U+FFFD."""
    raw = value.encode("utf-8", "surrogateescape")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        errors.print(f"[yellow]warning:[/] {option} is not UTF-8 (byte 0x{raw[error.start]:02x} at {error.start + 1}); "
                     "such bytes are replaced by U+FFFD. Set the terminal to UTF-8.", highlight=False)
        return raw.decode("utf-8", "replace")


def _check_top_p(top_p: Optional[float]) -> None:
    if top_p is not None and top_p <= 0:
        fail("--top-p must be above 0 (it keeps the likeliest bytes holding that much probability); "
              "for the single likeliest byte use --temperature 0")


def _instruct_request(run: Path, recipe, lang: Optional[str], words: Optional[str], features: Optional[str],
                      beginning: str):
    """(pack, requested words, prompt): the prompt is the pack's instruct rendering, features and
    words lines, then the story label and beginning."""
    from ..langpack import PackError, load_pack
    from ..run_corpus import run_language

    try:
        pack = load_pack(lang or run_language(run, recipe))
    except PackError as error:
        fail(str(error))
    try:
        wanted = pack.feature_names([f.strip() for f in (features or "").split(",") if f.strip()])
    except PackError as error:
        fail(str(error))
    word_list, seen = [], set()
    for word in (w.strip() for w in (words or "").split(",")):
        if word and word.casefold() not in seen:  # each word once, in its first spelling and place
            seen.add(word.casefold())
            word_list.append(word)
    return pack, word_list, pack.instruct_text(word_list, wanted, beginning)


@app.command()
def serve(
    run: Path = typer.Argument(..., metavar="RUN", help="Run directory, checkpoint file, or exported folder."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind; 0.0.0.0 exposes the model to the network."),
    port: int = typer.Option(8000, "--port", min=0, max=65535, help="Port (0: any free port)."),
    name: Optional[str] = typer.Option(None, "--name", help="Model id clients send (default: the run folder's name)."),
    chat_format: str = typer.Option("auto", "--chat-format",
                                    help="auto (instruct if trained on the instruct column), instruct or story."),
    lang: Optional[str] = typer.Option(None, "--lang", help="Pack whose instruct labels chat uses (default: the corpus's)."),
    max_batch: int = typer.Option(8, "--max-batch", min=1, help="Requests generated together (continuous batching)."),
    max_queue: int = typer.Option(256, "--max-queue", min=0,
                                  help="Requests that may wait for a batch slot; more are answered 503 (clients retry)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or mps."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1,
                                          help="CPU threads for torch (default on CPU: 1, see docs/serve.md)."),
    api_key: Optional[str] = typer.Option(None, "--api-key", envvar="TINYLANG_SERVE_API_KEY",
                                          help="Require 'Authorization: Bearer KEY' on every request."),
    allow_origin: Optional[str] = typer.Option(None, "--allow-origin",
                                               help="CORS: browser origin allowed to call the API ('*': any)."),
) -> None:
    """Serve a model over an OpenAI-compatible API: /v1/models, /v1/completions, /v1/chat/completions
    (streaming or not). Tokens are bytes: max_tokens counts bytes."""
    import torch

    from ..checkpoint import CheckpointError
    from ..langpack import PackError, load_pack
    from ..runtime import pick_device
    from ..serve.server import ModelServer, ServeOptions, is_loopback

    try:
        resolved = pick_device(device)
        if lang is not None:
            load_pack(lang)  # a pack that does not exist is an error even where story chat would not use it
    except (RuntimeError, PackError) as error:
        fail(str(error))
    if resolved.type == "cpu":
        # One-byte decode steps are small operations: a second thread mostly adds synchronisation and
        # takes a core from the HTTP threads and local clients (measured 2x slower with 2 on 2 cores).
        torch.set_num_threads(threads or 1)
    elif threads:
        torch.set_num_threads(threads)
    try:
        options = ServeOptions(host, port, name, chat_format, lang, max_batch, str(resolved), api_key, allow_origin,
                               max_queue)
        server = ModelServer.from_run(run, options)
    except (CheckpointError, PackError, RuntimeError, ValueError) as error:
        fail(str(error))
    except OSError as error:
        fail(f"cannot listen on {host}:{port} ({error})")
    served = server.served
    if served.instruct_pack and served.trained_column not in (None, "instruct"):
        errors.print(f"[yellow]warning:[/] {run} was trained on the {served.trained_column!r} column, not on instruct "
                     "requests: --chat-format instruct sends it requests it may not follow.", highlight=False)
    kind = f"instruct ({served.instruct_pack.spec.code} labels)" if served.instruct_pack else "story"
    where = f"{resolved.type}, {torch.get_num_threads()} thread(s)" if resolved.type == "cpu" else resolved.type
    console.print(f"Serving [bold]{served.name}[/] ({served.model.num_parameters():,} parameters, {kind} chat, {where}) "
                  f"at {server.url}  (Ctrl-C stops)", highlight=False)
    if not is_loopback(host) and not api_key:
        console.print(f"[yellow]Listening on {host} without --api-key: anyone who can reach this machine can use "
                      "the model.")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        console.print("Stopped.")
    finally:
        server.server_close()


@app.command()
def export(
    run: Path = typer.Argument(..., metavar="RUN", help="Run directory (or checkpoint file)."),
    out: Path = typer.Argument(..., metavar="OUT_DIR", help="Folder for model.safetensors, config.json, README.md."),
) -> None:
    """Export a trained run as safetensors + config + model card."""
    from ..checkpoint import CheckpointError
    from ..export import EXPORT_FILES, export_run

    try:
        folder = export_run(run, out)
    except CheckpointError as error:
        fail(str(error))
    console.print(f"Exported {run} -> {folder} ({', '.join(EXPORT_FILES)})")



def _fail_on_one_line(message: str, code: int = 1) -> None:
    """Like fail, without wrapping at the terminal width: evaluate's and compare's errors name files
    and endpoints, and a wrapped line splits them."""
    errors.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _warn(message: str) -> None:
    errors.print(f"[yellow]warning:[/] {escape(message)}", highlight=False, soft_wrap=True)


@app.command("evaluate")
def evaluate_command(
    run: Path = typer.Argument(..., metavar="RUN", help="Run directory (or checkpoint / exported folder)."),
    lang: Optional[str] = typer.Option(None, "--lang", "-l", help="Language pack (default: the training corpus's)."),
    name: str = typer.Option("default", "--name", help="Results go to RUN/eval/NAME/."),
    samples: int = typer.Option(10, "--samples", min=1, help="Completions per story beginning."),
    temperature: float = typer.Option(1.0, "--temperature", min=0.0),
    top_k: int = typer.Option(0, "--top-k", min=0, help="Sample from the k likeliest bytes (0: all of them)."),
    top_p: Optional[float] = typer.Option(None, "--top-p", min=0.0, max=1.0, help="Nucleus sampling mass (above 0)."),
    max_bytes: int = typer.Option(600, "--max-bytes", min=1, help="Most bytes per completion."),
    seed: int = typer.Option(0, "--seed", min=SEED_MIN, max=SEED_MAX),
    limit: Optional[int] = typer.Option(None, "--limit", min=1,
                                        help="Quick check: only the first N beginnings, held-out beginnings and "
                                             "validation stories."),
    instruct: bool = typer.Option(False, "--instruct", help="An instruct model: prompts request words and features."),
    guidance: Optional[float] = typer.Option(None, "--guidance", min=0.0, max=100.0, show_default=str(DEFAULT_GUIDANCE),
                                   help="With --instruct: word guidance strength, as in generate (0: the model alone)."),
    judge_model: Optional[str] = typer.Option(None, "--judge-model", help="LLM judge (or TINYLANG_JUDGE_MODEL); none: metrics only."),
    base_url: Optional[str] = typer.Option(None, "--base-url", help="Judge endpoint (or OPENAI_BASE_URL; key from OPENAI_API_KEY)."),
    judge_repeats: int = typer.Option(1, "--judge-repeats", min=1, help="Judge each completion N times (judge variance)."),
    judge_temperature: Optional[float] = typer.Option(
        None, "--judge-temperature", min=0.0, help="Judge sampling temperature (default: 0 for one repeat, 1.0 for more)."),
    judge_timeout: float = typer.Option(120.0, "--judge-timeout", min=1.0, help="Seconds to wait for one judge answer."),
    judge_max_attempts: int = typer.Option(6, "--judge-max-attempts", min=1,
                                           help="Tries per judge request before it is recorded as failed."),
    judge_max_tokens: int = typer.Option(1024, "--judge-max-tokens", min=16,
                                         help="Most tokens in one judge answer (a cut-off answer is retried, then failed)."),
    concurrency: int = typer.Option(8, "--concurrency", min=1, help="Judge requests in flight."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or mps."),
) -> None:
    """Complete the pack's story beginnings, judge them with an LLM, and measure them."""
    from ..checkpoint import CheckpointError
    from ..evaluate.run import EvalOptions, evaluate
    from ..langpack import PackError
    from ..llm import LLMFatalError
    from ..runtime import pick_device

    _check_top_p(top_p)
    if not name or name in (".", "..") or any(sep in name for sep in ("/", "\\")):
        fail(f"--name {name!r} must be a plain folder name: results go to RUN/eval/NAME/")
    if guidance is not None and not instruct:
        errors.print("[yellow]warning:[/] --guidance steers instruct models toward requested words; without "
                     "--instruct it does nothing.", highlight=False)
    guidance = DEFAULT_GUIDANCE if guidance is None else guidance
    try:
        pick_device(device)  # a device torch does not have: one line now, not a traceback after loading
    except RuntimeError as error:
        fail(str(error))
    options = EvalOptions(run=run, lang=lang, name=name, samples=samples, temperature=temperature, top_k=top_k or None,
                          top_p=top_p, max_bytes=max_bytes, seed=seed, limit=limit, instruct=instruct, guidance=guidance,
                          device=device,
                          judge_model=judge_model, base_url=base_url, judge_repeats=judge_repeats,
                          judge_temperature=judge_temperature, judge_timeout_s=judge_timeout,
                          judge_max_attempts=judge_max_attempts, judge_max_tokens=judge_max_tokens,
                          concurrency=concurrency)
    try:
        result = evaluate(options, console=console, errors=errors)
    except (CheckpointError, PackError, LLMFatalError) as error:
        _fail_on_one_line(str(error))
    except KeyboardInterrupt:
        fail("interrupted; judge answers so far are cached, run the same command again", 130)
    summary = result.summary
    for metric in ("judge_grammar", "judge_creativity", "judge_consistency", "judge_plot", "judge_instruction_following",
                   "requested_words_used", "vocabulary_adherence", "dictionary_coverage", "language_ok", "words"):
        value = summary["metrics"].get(metric)
        if value:
            low, high = value["ci95"]
            interval = f" [{low:.2f}, {high:.2f}]" if low is not None else ""
            console.print(f"{metric:>22}: {value['mean']:.2f}{interval}", highlight=False)
    held = summary["held_out"]
    console.print(f"{'held-out bits/byte':>22}: {held['bits_per_byte']:.3f} (bits/char {held['bits_per_char']:.3f}, "
                  f"{held['stories']} beginnings)", highlight=False)
    for part, gain in (summary.get("request_gain") or {}).items():
        if isinstance(gain, dict) and gain.get("gain_bits_per_story") is not None:
            low, high = gain["ci95"]
            interval = f" [{low:.1f}, {high:.1f}]" if low is not None else ""
            console.print(f"{'request gain, ' + part:>22}: {gain['gain_bits_per_story']:.1f} bits/story{interval} "
                          f"(its own vs another story's, {gain['n']} validation stories)", highlight=False)
    console.print(f"Report: {result.out / 'report.md'}")


@app.command("compare")
def compare_command(
    runs: list[Path] = typer.Argument(..., metavar="RUN", help="Run directories that have been evaluated."),
    out: Path = typer.Option(Path("results/compare"), "--out", help="Folder for comparison.md/.csv and the plots."),
    name: str = typer.Option("default", "--name", help="Which evaluation of each run (RUN/eval/NAME)."),
) -> None:
    """Compare evaluated runs across languages and sizes: tables (markdown, CSV) and plots."""
    from ..evaluate.compare import CompareError, compare_runs

    try:
        result = compare_runs(runs, out, name)
    except CompareError as error:
        _fail_on_one_line(str(error))
    console.print((out / "comparison.md").read_text(encoding="utf-8"), highlight=False, soft_wrap=True)
    for line in result["warnings"]:
        _warn(line)
    console.print(f"Wrote {out}/comparison.md, comparison.csv" + "".join(f", {p}" for p in result["plots"]))


@app.command("quickstart")
def quickstart_command(
    lang: str = typer.Option("fi", "--lang", "-l", help="Language pack with a story grammar (fi, en); others need "
                             "their corpus built with an LLM first."),
    n: int = typer.Option(20_000, "--n", min=10, help="Corpus size."),
    set_: list[str] = typer.Option([], "--set", help="Override a key of the tiny recipe (repeatable)."),
    samples: int = typer.Option(3, "--samples", min=1, help="Evaluation completions per beginning."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Evaluate only the first N beginnings."),
    judge_model: Optional[str] = typer.Option(None, "--judge-model", help="Also judge with this LLM."),
    base_url: Optional[str] = typer.Option(None, "--base-url", help="Judge endpoint."),
) -> None:
    """The whole pipeline offline: build a corpus, train the tiny model, generate, evaluate, report."""
    from ..checkpoint import CheckpointError
    from ..corpus.build import BuildError
    from ..langpack import PackError
    from ..quickstart import QuickstartError, QuickstartOptions, quickstart
    from ..recipe import RecipeError
    from ..train import TrainError

    options = QuickstartOptions(lang=lang, n=n, overrides=set_, samples=samples, limit=limit,
                                judge_model=judge_model, base_url=base_url)
    try:
        result = quickstart(options, console=console)
    except (PackError, BuildError, QuickstartError, RecipeError, TrainError, CheckpointError, RuntimeError) as error:
        fail(str(error))
    except KeyboardInterrupt:
        fail("interrupted; run the same command again to continue where it stopped", 130)
    console.print(f"Report: {result.report}")

