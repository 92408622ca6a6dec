"""tinylang compare on summaries written by hand: bad input is a one-line error naming the file,
different evaluation settings are warned about and shown, and intervals are numeric CSV columns."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from tinylang.cli import app
from typer.testing import CliRunner


def summary(**changes) -> dict:
    base = {
        "run": "x", "name": "default", "lang": "fi", "beginnings": 44, "completions": 132, "samples": 3,
        "temperature": 1.0, "max_bytes": 400, "seed": 0, "limit": None, "instruct": False,
        "metrics": {"judge_grammar": {"mean": 3.0, "ci95": [1.106, 4.894], "n": 132},
                    **{f"judge_{name}": {"mean": 5.0, "ci95": [4.0, 6.0], "n": 132}
                       for name in ("creativity", "consistency", "plot")},
                    "words": {"mean": 40.0, "ci95": [38.5, 41.5], "n": 132},
                    "repetition": {"mean": 0.0, "ci95": [None, None], "n": 1}},
        "distinct": {"distinct_1": 0.5},
        "held_out": {"stories": 44, "bits_per_byte": 2.3, "bits_per_char": 2.5, "bits_per_story": 640.0,
                     "bits_by_id": {"ts-01": 600.0, "ts-02": 680.0}},
        "validation": {"stories": 200, "bits_per_byte": 1.7, "bits_per_char": 1.8, "bits_per_story": 900.0},
        "judge": {"model": "gpt-4o-mini"}, "parameters": 2216451, "training_bytes": 2457600,
    }
    return base | changes


def make_run(folder: Path, content) -> Path:
    path = folder / "eval" / "default" / "summary.json"
    path.parent.mkdir(parents=True)
    path.write_text(content if isinstance(content, str) else json.dumps(content), encoding="utf-8")
    return folder


def compare(*arguments: str):
    return CliRunner().invoke(app, ["compare", *arguments])


def test_intervals_are_numeric_columns_and_settings_are_shown(tmp_path):
    first = make_run(tmp_path / "fi-a", summary())
    second = make_run(tmp_path / "fi-b", summary(samples=10, limit=2, judge=None))
    result = compare(str(first), str(second), "--out", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    table = pd.read_csv(tmp_path / "out" / "comparison.csv")
    assert table["judge_grammar_ci95_low"].tolist()[0] == 1.106 and table["judge_grammar_ci95_high"].tolist()[0] == 4.894
    assert table["judge_grammar_ci95_low"].dtype == float and "judge_grammar_ci95" not in table
    assert table["repetition_ci95_low"].isna().all()  # no interval: empty, not a string
    assert table["samples"].tolist() == [3, 10] and table["judge_model"].fillna("-").tolist() == ["gpt-4o-mini", "-"]
    page = (tmp_path / "out" / "comparison.md").read_text()
    header, _, first_row, second_row = page.splitlines()[:4]
    assert "| samples | max bytes | temperature | limit | judge model |" in header
    assert "| 3 | 400 | 1 | all | gpt-4o-mini |" in first_row and "| 10 | 400 | 1 | 2 | none |" in second_row
    assert "3 [1.11, 4.89]" in first_row
    warnings = result.stderr.strip().splitlines()
    suffix = "; their numbers are not like for like"
    assert warnings == [
        f"warning: the evaluations differ in samples per beginning (--samples): {first} 3, {second} 10{suffix}",
        f"warning: the evaluations differ in beginnings (--limit): {first} all, {second} 2{suffix}",
        f"warning: the evaluations differ in judge model: {first} gpt-4o-mini, {second} none{suffix}",
    ]


def test_the_same_settings_give_no_warning(tmp_path):
    runs = [str(make_run(tmp_path / name, summary())) for name in ("a", "b")]
    result = compare(*runs, "--out", str(tmp_path / "out"))
    assert result.exit_code == 0 and result.stderr == ""


@pytest.mark.parametrize("content,message", [
    ('{"lang": "fi", ', "is not a readable summary (Expecting property name"),
    ("[1, 2]", "has no everything"),
    (summary(held_out={"stories": 44, "bits_per_byte": 2.3, "bits_per_char": 2.5}), "has no held_out.bits_per_story"),
    ({k: v for k, v in summary().items() if k != "metrics"}, "has no metrics"),
])
def test_a_bad_summary_is_one_line_naming_the_file(tmp_path, content, message):
    good = make_run(tmp_path / "good", summary())
    bad = make_run(tmp_path / "bad", content)
    result = compare(str(good), str(bad), "--out", str(tmp_path / "out"))
    assert result.exit_code == 1, result.output
    error = result.stderr.strip()
    assert "\n" not in error and error.startswith(f"error: {bad / 'eval' / 'default' / 'summary.json'} {message}")


def test_out_must_be_a_folder(tmp_path):
    run = make_run(tmp_path / "run", summary())
    (tmp_path / "taken").write_text("not a folder")
    result = compare(str(run), "--out", str(tmp_path / "taken"))
    assert result.exit_code == 1 and result.stderr.strip() == \
        f"error: --out {tmp_path / 'taken'} is a file, not a folder: give a folder for the comparison"
    inside = compare(str(run), "--out", str(tmp_path / "taken" / "sub"))
    assert inside.exit_code == 1 and inside.stderr.startswith(
        f"error: --out {tmp_path / 'taken' / 'sub'}: cannot create the folder ({tmp_path / 'taken'} is a file, not a folder)")
    assert "\n" not in inside.stderr.strip()


def test_a_missing_evaluation_names_the_command_that_makes_it(tmp_path):
    run = make_run(tmp_path / "run", summary())
    named = compare(str(run), "--name", "x1", "--out", str(tmp_path / "out"))
    assert named.exit_code == 1 and f"run `tinylang evaluate {run} --name x1` first" in "".join(named.stderr.split("\n"))
    (tmp_path / "empty").mkdir()
    plain = compare(str(tmp_path / "empty"), "--out", str(tmp_path / "out"))
    assert f"run `tinylang evaluate {tmp_path / 'empty'}` first" in "".join(plain.stderr.split("\n"))
