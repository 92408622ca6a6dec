"""A tiny trained run shared by the evaluate and compare tests (trained once per session, in seconds)."""

from __future__ import annotations

import pytest
import yaml
from rich.console import Console
from tinylang.recipe import load_recipe
from tinylang.train import train


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    from tests.conftest import make_stories, recipe_dict, write_txt

    folder = tmp_path_factory.mktemp("evalrun")
    stories = write_txt(folder / "stories.txt", make_stories(200))
    recipe = folder / "tiny.yaml"
    recipe.write_text(yaml.safe_dump(recipe_dict(stories, folder / "run", folder / "cache")))
    train(load_recipe(recipe), console=Console(quiet=True))
    return folder / "run"
