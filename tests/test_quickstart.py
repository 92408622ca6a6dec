"""tinylang quickstart: corpus, training, stories and evaluation in one call, on small settings."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from rich.console import Console

from tinylang.quickstart import QuickstartOptions, quickstart
from tinylang.testing.openai_server import OpenAIServer

REPO = Path(__file__).resolve().parents[1]


def test_quickstart_runs_the_whole_pipeline(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TINYLANG_CORPORA", str(REPO / "corpora"))
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "TINYLANG_JUDGE_MODEL"):
        monkeypatch.delenv(name, raising=False)
    options = QuickstartOptions(lang="fi", n=120, recipe=REPO / "recipes" / "fi-tiny.yaml", samples=1, limit=2, stories=1,
                                overrides=["train.max_steps=4", "train.checkpoint_every=4", "eval.every_steps=4",
                                           "eval.samples=0", "train.batch_size=4"])
    result = quickstart(options, Console(quiet=True))
    report = result.report.read_text()
    assert result.report == Path("runs/quickstart-fi/quickstart.md")
    assert "kept by the filters" in report and "4 steps" in report and "no judge configured" in report
    assert "> Olipa kerran" in report
    assert "tinylang serve runs/quickstart-fi" in report  # what to do next
    for plot in ("training.png", "story_metrics.png"):  # the report's plots, beside it
        assert f"]({plot})" in report and (result.run / plot).stat().st_size > 1000
    assert "judge_scores.png" not in report  # no judge configured
    assert (result.run / "eval" / "quickstart" / "report.md").is_file()
    assert (result.corpus / "train.parquet").is_file()
    stats_before = json.loads((result.corpus / "stats.json").read_text())["splits"]
    # Again, now with a judge: the corpus and the run are reused, not rebuilt or retrained.
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    grades = json.dumps({"grammar": 5, "creativity": 4, "consistency": 3, "plot": 2, "age_group": "A"})
    with OpenAIServer(answer=lambda messages: grades) as server:
        options.judge_model, options.base_url = "judge", server.url
        again = quickstart(options, Console(quiet=True))
    report = again.report.read_text()
    assert report.count("4 steps") == 1 and "judge grammar 5.000" in report
    assert "](judge_scores.png)" in report and (again.run / "judge_scores.png").stat().st_size > 1000
    # A smaller --n later: build-corpus would refuse to shrink the folder, so the demo uses it whole.
    options.n = 60
    out = io.StringIO()
    quickstart(options, Console(file=out, width=200))
    assert "already holds a corpus of 120 planned stories: using it" in out.getvalue()
    assert json.loads((result.corpus / "stats.json").read_text())["splits"] == stats_before


def test_quickstart_never_asks_an_llm_for_stories(tmp_path, monkeypatch):
    """sv has no story grammar: with a key and a model in the environment quickstart still sends no
    request, and says how to build the corpus first; a corpus built before is then used."""
    from typer.testing import CliRunner

    from tinylang.cli import app
    from tinylang.quickstart import QuickstartError

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TINYLANG_CORPORA", str(REPO / "corpora"))
    asked = []
    with OpenAIServer(answer=lambda messages: asked.append(messages) or "Det var en gång.") as server:
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
        monkeypatch.setenv("OPENAI_BASE_URL", server.url)
        monkeypatch.setenv("OPENAI_MODEL", "m")
        result = CliRunner().invoke(app, ["quickstart", "--lang", "sv", "--n", "10"])
    assert result.exit_code == 1 and not asked
    assert "has none" in result.stderr and "tinylang build-corpus --lang sv" in " ".join(result.stderr.split())
    corpus = tmp_path / "data" / "sv-generate"
    corpus.mkdir(parents=True)
    (corpus / "stats.json").write_text(json.dumps({"lang": "sv", "splits": {"train": 1, "validation": 1}}))
    from tinylang.langpack import load_pack
    from tinylang.quickstart import _corpus_built_before

    with pytest.raises(QuickstartError):
        _corpus_built_before(load_pack("sv"), corpus)  # no splits yet: still refused
    for split in ("train", "validation"):
        (corpus / f"{split}.parquet").write_bytes(b"")
    assert _corpus_built_before(load_pack("sv"), corpus)["lang"] == "sv"


def test_quickstart_finds_its_recipe_from_any_folder_and_checks_it_first(tmp_path, monkeypatch):
    from tinylang.quickstart import _recipe_path
    from tinylang.recipe import RecipeError

    monkeypatch.chdir(tmp_path)  # no recipes/ here: the shipped one is used
    assert _recipe_path(QuickstartOptions(lang="fi")) == REPO / "recipes" / "fi-tiny.yaml"
    with pytest.raises(RecipeError, match="no such recipe file"):  # before step 1 writes a corpus
        quickstart(QuickstartOptions(lang="fi", n=20, recipe=tmp_path / "missing.yaml"), Console(quiet=True))
    with pytest.raises(RecipeError, match="unknown key"):
        quickstart(QuickstartOptions(lang="fi", n=20, overrides=["train.max_stpes=3"]), Console(quiet=True))
    assert not (tmp_path / "data").exists()
