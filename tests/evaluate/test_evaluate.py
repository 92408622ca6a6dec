"""tinylang evaluate end to end: a tiny trained model, its completions, a local judge over HTTP."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch
from rich.console import Console
from typer.testing import CliRunner

from tinylang.cli import app
from tinylang.evaluate.metrics import distinct_n, mean_ci
from tinylang.evaluate.run import EvalOptions, evaluate
from tinylang.recipe import load_recipe
from tinylang.testing.openai_server import OpenAIServer
from tinylang.train import train


def judge_answers(messages):
    return json.dumps({"grammar": 6, "creativity": 4, "consistency": 5, "plot": 3, "age_group": "B"})


def test_evaluate_with_a_judge_over_http(tiny_run, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    answers = iter([])

    def answer(messages):
        try:
            return next(answers)
        except StopIteration:
            return judge_answers(messages)

    with OpenAIServer(answer=answer) as server:
        answers = iter(["I refuse to grade this."])  # the first judgement is unusable
        options = EvalOptions(run=tiny_run, lang="fi", samples=2, limit=3, max_bytes=40, judge_model="judge",
                              base_url=server.url, judge_repeats=2, name="judged")
        evaluate(options, Console(quiet=True))
        requests = len(server.requests)
    out = tiny_run / "eval" / "judged"
    frame = pd.read_parquet(out / "completions.parquet")
    assert len(frame) == 3 * 2 * 2 == requests  # beginnings x samples x judge repeats
    assert frame["judge_parsed"].sum() == 11 and frame.loc[~frame["judge_parsed"], "judge_grammar"].isna().all()
    assert "refuse" in frame.loc[~frame["judge_parsed"], "judge_raw"].iloc[0]
    summary = json.loads((out / "summary.json").read_text())
    # n counts completions: the two repeats of each are averaged first (the unusable one is not counted)
    assert summary["metrics"]["judge_grammar"]["mean"] == 6 and summary["metrics"]["judge_grammar"]["n"] == 6
    assert summary["judge"]["unparsed"] == 1 and summary["judge"]["age_groups"] == {"B": 11}
    assert summary["judge"]["repeat_sd"]["grammar"] == 0  # the test judge always says 6
    # --limit 3: the held-out bits and validation bits are on 3 beginnings and 3 stories too
    assert summary["held_out"]["stories"] == 3 and summary["held_out"]["bits_per_byte"] > 0
    assert summary["limit"] == 3 and summary["validation"]["stories"] == 3 and summary["validation"]["bits_per_byte"] > 0
    for name in ("vocabulary_adherence", "dictionary_coverage", "language_ok", "words", "repetition"):
        assert name in summary["metrics"]
    report = (out / "report.md").read_text()
    assert "judge: grammar" in report and "95% interval" in report and "Example completions" in report
    # Re-running costs nothing: every judge answer comes from the cache.
    with OpenAIServer(answer=judge_answers) as server:
        again = evaluate(EvalOptions(run=tiny_run, lang="fi", samples=2, limit=3, max_bytes=40, judge_model="judge",
                                     base_url=server.url, judge_repeats=2, name="judged"), Console(quiet=True))
        assert server.requests == []
    assert again.summary["judge"]["usage"]["cache_hits"] == 12


def test_judge_repeats_are_averaged_per_completion_at_a_nonzero_temperature(tiny_run, monkeypatch):
    """Three repeats of 2 x 2 completions are 4 samples, not 12: the interval is taken over each
    completion's mean; the judge samples at temperature 1 (at 0 its repeats would be copies); the
    report shows one example per beginning."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    grades = iter([2, 9, 4, 7, 5, 6, 3, 8, 5, 5, 10, 1] * 2)

    def answer(messages):
        return json.dumps({"grammar": next(grades), "creativity": 4, "consistency": 5, "plot": 3, "age_group": "B"})

    with OpenAIServer(answer=answer) as server:
        result = evaluate(EvalOptions(run=tiny_run, lang="fi", samples=2, limit=2, max_bytes=30, judge_model="judge",
                                      base_url=server.url, judge_repeats=3, name="repeats"), Console(quiet=True))
        temperatures = {body["temperature"] for body in server.requests}
    assert temperatures == {1.0}
    frame = pd.read_parquet(result.out / "completions.parquet")
    assert len(frame) == 12
    per_completion = frame.groupby(["beginning_id", "sample"])["judge_grammar"].mean()
    mean, low, high = mean_ci(per_completion.tolist(), (1.0, 10.0))
    grammar = result.summary["metrics"]["judge_grammar"]
    assert grammar["n"] == 4 and grammar["mean"] == pytest.approx(mean)
    assert grammar["ci95"] == pytest.approx([low, high])
    spread = frame.groupby(["beginning_id", "sample"])["judge_grammar"].std().mean()
    assert result.summary["judge"]["repeat_sd"]["grammar"] == pytest.approx(spread) and spread > 0
    assert result.summary["judge"]["temperature"] == 1.0 and result.summary["judge"]["repeats"] == 3
    report = (result.out / "report.md").read_text()
    examples = report.split("## Example completions")[1]
    assert examples.count("**ts-01**") == 1 and examples.count("**ts-02**") == 1
    first = per_completion[("ts-01", 0)]
    assert f"grammar {first:.3g}," in examples  # the mean of its three repeats
    assert "n counts completions" in report


def test_evaluate_without_a_judge_gives_automatic_metrics(tiny_run, monkeypatch):
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "TINYLANG_JUDGE_MODEL"):
        monkeypatch.delenv(name, raising=False)
    result = CliRunner().invoke(app, ["evaluate", str(tiny_run), "--lang", "fi", "--samples", "2", "--limit", "2",
                                      "--max-bytes", "30", "--name", "auto"])
    assert result.exit_code == 0, result.output
    output = " ".join(result.output.split())
    assert "judge scores skipped" in output and "Report:" in output
    for bar in ("completions", "held-out bits", "validation bits"):  # no long silent passes
        assert f"{bar} ━" in result.stdout
    summary = json.loads((tiny_run / "eval" / "auto" / "summary.json").read_text())
    assert summary["judge"] is None and "judge_grammar" not in summary["metrics"]
    assert "skipped" in (tiny_run / "eval" / "auto" / "report.md").read_text()


def test_an_export_is_evaluated_and_says_why_validation_bits_are_missing(tiny_run, tmp_path, monkeypatch):
    from tinylang.export import export_run

    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    exported = export_run(tiny_run, tmp_path / "export")
    result = CliRunner().invoke(app, ["evaluate", str(exported), "--lang", "fi", "--samples", "1", "--limit", "1",
                                      "--max-bytes", "20", "--name", "x"])
    assert result.exit_code == 0, result.output
    assert "validation bits per byte skipped: an export carries no training corpus" in " ".join(result.output.split())
    summary = json.loads((exported / "eval" / "x" / "summary.json").read_text())
    assert summary["validation"] is None and summary["held_out"]["bits_per_byte"] > 0


def test_same_seed_same_completions(tiny_run):
    first = evaluate(EvalOptions(run=tiny_run, lang="fi", samples=2, limit=2, max_bytes=30, name="a"), Console(quiet=True))
    second = evaluate(EvalOptions(run=tiny_run, lang="fi", samples=2, limit=2, max_bytes=30, name="b"), Console(quiet=True))
    a = pd.read_parquet(first.out / "completions.parquet")["completion"].tolist()
    b = pd.read_parquet(second.out / "completions.parquet")["completion"].tolist()
    assert a == b and len(a) == 4


def test_metric_helpers():
    mean, low, high = mean_ci([4, 6, 8])
    assert mean == 6 and low < 6 < high and mean_ci([5]) == (5, None, None) and mean_ci([]) == (None, None, None)
    assert mean_ci([1, 1, 1, 0], bounds=(0, 1))[2] == 1
    assert distinct_n(["a b a b"], 1) == 0.5 and distinct_n(["a b c"], 2) == 1.0 and distinct_n([""], 2) == 0.0


def test_compare_two_tiny_runs_in_different_languages(tiny_run, tmp_path, monkeypatch):
    import shutil

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    english = tmp_path / "en-run"
    shutil.copytree(tiny_run, english, ignore=shutil.ignore_patterns("eval"))
    with OpenAIServer(answer=judge_answers) as server:
        for run, lang in ((tiny_run, "fi"), (english, "en")):
            evaluate(EvalOptions(run=run, lang=lang, samples=2, limit=2, max_bytes=30, judge_model="judge",
                                 base_url=server.url, name="cmp"), Console(quiet=True))
    out = tmp_path / "compare"
    result = CliRunner().invoke(app, ["compare", str(tiny_run), str(english), "--out", str(out), "--name", "cmp"])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out / "comparison.csv")
    assert list(table["lang"]) == ["fi", "en"] and (table["judge_grammar"] == 6).all()
    assert table["parameters"].iloc[0] > 0 and table["training_bytes"].iloc[0] > 0
    page = (out / "comparison.md").read_text()
    assert "bits per story" in page and "judge's skill in each language" in page and "[" in page
    assert (out / "judge_scores.png").stat().st_size > 1000 and (out / "bpb_vs_bytes.png").stat().st_size > 1000
    missing = CliRunner().invoke(app, ["compare", str(tmp_path), "--out", str(out)])
    assert missing.exit_code == 1 and "run `tinylang evaluate" in " ".join(missing.output.split())


def test_instruct_evaluation_requests_words_and_grades_instruction_following(tiny_run, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    prompts = []

    def answer(messages):
        prompts.append(messages[-1]["content"])
        return json.dumps({"grammar": 6, "creativity": 4, "consistency": 5, "plot": 3, "instruction_following": 2,
                           "age_group": "A"})

    with OpenAIServer(answer=answer) as server:
        result = evaluate(EvalOptions(run=tiny_run, lang="fi", samples=2, limit=2, max_bytes=30, judge_model="judge",
                                      base_url=server.url, name="instruct", instruct=True), Console(quiet=True))
    frame = pd.read_parquet(result.out / "completions.parquet")
    assert all(p.count("<instructions>") == 2 and "Sanat:" in p for p in prompts)  # the rules mention the fence too
    assert frame["instructions"].str.contains("Sanat:").all() and frame["requested_words"].map(len).eq(3).all()
    summary = result.summary
    assert summary["instruct"] and summary["metrics"]["judge_instruction_following"]["mean"] == 2
    assert 0 <= summary["metrics"]["requested_words_used"]["mean"] <= 1
    assert summary["requested_words_from"] == "pack vocabulary"  # a .txt corpus: not the grammar's


def test_instruct_requests_follow_the_grammar_lexicon_for_grammar_corpora(tmp_path):
    from tinylang.corpus.plan import grammar_words
    from tinylang.evaluate.run import instruct_requests, request_words_source
    from tinylang.langpack import load_pack
    from tinylang.recipe import recipe_from_dict

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "stats.json").write_text(json.dumps({"lang": "fi", "corpus": {"sources": {"grammar": 100}}}))
    recipe = recipe_from_dict({"data": {"path": str(corpus)}, "model": {}, "output": {"dir": str(tmp_path / "r")}})
    assert request_words_source(recipe) == "grammar"
    pack = load_pack("fi")
    lexicon = {w for words in grammar_words(pack).values() for w in words}
    assert all(set(words) <= lexicon for words, _ in instruct_requests(pack, 30, 0, "grammar"))
    (corpus / "stats.json").write_text(json.dumps({"lang": "fi", "corpus": {"sources": {"grammar": 5, "llm": 5}}}))
    assert request_words_source(recipe) == "pack"


def test_requested_words_are_counted_after_lemmatisation():
    from tinylang.evaluate.metrics import CompletionMetrics
    from tinylang.langpack import load_pack

    rows = CompletionMetrics(load_pack("fi")).measure(["Koirat hyppäsivät pihalla koko päivän."],
                                                     [["koira", "hypätä", "sininen"]])
    assert rows[0]["requested_words_used"] == 2 / 3


def test_an_empty_completion_scores_zero_and_sizes_count_generated_bytes():
    from tinylang.evaluate.metrics import CompletionMetrics
    from tinylang.evaluate.run import completion_text
    from tinylang.langpack import load_pack

    empty, story = CompletionMetrics(load_pack("fi")).measure(["", "Koira leikki pihalla."], sizes=[0, 22])
    assert empty["dictionary_coverage"] == empty["vocabulary_adherence"] == 0.0 and empty["bytes"] == 0
    assert story["vocabulary_adherence"] > 0.5 and story["bytes"] == 22
    ä = "ä".encode()
    assert completion_text(b"A" + ä + ä[:1]) == "Aä"  # cut short by the budget: dropped
    assert completion_text(b"A\xffB") == "A\ufffdB"  # a bad byte: kept visible


def test_request_gain_sees_a_model_that_follows_requests(tmp_path):
    """Stories that just repeat their requested words (and end with a line of dialogue when asked):
    after training, a story costs fewer bits after its own words, and after its own features, than
    after another story's; before training it does not."""
    import random

    import yaml

    from tests.conftest import recipe_dict, tiny_config, write_txt
    from tinylang.evaluate.metrics import request_gain
    from tinylang.langpack import load_pack
    from tinylang.model import Megabyte

    pack = load_pack("fi")
    rng = random.Random(0)
    vocabulary = "kissa koira pupu karhu orava lumi sauna pallo puuro järvi".split()

    def story() -> tuple[list[str], list[str], str]:
        words, dialogue = rng.sample(vocabulary, 3), rng.random() < 0.5
        return words, ["dialogue"] if dialogue else [], " ".join(words * 2) + (". ”Hei!” sanoi äiti." if dialogue else ".")

    train_set = [story() for _ in range(400)]
    held_out = [story() for _ in range(40)]
    corpus = write_txt(tmp_path / "instruct.txt", [pack.instruct_text(*s) for s in train_set])
    raw = recipe_dict(corpus, tmp_path / "run", tmp_path / "cache")
    raw["model"] = tiny_config(context_bytes=96).model_dump()
    raw["train"] |= {"max_steps": 300, "batch_size": 16, "checkpoint_every": 300}
    raw["eval"] |= {"every_steps": 300, "samples": 0}
    raw["data"]["windows"] = "story"
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(raw))
    trained = train(load_recipe(tmp_path / "r.yaml"), console=Console(quiet=True))
    from tinylang.checkpoint import load_model

    model, _ = load_model(trained.run_dir)
    after = request_gain(model, pack, held_out)
    torch.manual_seed(0)
    before = request_gain(Megabyte(tiny_config(context_bytes=96)).eval(), pack, held_out)
    words = after["words"]
    assert after["stories"] == 40 and words["n"] == 40
    assert words["gain_bits_per_story"] > before["words"]["gain_bits_per_story"] + 2 and words["ci95"][0] > 0
    features = after["features"]  # half the stories ask for dialogue and end with a line of it
    assert 0 < features["n"] < 40 and features["ci95"][0] > 0


def test_word_guidance_is_an_evaluation_setting_that_raises_words_used(tiny_run, tmp_path):
    """The same instruct evaluation with the model alone and with strong guidance: guidance shows in
    the summary, the report and compare's warnings, and the guided completions use more words."""
    from tinylang.evaluate.compare import setting_warnings

    def run(guidance: float):
        return evaluate(EvalOptions(run=tiny_run, lang="fi", samples=2, limit=3, max_bytes=160, instruct=True,
                                    guidance=guidance, name=f"guided-{guidance:g}"), Console(quiet=True)).summary

    alone, guided = run(0.0), run(20.0)
    assert alone["guidance"] == 0.0 and guided["guidance"] == 20.0
    used = [s["metrics"]["requested_words_used"]["mean"] for s in (alone, guided)]
    assert used[1] >= 0.5 and used[1] > used[0], used
    report = (tiny_run / "eval" / "guided-20" / "report.md").read_text(encoding="utf-8")
    assert "Word guidance 20" in report
    warnings = setting_warnings([Path("alone"), Path("guided")], [alone, guided])
    assert any("word guidance" in line for line in warnings)
