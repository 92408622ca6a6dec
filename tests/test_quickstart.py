"""tinylang quickstart: corpus, training, stories and evaluation in one call, on small settings."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from tinylang.quickstart import QuickstartOptions, quickstart

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
    assert (result.run / "eval" / "quickstart" / "report.md").is_file()
    assert (result.corpus / "train.parquet").is_file()
    # Again: the corpus and the run are reused, not rebuilt or retrained.
    again = quickstart(options, Console(quiet=True))
    assert again.report.read_text().count("4 steps") == 1
