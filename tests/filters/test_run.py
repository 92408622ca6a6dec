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


def test_a_folder_with_a_raw_subfolder_is_read_for_its_splits(tmp_path):
    """Only build-corpus's own folders are read by their raw shards: a user's raw/ of scraped pages is not one."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = tmp_path / "userdata2"
    (folder / "raw").mkdir(parents=True)
    (folder / "raw" / "scrape.html").write_text("<html></html>")
    stories = [FI.replace("Aino", f"Aino{i}") for i in range(30)]
    pq.write_table(pa.table({"text": stories[:27]}), folder / "train.parquet")
    pq.write_table(pa.table({"text": stories[27:]}), folder / "validation.parquet")
    result, text = filter_cli(str(folder), "--lang", "fi", "--out", str(tmp_path / "fu1"))
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "fu1" / "stats.json").read_text())["seen"] == 30 and "of 30 stories" in text


@pytest.mark.parametrize("make_input", ["empty_jsonl", "build_folder_without_stories"])
def test_an_input_without_stories_is_an_error_not_kept_0_of_0(tmp_path, make_input):
    from tinylang.corpus.store import CorpusStore

    if make_input == "empty_jsonl":
        source = tmp_path / "empty.jsonl"
        source.write_text("")
    else:
        source = tmp_path / "corpus"
        CorpusStore(source).close()  # a first build stopped before its first story
    out = tmp_path / "out"
    result, text = filter_cli(str(source), "--lang", "fi", "--out", str(out))
    assert fails_cleanly(result) and "holds no stories to filter" in text and str(source) in text, result.output
    assert not out.exists()


def mixed_encoding_stories(path, valid: int = 30):
    """``valid`` UTF-8 stories (more than one read buffer, so the run is under way when it fails), then
    one written as Latin-1, whose ö (column 24) is byte 0xf6, on line ``2 * valid + 1``."""
    stories = "".join(f"{FI.replace('Aino', f'Aino{i}')}\n<|endoftext|>\n" for i in range(valid)).encode("utf-8")
    path.write_bytes(stories + f"{FI}\n<|endoftext|>\n".encode("latin-1"))
    return path


def test_an_input_that_is_not_utf8_names_the_file_and_line_and_leaves_nothing_behind(rows_file, tmp_path):
    source = mixed_encoding_stories(tmp_path / "en_latin1.txt")
    assert source.stat().st_size > 8192
    out = tmp_path / "fo4"
    result, text = filter_cli(str(source), "--lang", "fi", "--out", str(out))
    assert fails_cleanly(result) and f"{source}:61: not UTF-8 text (byte 0xf6 at column 24)" in text, result.output
    assert not out.exists()
    # Into an earlier output: that output stays as it was, with no temporary files beside it.
    assert filter_cli(str(rows_file), "--lang", "fi", "--out", str(out))[0].exit_code == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    result, text = filter_cli(str(source), "--lang", "fi", "--out", str(out))
    assert fails_cleanly(result) and "en_latin1.txt:61" in text
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_a_jsonl_that_is_not_utf8_names_its_line(tmp_path):
    source = tmp_path / "rows.jsonl"
    lines = [json.dumps({"id": f"s{i}", "text": FI}, ensure_ascii=False) for i in range(3)]
    lines.append(json.dumps({"id": "s3", "text": FI.replace("Aino", "François")}, ensure_ascii=False))
    source.write_bytes(("\n".join(lines) + "\n").encode("latin-1"))
    result, text = filter_cli(str(source), "--lang", "fi", "--out", str(tmp_path / "out"))
    assert fails_cleanly(result) and f"{source}:1: not UTF-8 text" in text, result.output


def test_an_interrupted_run_leaves_the_earlier_output_whole(rows_file, tmp_path, monkeypatch):
    import tinylang.filters.run as run

    out = tmp_path / "clean"
    assert filter_cli(str(rows_file), "--lang", "fi", "--out", str(out))[0].exit_code == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def stop(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(run, "write_split_parquets", stop)
    result, text = filter_cli(str(rows_file), "--lang", "fi", "--out", str(out))
    assert result.exit_code == 130 and "nothing in" in text and "was replaced" in text
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
