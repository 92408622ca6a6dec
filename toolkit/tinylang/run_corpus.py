"""What a run was trained on, for commands that take a run and leave options out: its corpus's
stats.json, the language of its data, the text column it learnt from. A run's stored recipe answers
for a run folder; an export, whose corpus stays behind, carries the answers in its config.json.

    load_pack(lang or run_language(run, recipe))
"""

from __future__ import annotations

import json
from pathlib import Path

from .langpack import PackError, load_pack


def run_corpus_stats(recipe, run: str | Path | None = None) -> dict | None:
    """build-corpus's stats.json of the corpus a run was trained on (its language and sources); None
    when the run's data is not a build-corpus folder. ``recipe`` is the run's stored recipe, None for
    exports, which carry what they need of it in config.json (``training.corpus``)."""
    if recipe is None:
        return export_training(run).get("corpus") if run is not None else None
    stats = Path(recipe.data.path) / "stats.json"
    if not stats.is_file():
        return None
    return json.loads(stats.read_text(encoding="utf-8"))


def export_training(location: str | Path) -> dict:
    """The ``training`` section of an export's config.json ({} for anything else, or an old export)."""
    config = Path(location) / "config.json"
    if not (Path(location) / "model.safetensors").is_file() or not config.is_file():
        return {}
    try:
        training = json.loads(config.read_text(encoding="utf-8")).get("training")
    except (OSError, ValueError, AttributeError):
        return {}
    return training if isinstance(training, dict) else {}


def pack_holding(data_path: str | Path) -> str | None:
    """The code of the language pack whose folder holds ``data_path`` (fi-tiny trains on
    corpora/fi/seed-stories.txt), or None: a text inside a pack is in that pack's language."""
    path = Path(data_path).expanduser()
    if not path.exists():
        return None
    path = path.resolve()
    for folder in path.parents if path.is_file() else (path, *path.parents):
        if (folder / "pack.yaml").is_file():
            try:
                return load_pack(folder).code
            except (OSError, PackError):  # a pack.yaml that is not a whole pack says nothing
                return None
    return None


def corpus_language(recipe) -> str | None:
    """The language of a run's training data, from its corpus's stats.json or the pack folder holding it."""
    stats = run_corpus_stats(recipe)
    return stats["lang"] if stats is not None else pack_holding(recipe.data.path)


def run_language(run: str | Path, recipe) -> str:
    """The pack code of the corpus a run (or export) was trained on, for commands whose --lang was left out."""
    lang = corpus_language(recipe) if recipe is not None else (run_corpus_stats(None, run) or {}).get("lang")
    if lang is not None:
        return lang
    what = ("its training data is neither a build-corpus folder nor inside a language pack" if recipe is not None
            else "the export does not record it")
    raise PackError(f"cannot tell the language of {run} ({what}): pass --lang")


def run_text_column(run: str | Path, recipe) -> str | None:
    """The column a run (or export) was trained on (``instruct`` for instruct models); None if unknown."""
    return recipe.data.text_column if recipe is not None else export_training(run).get("text_column")


__all__ = ["corpus_language", "export_training", "pack_holding", "run_corpus_stats", "run_language",
           "run_text_column"]
