"""Recipes: every shipped one validates, errors name the file and key path, overrides are typed."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tinylang.recipe import RecipeError, apply_overrides, load_recipe

RECIPES = sorted((Path(__file__).parents[1] / "recipes").glob("*.yaml"))


def test_recipes_are_shipped():
    names = {p.name for p in RECIPES}
    assert {"fi-tiny.yaml", "fi-40m.yaml", "en-40m.yaml"} <= names


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_every_shipped_recipe_validates_and_names_its_command(path):
    recipe = load_recipe(path)
    assert path.read_text().splitlines()[0] == f"# tinylang train recipes/{path.name}"
    assert recipe.model.context_bytes % recipe.model.patch_size == 0


def test_tiny_recipe_is_tiny_and_forty_m_is_forty_m():
    from tinylang.model import Megabyte

    tiny = Megabyte(load_recipe(RECIPES[0].parent / "fi-tiny.yaml").model).num_parameters()
    big = Megabyte(load_recipe(RECIPES[0].parent / "fi-40m.yaml").model).num_parameters()
    assert 1_000_000 <= tiny <= 3_000_000
    assert 35_000_000 <= big <= 45_000_000


def test_unknown_key_names_file_and_path(tmp_path, recipe_file):
    raw = yaml.safe_load(recipe_file.read_text())
    raw["train"]["max_stpes"] = 5
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(raw))
    with pytest.raises(RecipeError) as error:
        load_recipe(bad)
    assert str(bad) in str(error.value)
    assert "train.max_stpes: unknown key" in str(error.value)


def test_wrong_type_and_cross_field_errors(recipe_file):
    with pytest.raises(RecipeError, match=r"train.max_steps: .*\(from --set train.max_steps=many\)"):
        load_recipe(recipe_file, ["train.max_steps=many"])
    with pytest.raises(RecipeError, match="multiple of patch_size"):
        load_recipe(recipe_file, ["model.context_bytes=30"])
    with pytest.raises(RecipeError, match="min_lr"):
        load_recipe(recipe_file, ["optim.min_lr=1.0"])
    with pytest.raises(RecipeError, match="train.seed"):  # past what torch.manual_seed takes
        load_recipe(recipe_file, ["train.seed=99999999999999999999"])


def test_overrides_parse_yaml_values(recipe_file):
    recipe = load_recipe(
        recipe_file, ["train.max_steps=7", "optim.lr=3e-4", "train.max_minutes=null", "output.dir=/tmp/x y"]
    )
    assert recipe.train.max_steps == 7
    assert recipe.optim.lr == pytest.approx(3e-4)
    assert recipe.train.max_minutes is None
    assert recipe.output.dir == "/tmp/x y"


def test_override_errors():
    with pytest.raises(RecipeError, match="key.path=value"):
        apply_overrides({}, ["train.max_steps"])
    with pytest.raises(RecipeError, match="not a section"):
        apply_overrides({"train": 3}, ["train.max_steps=4"])


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(RecipeError, match="no such recipe"):
        load_recipe(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [unclosed")
    with pytest.raises(RecipeError, match="not valid YAML"):
        load_recipe(bad)


def test_override_values_that_are_not_yaml_structure_stay_text(recipe_file):
    recipe = load_recipe(recipe_file, ["eval.sample_prompt=Hän sanoi: hei", "output.dir=123"])
    assert recipe.eval.sample_prompt == "Hän sanoi: hei"  # YAML would read a mapping
    assert recipe.output.dir == "123"  # a number where text belongs is text
    with pytest.raises(RecipeError, match=r"train.max_steps=\[1.*not valid YAML"):
        load_recipe(recipe_file, ["train.max_steps=[1"])


def test_booleans_are_not_numbers(recipe_file):
    from pydantic import ValidationError

    from tinylang.model import MegabyteConfig

    with pytest.raises(RecipeError, match="train.max_steps: .*true is not a valid value"):
        load_recipe(recipe_file, ["train.max_steps=yes"])  # YAML's yes is true, which pydantic takes as 1
    assert load_recipe(recipe_file, ["train.compile=yes"]).train.compile is True
    with pytest.raises(ValidationError, match="patch_size"):
        MegabyteConfig(patch_size=True)


def test_a_key_given_twice_and_a_folder_are_refused(tmp_path, recipe_file):
    twice = tmp_path / "twice.yaml"
    twice.write_text(recipe_file.read_text() + "\n" + "train:\n  max_steps: 3\n")
    with pytest.raises(RecipeError, match="found the key 'train' twice"):
        load_recipe(twice)
    with pytest.raises(RecipeError, match="a folder, not a recipe file"):
        load_recipe(tmp_path)
