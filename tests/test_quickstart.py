"""tinylang quickstart: corpus, training, stories and evaluation in one call, on small settings."""

from __future__ import annotations

import io
import json
from pathlib import Path

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
