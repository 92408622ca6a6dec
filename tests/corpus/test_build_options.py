"""build-corpus refuses, in one line and before anything is sent or written, what it could not do as
asked: options it would ignore, combinations it cannot make, absurd sizes, folders that are not its
own, translate sources whose ids repeat or that are not UTF-8."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from tinylang.cli import app
from tinylang.corpus.build import BuildError, BuildOptions, build_corpus
from tinylang.corpus.options import MAX_STORIES
from tinylang.corpus.store import CorpusStore, is_build_folder
from tinylang.sources import SourceError


@pytest.fixture(autouse=True)
def no_endpoint(monkeypatch):
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_MODEL"):
        monkeypatch.delenv(name, raising=False)


def build_cli(*args: str):
    result = CliRunner().invoke(app, ["build-corpus", *args])
    return result, " ".join(result.output.split())


def refused(result) -> bool:
    """Exit 1 with an error line, no traceback."""
    return result.exit_code == 1 and (result.exception is None or isinstance(result.exception, SystemExit)) \
        and result.output.lstrip().startswith("error:")


def english_source(tmp_path: Path, ids: list[str]) -> Path:
    path = tmp_path / "english.jsonl"
    path.write_text("".join(json.dumps({"id": i, "text": f"Tom had a dog number {n}."}) + "\n" for n, i in enumerate(ids)))
    return path


@pytest.mark.parametrize("extra,message", [
    (["--source", "src/en.txt"], "--source is for --mode translate"),
    (["--source-split", "validation"], "--source-split is for --mode translate"),
    (["--text-column", "story"], "--text-column is for --mode translate"),
    (["--source-lang", "sv"], "--source-lang is for --mode translate"),
])
def test_translate_options_without_mode_translate_are_refused_before_a_paid_generation(tiny_pack, tmp_path,
                                                                                     llm_server, extra, message):
    out = tmp_path / "c"
    result, text = build_cli("--lang", str(tiny_pack), "--n", "5", "--out", str(out), "--base-url", llm_server.url,
                             "--model", "m", *extra)
    assert refused(result) and message in text and "add --mode translate" in text, result.output
    assert llm_server.requests == [] and not out.exists()


@pytest.mark.parametrize("extra,message", [
    (["--batch-api"], "--backend grammar writes stories offline and would ignore --batch-api"),
    (["--model", "gpt-4o-mini"], "would ignore --model"),
    (["--model", "gpt-4o-mini", "--batch-api"], "would ignore --model and --batch-api"),
])
def test_llm_options_with_backend_grammar_are_refused(tiny_pack, tmp_path, extra, message):
    out = tmp_path / "c"
    result, text = build_cli("--lang", str(tiny_pack), "--n", "5", "--out", str(out), "--backend", "grammar", *extra)
    assert refused(result) and message in text, result.output
    assert not out.exists()


def test_batch_api_without_an_llm_is_refused_rather_than_writing_grammar_stories(tiny_pack, tmp_path):
    out = tmp_path / "c"
    result, text = build_cli("--lang", str(tiny_pack), "--n", "5", "--out", str(out), "--batch-api")
    assert refused(result) and "--batch-api needs an LLM" in text and not out.exists()


def test_translate_with_format_instruct_is_refused_before_anything_is_sent(tiny_pack, tmp_path, llm_server):
    source = english_source(tmp_path, [f"s{i}" for i in range(4)])
    out = tmp_path / "c"
    result, text = build_cli("--lang", str(tiny_pack), "--mode", "translate", "--source", str(source), "--n", "4",
                             "--format", "instruct", "--out", str(out), "--base-url", llm_server.url, "--model", "m")
    assert refused(result) and "--format instruct needs --mode generate" in text, result.output
    assert llm_server.requests == [] and not out.exists()


def test_a_translated_folder_recorded_as_instruct_is_written_plain(tiny_pack, tmp_path, llm_server):
    """Older versions accepted --format instruct for translations and recorded it; a rerun corrects the record."""
    source = english_source(tmp_path, [f"s{i}" for i in range(4)])
    out = tmp_path / "c"
    options = BuildOptions(lang=str(tiny_pack), mode="translate", source=str(source), n=4, out=out, model="m",
                           base_url=llm_server.url, filter=False)
    build_corpus(options)
    stats = json.loads((out / "stats.json").read_text())
    stats["format"] = stats["plan"]["format"] = "instruct"
    (out / "stats.json").write_text(json.dumps(stats))
    again = build_corpus(options)
    assert again.stats["format"] == "plain" and "--format instruct" not in (out / "card.md").read_text()


def test_an_absurd_n_is_refused_at_once(tiny_pack, tmp_path):
    result, text = build_cli("--lang", str(tiny_pack), "--n", "100000000000", "--dry-run", "--out", str(tmp_path / "c"))
    assert refused(result) and f"--n must be at most {MAX_STORIES:,}" in text and "100,000,000,000" in text
    with pytest.raises(BuildError, match="--n must be at most"):
        build_corpus(BuildOptions(lang=str(tiny_pack), n=MAX_STORIES + 1, out=tmp_path / "c", dry_run=True))


def test_repeated_ids_in_a_translate_source_are_refused_before_any_request(tiny_pack, tmp_path, llm_server):
    source = english_source(tmp_path, ["a1", "a2", "a1", "a3", "a2"])
    out = tmp_path / "c"
    result, text = build_cli("--lang", str(tiny_pack), "--mode", "translate", "--source", str(source), "--n", "5",
                             "--out", str(out), "--base-url", llm_server.url, "--model", "m", "--no-filter")
    assert refused(result), result.output
    assert str(source) in text and "2 ids appear more than once" in text
    assert "'a1' in rows 1, 3" in text and "'a2' in rows 2, 5" in text
    assert llm_server.requests == [] and not out.exists()
    # Only the stories to translate count: the first two rows are distinct.
    result = build_corpus(BuildOptions(lang=str(tiny_pack), mode="translate", source=str(source), n=2, out=out,
                                       model="m", base_url=llm_server.url, filter=False))
    assert result.stats["corpus"]["stories"] == 2


def test_a_translate_source_that_is_not_utf8_names_the_file_and_line(tiny_pack, tmp_path, llm_server):
    source = tmp_path / "en_latin1.txt"
    stories = [f"Story {i}. Tom had a dog." for i in range(5)] + ["Tom ate a crêpe at the café."]
    source.write_bytes("".join(f"{s}\n<|endoftext|>\n" for s in stories).encode("latin-1"))
    with pytest.raises(SourceError, match=r"en_latin1.txt:11: not UTF-8 text \(byte 0xea"):
        build_corpus(BuildOptions(lang=str(tiny_pack), mode="translate", source=str(source), n=10,
                                  out=tmp_path / "c", model="m", base_url=llm_server.url))
    result, text = build_cli("--lang", str(tiny_pack), "--mode", "translate", "--source", str(source), "--n", "10",
                             "--out", str(tmp_path / "c"), "--base-url", llm_server.url, "--model", "m")
    assert refused(result) and "en_latin1.txt:11: not UTF-8 text" in text
    assert llm_server.requests == [] and not (tmp_path / "c").exists()


def test_a_user_folder_with_a_raw_subfolder_is_not_a_build_corpus_folder(tiny_pack, tmp_path):
    out = tmp_path / "userdata"
    (out / "raw").mkdir(parents=True)
    (out / "raw" / "scrape.html").write_text("x")
    pq.write_table(pa.table({"text": ["their story"]}), out / "train.parquet")
    theirs = (out / "train.parquet").read_bytes()
    assert not is_build_folder(out)
    result, text = build_cli("--lang", str(tiny_pack), "--n", "5", "--out", str(out))
    assert refused(result) and "already holds files that build-corpus did not write" in text
    assert (out / "train.parquet").read_bytes() == theirs and sorted(p.name for p in (out / "raw").iterdir()) == ["scrape.html"]


def test_a_first_build_stopped_before_its_first_story_is_still_its_own_folder(tiny_pack, tmp_path):
    """A wrong key stops the first build before any story is written: the rerun must not be refused."""
    out = tmp_path / "c"
    CorpusStore(out).close()
    (out / "llm-cache.sqlite").write_bytes(b"")
    assert is_build_folder(out)
    assert build_corpus(BuildOptions(lang=str(tiny_pack), n=5, out=out, filter=False)).stats["corpus"]["stories"] == 5


def test_an_empty_source_or_a_split_it_lacks_is_refused_before_any_request(tiny_pack, tmp_path, llm_server):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    args = ("--lang", str(tiny_pack), "--mode", "translate", "--n", "2", "--base-url", llm_server.url, "--model", "m")
    result, text = build_cli(*args, "--source", str(empty), "--out", str(tmp_path / "c1"))
    assert refused(result) and "no stories to translate" in text, result.output
    folder = tmp_path / "src"
    folder.mkdir()
    english_source(folder, ["a", "b"]).rename(folder / "train.jsonl")
    result, text = build_cli(*args, "--source", str(folder), "--source-split", "test", "--out", str(tmp_path / "c2"))
    assert refused(result) and "no test split here (it has: train)" in text, result.output
    assert llm_server.requests == [] and not (tmp_path / "c1").exists() and not (tmp_path / "c2").exists()
