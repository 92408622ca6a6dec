"""The Typer app and the consoles every command module prints with."""

from __future__ import annotations

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


def fail(message: str, code: int = 1) -> None:
    errors.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)
