"""Held-out bits: evaluation beginnings stop mid-sentence, so they are scored without an end-of-story
prediction; whole validation stories keep it."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from rich.console import Console
from tinylang.checkpoint import load_model
from tinylang.evaluate.metrics import story_bits
from tinylang.evaluate.run import EvalOptions, evaluate
from tinylang.model import BOS_ID, EOS_ID, Megabyte

from tests.conftest import tiny_config


def _bits_per_target(model, text: str) -> list[float]:
    """Bits of each byte of ``text`` and then of end-of-story, from one causal forward pass."""
    ids = torch.tensor([[BOS_ID, *text.encode("utf-8"), EOS_ID]])
    logits, _ = model(ids[:, :-1])
    return (F.cross_entropy(logits[0].float(), ids[0, 1:], reduction="none") / math.log(2)).tolist()


def test_beginnings_are_scored_without_end_of_story_and_whole_stories_with_it():
    torch.manual_seed(0)
    model = Megabyte(tiny_config()).eval()
    text = "Olipa kerran koira, joka"  # shorter than the context: one window
    per_target = _bits_per_target(model, text)
    (beginning, size, chars), = story_bits(model, [text], end_of_story=False)
    (story, _, _), = story_bits(model, [text])
    assert beginning == pytest.approx(sum(per_target[:-1]), rel=1e-5)
    assert story == pytest.approx(sum(per_target), rel=1e-5)
    assert story - beginning == pytest.approx(per_target[-1], rel=1e-4) and per_target[-1] > 0
    assert (size, chars) == (len(text.encode("utf-8")), len(text))


def test_evaluate_scores_the_held_out_beginnings_without_end_of_story(tiny_run):
    from tinylang.langpack import load_pack

    result = evaluate(EvalOptions(run=tiny_run, lang="fi", samples=1, limit=2, max_bytes=10, name="no-eos"),
                      Console(quiet=True))
    model, _ = load_model(tiny_run)
    beginnings = load_pack("fi").eval_beginnings[:2]
    expected = story_bits(model, [b.text for b in beginnings], end_of_story=False)
    with_end = story_bits(model, [b.text for b in beginnings])
    held = result.summary["held_out"]
    assert held["bits_by_id"] == {b.id: pytest.approx(bits, abs=1e-3) for b, (bits, _, _) in zip(beginnings, expected)}
    assert held["bits_per_story"] == pytest.approx(sum(bits for bits, _, _ in expected) / 2)
    assert held["bits_per_story"] < sum(bits for bits, _, _ in with_end) / 2


def test_a_pack_without_language_id_reports_no_language_rate(tiny_pack):
    """language_id: false must not turn into a perfect language-ID rate."""
    from tinylang.evaluate.metrics import CompletionMetrics
    from tinylang.evaluate.summary import metric_summaries
    from tinylang.langpack import load_pack

    english = ["Once upon a time there was a dog who liked to run in the park every day."] * 2
    on = CompletionMetrics(load_pack(tiny_pack)).measure(english)
    assert [row["language_ok"] for row in on] == [False, False]
    text = (tiny_pack / "pack.yaml").read_text(encoding="utf-8")
    (tiny_pack / "pack.yaml").write_text(text.replace("filters:\n", "filters:\n  language_id: false\n"), encoding="utf-8")
    rows = CompletionMetrics(load_pack(tiny_pack)).measure(english)
    assert [row["language_ok"] for row in rows] == [None, None]
    assert "language_ok" not in metric_summaries(rows, [])  # left out, as a metric with no values is
