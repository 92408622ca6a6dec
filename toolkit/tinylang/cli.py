"""The ``tinylang`` command line. Thin on purpose: parse, call one library function, print.

    tinylang train recipes/fi-tiny.yaml --set train.max_steps=200
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

app = typer.Typer(
    name="tinylang",
    help="Build small byte-level language models (MEGABYTE) for languages the big labs neglect.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
errors = Console(stderr=True)


def _fail(message: str, code: int = 1) -> None:
    errors.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


@app.command()
def train(
    recipe: Path = typer.Argument(..., help="Recipe YAML, e.g. recipes/fi-tiny.yaml."),
    set_: list[str] = typer.Option([], "--set", help="Override a recipe key: --set train.max_steps=500 (repeatable)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in output.dir from its checkpoint."),
) -> None:
    """Train a MEGABYTE model from a recipe."""
    from .checkpoint import CheckpointError
    from .recipe import RecipeError, load_recipe
    from .sources import SourceError
    from .train import TrainError
    from .train import train as run_training

    try:
        result = run_training(load_recipe(recipe, set_), resume=resume, console=console)
    except (RecipeError, SourceError, CheckpointError, TrainError, RuntimeError) as error:
        _fail(str(error))
    except KeyboardInterrupt:  # before the loop started, or a second Ctrl-C inside it
        _fail("aborted; the last scheduled checkpoint (if any) is intact, continue with --resume", 130)
    if result.stopped_by == "interrupt":
        raise typer.Exit(130)


@app.command()
def generate(
    run: Path = typer.Argument(..., help="Run directory, checkpoint file, or exported folder."),
    prompt: str = typer.Option("", "--prompt", "-p", help="Story beginning to continue."),
    max_bytes: int = typer.Option(600, "--max-bytes", min=1, help="Most bytes to generate per story."),
    temperature: float = typer.Option(0.8, "--temperature", "-t", min=0.0, help="0 means greedy."),
    top_k: Optional[int] = typer.Option(40, "--top-k", min=1, help="Sample from the k likeliest bytes."),
    top_p: Optional[float] = typer.Option(None, "--top-p", min=0.0, max=1.0, help="Nucleus sampling mass."),
    num: int = typer.Option(1, "--num", "-n", min=1, help="Number of stories."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed for repeatable samples."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or mps."),
) -> None:
    """Continue a story beginning, streaming text as it is generated."""
    from .checkpoint import CheckpointError, load_model
    from .generate import stream_story
    from .runtime import pick_device

    try:
        model, _ = load_model(run, pick_device(device))
    except (CheckpointError, RuntimeError) as error:
        _fail(str(error))
    try:
        for i in range(num):
            if num > 1:
                console.print(f"[bold]--- story {i + 1}/{num}[/]", highlight=False)
            sys.stdout.write(prompt)
            story_seed = None if seed is None else seed + i
            for piece in stream_story(model, prompt, max_bytes, temperature, top_k, top_p, story_seed):
                sys.stdout.write(piece)
                sys.stdout.flush()
            sys.stdout.write("\n")
            sys.stdout.flush()
    except KeyboardInterrupt:
        sys.stdout.write("\n")
        raise typer.Exit(130) from None


@app.command()
def export(
    run: Path = typer.Argument(..., help="Run directory (or checkpoint file)."),
    out: Path = typer.Argument(..., help="Folder for model.safetensors, config.json, README.md."),
) -> None:
    """Export a trained run as safetensors + config + model card."""
    from .checkpoint import CheckpointError
    from .export import export_run

    try:
        folder = export_run(run, out)
    except CheckpointError as error:
        _fail(str(error))
    console.print(f"Exported {run} -> {folder} (model.safetensors, config.json, recipe.yaml, README.md)")


def main() -> None:  # pragma: no cover - console-script entry point
    app()
