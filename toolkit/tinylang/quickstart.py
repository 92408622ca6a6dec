"""``tinylang quickstart``: the whole idea in one command, offline: corpus, model, stories, numbers.

1. build a corpus with the pack's story grammar, filtered (a pack without a grammar needs a corpus built
   with an LLM first; quickstart itself never sends a request for stories);
2. train the tiny recipe on it (``--resume`` semantics: running again continues or reuses the run);
3. print a few generated stories;
4. evaluate (automatic metrics, and the judge when ``--judge-model`` is given);
5. write ``quickstart.md`` in the run folder and print its path.

    result = quickstart(QuickstartOptions(lang="fi"))
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console

from .checkpoint import load_model
from .corpus.build import BuildOptions, build_corpus
from .corpus.folder import stored_plan
from .corpus.store import read_stats
from .evaluate.compare import comparison_table, plot_judge_scores, plot_story_metrics, plot_training_curve
from .evaluate.run import EvalOptions, evaluate
from .generate import complete_story
from .langpack import load_pack
from .recipe import load_recipe
from .train import train


@dataclass
class QuickstartOptions:
    lang: str = "fi"
    n: int = 20_000
    recipe: Path | None = None  # default recipes/<lang>-tiny.yaml, else recipes/fi-tiny.yaml
    overrides: list[str] = field(default_factory=list)  # --set for the recipe
    samples: int = 3  # evaluation completions per beginning
    limit: int | None = None  # evaluation beginnings
    stories: int = 3  # printed samples
    judge_model: str | None = None
    base_url: str | None = None


@dataclass
class QuickstartResult:
    report: Path
    corpus: Path
    run: Path


def _recipe_path(options: QuickstartOptions) -> Path:
    """``--recipe``, else ``<lang>-tiny.yaml``, else ``fi-tiny.yaml``: from ./recipes, then from the
    recipes/ beside the sources, so quickstart runs from any folder (as packs are found)."""
    if options.recipe:
        return Path(options.recipe)
    shipped = Path(__file__).resolve().parents[2] / "recipes"
    for name in (f"{Path(options.lang).name}-tiny.yaml", "fi-tiny.yaml"):
        for folder in (Path("recipes"), shipped):
            if (folder / name).is_file():
                return folder / name
    return Path("recipes") / "fi-tiny.yaml"  # missing everywhere: load_recipe says so


def quickstart(options: QuickstartOptions, console: Console | None = None) -> QuickstartResult:
    console = console or Console(stderr=True)
    pack = load_pack(options.lang)
    corpus = Path("data") / f"{pack.code}-generate"
    run = Path("runs") / f"quickstart-{pack.code}"
    recipe_path = _recipe_path(options)
    # checked before step 1, so that a missing recipe or a bad --set does not come after the corpus
    recipe = load_recipe(recipe_path, [f"data.path={corpus}", f"output.dir={run}", *options.overrides])
    n = options.n
    planned = stored_plan(corpus).get("n")
    if planned and planned > n:  # build-corpus refuses to shrink a corpus; the demo uses it whole
        console.print(f"{corpus} already holds a corpus of {planned:,} planned stories: using it "
                      f"(delete {corpus} for a smaller one).")
        n = planned
    console.rule(f"1/4 corpus: {n:,} {pack.name} stories -> {corpus}")
    # The story grammar, even with an API key in the environment: the demo stays offline and free,
    # and a key set for the judge must not turn step 1 into thousands of paid requests.
    if pack.has_grammar:
        built_stats = build_corpus(BuildOptions(lang=options.lang, n=n, out=corpus, backend="grammar",
                                                filter_workers=os.cpu_count() or 1), console).stats
    else:
        built_stats = _corpus_built_before(pack, corpus)
        console.print(f"The {pack.name} pack has no story grammar: using the corpus already in {corpus}.")
    console.rule(f"2/4 training {recipe_path} -> {run}")
    trained = train(recipe, resume=True, console=console)
    console.rule("3/4 stories")
    model, _ = load_model(run)
    prompt = recipe.eval.sample_prompt
    samples = [prompt + complete_story(model, prompt, max_bytes=500, temperature=0.8, top_k=40, seed=i)
               for i in range(options.stories)]
    for i, story in enumerate(samples, 1):
        console.print(f"[bold]--- story {i}[/]")
        console.print(story, highlight=False)
    console.rule("4/4 evaluation")
    evaluation = evaluate(EvalOptions(run=run, lang=options.lang, samples=options.samples, limit=options.limit,
                                      max_bytes=400, judge_model=options.judge_model, base_url=options.base_url,
                                      name="quickstart"), console)
    report = run / "quickstart.md"
    next_steps = [
        f"more stories: `tinylang generate {run} --prompt \"{prompt}\" --num 3`",
        f"talk to it from any OpenAI client or chat UI: `tinylang serve {run}` (docs/serve.md)",
        f"train longer: `tinylang train {recipe_path} --set data.path={corpus} --set output.dir=runs/"
        f"{pack.code}-longer --set train.max_steps=3000 --set optim.lr_decay_steps=3000 "
        "--set train.max_minutes=null`",
        f"an instruct model that writes on command: `tinylang build-corpus --lang {pack.code} --format instruct --out "
        f"data/{pack.code}-instruct`, then a recipe like `recipes/fi-instruct-tiny.yaml` (docs/generate.md)",
    ]
    plots = [name for name, made in (
        ("training.png", plot_training_curve(run, run / "training.png")),
        ("story_metrics.png", plot_story_metrics(evaluation.summary, run / "story_metrics.png")),
        ("judge_scores.png", evaluation.summary.get("judge") is not None
         and plot_judge_scores(comparison_table([run], "quickstart")[0], run / "judge_scores.png")),
    ) if made]
    report.write_text(render_report(pack.name, built_stats, trained, samples, evaluation, next_steps, plots),
                      encoding="utf-8")
    return QuickstartResult(report, corpus, run)


class QuickstartError(ValueError):
    """Quickstart cannot run offline for this pack; the message says what to do first."""


def _corpus_built_before(pack, corpus: Path) -> dict:
    """The stats of a finished corpus in ``corpus``, for a pack whose stories need an LLM."""
    stats = read_stats(corpus)
    if stats.get("lang") == pack.code and all((corpus / f"{s}.parquet").is_file() for s in ("train", "validation")):
        return stats
    raise QuickstartError(
        f"quickstart runs offline on a pack's story grammar, and the {pack.name} pack ({pack.code}) has none. Build "
        f"its corpus with an LLM first (it is then reused here): tinylang build-corpus --lang {pack.code} --n 20000 "
        f"--model MODEL --out {corpus}   (docs/build-corpus.md; --dry-run shows the cost)")


def render_report(language: str, corpus_stats: dict, trained, samples: list[str], evaluation,
                  next_steps: list[str], plots: list[str]) -> str:
    summary = evaluation.summary
    filtered = corpus_stats.get("filter") or {}
    metrics = summary["metrics"]

    def metric(name: str) -> str:
        value = metrics.get(name)
        return f"{value['mean']:.3f}" if value else "-"

    lines = [
        f"# tinylang quickstart: {language}",
        "",
        "| step | result |",
        "|---|---|",
        f"| corpus | {corpus_stats['corpus']['stories']:,} stories written ({', '.join(corpus_stats['corpus']['sources'])}), "
        f"{filtered.get('kept', 0):,} kept by the filters; train {corpus_stats['splits']['train']:,}, "
        f"validation {corpus_stats['splits']['validation']:,} |",
        f"| training | {trained.step} steps, {trained.bytes_seen:,} bytes, {trained.elapsed_s / 60:.1f} min, "
        f"validation bits per byte {trained.val_bpb:.3f} |" if trained.val_bpb is not None else
        f"| training | {trained.step} steps |",
        f"| evaluation | {summary['completions']} completions of {summary['beginnings']} beginnings: vocabulary adherence "
        f"{metric('vocabulary_adherence')}, dictionary coverage {metric('dictionary_coverage')}, language-ID rate "
        f"{metric('language_ok')}, held-out bits per byte {summary['held_out']['bits_per_byte']:.3f}"
        + (f", judge grammar {metric('judge_grammar')}" if summary.get("judge") else ", no judge configured") + " |",
        "",
        f"Full evaluation report: `{evaluation.out / 'report.md'}`.",
        "",
        *(f"![{name.removesuffix('.png').replace('_', ' ')}]({name})" for name in plots),
        "",
        "## Stories",
        "",
    ]
    for story in samples:
        lines += ["> " + story.replace("\n", "\n> "), ""]
    lines += ["## Next", "", *(f"- {step}" for step in next_steps), ""]
    return "\n".join(lines)
