"""``tinylang filter`` as a user meets it: every input row accounted for, inputs read for what they
are, and one clear line (never a traceback, never an overwrite) for a wrong path."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from tinylang.cli import app
from tinylang.filters.run import FilterOutputError, read_input, run_pipeline
from tinylang.langpack import load_pack
from tinylang.records import read_parquet

from .test_filters import FI

runner = CliRunner()


def filter_cli(*args: str):
    result = runner.invoke(app, ["filter", *args])
    return result, " ".join(result.output.split())


def fails_cleanly(result) -> bool:
    return result.exit_code == 1 and (result.exception is None or isinstance(result.exception, SystemExit))


@pytest.fixture
def rows_file(tmp_path):
    """Six stories, one empty, one null, one blank: nine rows."""
    rows = [{"id": f"s{i}", "text": FI.replace("Aino", name)} for i, name in enumerate(("Aino", "Eino", "Mirri", "Lumi",
                                                                                        "Pekka", "Oona"))]
    rows += [{"id": "empty", "text": ""}, {"id": "null", "text": None}, {"id": "blank", "text": "  \n "}]
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def kept_ids(out) -> list[str]:
    return [r.id for split in ("train", "validation") for r in read_parquet(out / f"{split}.parquet")]


def rejected(out) -> list[dict]:
    return [json.loads(line) for line in (out / "rejected.jsonl").read_text(encoding="utf-8").splitlines()]


def test_every_row_is_kept_or_rejected_with_a_reason_empty_ones_included(rows_file, tmp_path):
    out = tmp_path / "clean"
    result, text = filter_cli(str(rows_file), "--lang", "fi", "--out", str(out))
    assert result.exit_code == 0, result.output
    drops = {r["id"]: (r["filter"], r["reason"]) for r in rejected(out)}
    assert {"empty", "null", "blank"} <= drops.keys() and drops["empty"] == ("normalise", "empty")
    assert len(kept_ids(out)) + len(drops) == 9
    stats = json.loads((out / "stats.json").read_text())
    assert stats["seen"] == 9 and stats["kept"] + stats["dropped"] == 9 and "9/9" in text


def test_plain_rows_with_lang_and_source_fields_are_not_taken_for_story_records(tmp_path):
    path = tmp_path / "scraped.jsonl"
    path.write_text(json.dumps({"id": "a", "text": FI, "lang": "fi", "source": "my-scrape", "url": "x"}) + "\n")
    assert [r.text for r in read_input(path, "fi")] == [FI]
    result, _ = filter_cli(str(path), "--lang", "fi", "--out", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    assert kept_ids(tmp_path / "out") == ["a"]


@pytest.mark.parametrize("name, message", [
    ("src/nope.jsonl", "no such file"),
    ("recipe.yaml", "unsupported file type .yaml (expected"),
])
def test_a_wrong_input_is_one_line_and_writes_nothing(tmp_path, monkeypatch, name, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "recipe.yaml").write_text("model: {}\n")
    result, text = filter_cli(name, "--lang", "fi", "--out", "out/x")
    assert fails_cleanly(result) and message in text and name in text
    assert not (tmp_path / "out").exists()


def test_an_out_that_is_a_file_or_holds_other_data_is_refused(rows_file, tmp_path):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine")
    result, text = filter_cli(str(rows_file), "--lang", "fi", "--out", str(a_file))
    assert fails_cleanly(result) and "is a file, not a folder" in text and a_file.read_text() == "mine"
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "train.parquet").write_bytes(b"their corpus")
    result, text = filter_cli(str(rows_file), "--lang", "fi", "--out", str(theirs))
    assert fails_cleanly(result) and "did not write (train.parquet)" in text
    assert (theirs / "train.parquet").read_bytes() == b"their corpus" and not (theirs / "rejected.jsonl").exists()


def test_rerunning_into_its_own_output_works_but_never_over_its_input(rows_file, tmp_path):
    out = tmp_path / "clean"
    pack = load_pack("fi")
    first = run_pipeline(pack, read_input(rows_file, "fi"), out, None)
    (out / "stats.json").write_text(json.dumps(first.as_dict()))  # as the CLI does
    again = run_pipeline(pack, read_input(rows_file, "fi"), out, None)
    assert again.seen == first.seen == 9
    with pytest.raises(FilterOutputError, match="holds the input"):
        run_pipeline(pack, read_input(out / "rejected.jsonl", "fi"), out, None)
    assert len(rejected(out)) == 9 - again.kept


def test_a_build_corpus_folder_is_not_an_output(rows_file, tmp_path):
    from tinylang.corpus.build import BuildOptions, build_corpus

    corpus = tmp_path / "corpus"
    build_corpus(BuildOptions(lang="fi", n=5, out=corpus, filter=False))
    before = (corpus / "stats.json").read_text()
    result, text = filter_cli(str(rows_file), "--lang", "fi", "--out", str(corpus))
    assert fails_cleanly(result) and "is a build-corpus folder; rerun build-corpus there" in text
    result, text = filter_cli(str(corpus), "--lang", "fi", "--out", str(corpus))
    assert fails_cleanly(result) and "holds the input" in text
    result, text = filter_cli(str(tmp_path / "corpus" / "raw" / "shard-00000.jsonl"), "--lang", "fi", "--out", str(corpus))
    assert fails_cleanly(result) and "holds the input" in text and (corpus / "stats.json").read_text() == before


def test_an_out_inside_the_input_folder_is_refused(tmp_path):
    """Its output would be read back as input (a rejected.jsonl growing without end)."""
    from tests.conftest import write_txt

    folder = tmp_path / "stories"
    folder.mkdir()
    write_txt(folder / "train.txt", [FI, FI.replace("Aino", "Eino")])
    result, text = filter_cli(str(folder), "--lang", "fi", "--out", str(folder / "clean"))
    assert fails_cleanly(result) and "is inside the input folder" in text and not (folder / "clean").exists()


def test_filtering_an_instruct_folder_made_from_a_plain_one_keeps_the_instruct_column(tmp_path):
    from tinylang.corpus.build import BuildOptions, build_corpus

    corpus = tmp_path / "corpus"
    build_corpus(BuildOptions(lang="fi", n=6, out=corpus, filter=False))
    build_corpus(BuildOptions(lang="fi", n=6, out=corpus, format="instruct", filter=False))
    out = tmp_path / "clean"
    stats = run_pipeline(load_pack("fi"), read_input(corpus, "fi"), out, None)
    kept = [r for split in ("train", "validation") for r in read_parquet(out / f"{split}.parquet")]
    assert stats.kept == len(kept) > 0
    assert all(r.instruct and r.instruct.startswith(("Sanat: ", "Piirteet: ")) and r.instruct.endswith(r.text)
               for r in kept)
