"""The project's promises on paper: README's two commands, CI calling them, documented recipe keys,
and the README's Python example actually running."""

from __future__ import annotations

import pytest

import re
import shutil
import subprocess
import sys
from pathlib import Path

from tinylang.model import MegabyteConfig
from tinylang.recipe import DataConfig, EvalConfig, OptimConfig, OutputConfig, TrainConfig

ROOT = Path(__file__).resolve().parents[1]


def test_readme_leads_with_the_two_commands_and_ci_runs_the_tests():
    readme = (ROOT / "README.md").read_text()
    first_block = readme.split("```bash", 1)[1].split("```", 1)[0]
    assert "make demo" in first_block and "make test" in first_block
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^demo:", makefile, re.M) and re.search(r"^test:", makefile, re.M)
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_every_recipe_key_is_documented():
    doc = (ROOT / "docs" / "train.md").read_text()
    sections = {"data": DataConfig, "model": MegabyteConfig, "optim": OptimConfig, "train": TrainConfig,
                "eval": EvalConfig, "output": OutputConfig}
    missing = [f"{name}.{key}" for name, cls in sections.items() for key in cls.model_fields
               if f"`{name}.{key}`" not in doc]
    assert not missing, f"undocumented recipe keys: {missing}"


def test_readme_python_example_runs(tmp_path):
    readme = (ROOT / "README.md").read_text()
    code = readme.split("## Library", 1)[1].split("```python", 1)[1].split("```", 1)[0]
    shutil.copytree(ROOT / "recipes", tmp_path / "recipes")
    shutil.copytree(ROOT / "corpora", tmp_path / "corpora")
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "runs" / "readme-example" / "checkpoint.pt").is_file()


@pytest.mark.parametrize("command_name,page_name", [("build-corpus", "build-corpus.md"), ("filter", "filter.md"),
                                                    ("evaluate", "evaluate.md"), ("compare", "evaluate.md"),
                                                    ("serve", "serve.md")])
def test_every_corpus_command_option_is_documented(command_name, page_name):
    import click
    import typer.main

    from tinylang.cli import app

    command = typer.main.get_command(app).commands[command_name]
    options = [opt for param in command.params if isinstance(param, click.Option) for opt in param.opts]
    page = (ROOT / "docs" / page_name).read_text(encoding="utf-8")
    missing = [opt for opt in options if opt.startswith("--") and f"`{opt}`" not in page and opt != "--help"]
    assert missing == []
