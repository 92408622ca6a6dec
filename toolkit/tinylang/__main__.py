"""``python -m tinylang`` (and ``torchrun -m tinylang``) run the command-line interface."""

from .cli import app

app()
