"""Shared fixtures: a tiny model shape, a small story file, and a recipe that trains in seconds."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import yaml

from tinylang.model import MegabyteConfig

WORDS = (
    "kissa koira pupu karhu orava metsä talo äiti isä mummo leikki juoksi hyppäsi iloinen surullinen "
    "pallo puuro mustikka sauna järvi lumi aurinko ystävä pieni iso punainen"
).split()


def tiny_config(**overrides) -> MegabyteConfig:
    shape = dict(
        patch_size=4, context_bytes=32, global_dim=32, global_layers=2, global_heads=2,
        local_dim=32, local_layers=2, local_heads=2, ff_mult=2,
    )
    return MegabyteConfig(**(shape | overrides))


def make_stories(count: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    stories = []
    for i in range(count):
        words = [rng.choice(WORDS) for _ in range(rng.randint(8, 30))]
        stories.append(f"Tarina {i}. " + " ".join(words).capitalize() + ".")
    return stories


def write_txt(path: Path, stories: list[str]) -> Path:
    path.write_text("".join(f"{s}\n<|endoftext|>\n" for s in stories), encoding="utf-8")
    return path


@pytest.fixture
def story_file(tmp_path: Path) -> Path:
    return write_txt(tmp_path / "stories.txt", make_stories(300))


def recipe_dict(data_path: Path, out_dir: Path, cache_dir: Path) -> dict:
    return {
        "data": {"path": str(data_path), "cache_dir": str(cache_dir), "validation_fraction": 0.1},
        "model": tiny_config(context_bytes=64).model_dump(),
        "optim": {"lr": 3e-3, "min_lr": 3e-4, "warmup_steps": 5, "lr_decay_steps": 100},
        "train": {"batch_size": 4, "max_steps": 12, "log_every": 1, "checkpoint_every": 4, "seed": 0},
        "eval": {"every_steps": 4, "batches": 2, "samples": 1, "sample_bytes": 20, "sample_prompt": "Tarina"},
        "output": {"dir": str(out_dir)},
    }


@pytest.fixture
def recipe_file(tmp_path: Path, story_file: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    raw = recipe_dict(story_file, tmp_path / "run", tmp_path / "cache")
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return path
