"""The ``tinylang`` command line. Thin on purpose: parse, call one library function, print.

    tinylang train recipes/fi-tiny.yaml --set train.max_steps=200

Commands live by concept (``runs``: models and runs; ``corpus``: packs and corpora) and register on
the one ``app``; importing this package registers them all.
"""

from __future__ import annotations

from . import corpus, runs  # noqa: F401  (registers the commands, in pipeline order: corpus first)
from ._app import app, console, errors

__all__ = ["app", "console", "errors", "main"]


def main() -> None:  # pragma: no cover - console-script entry point
    app()
