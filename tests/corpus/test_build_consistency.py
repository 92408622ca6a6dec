"""A build-corpus folder always agrees with itself: the splits, rejected.jsonl and stats.json change
together (also when a rewrite is stopped half-way), --no-filter leaves no stale rejections, and
translations get a validation split of their own."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
from itertools import islice
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from rich.console import Console

import tinylang.corpus.build as build
import tinylang.corpus.store as store
import tinylang.filters.run as filter_run
from tinylang.corpus.build import BuildOptions, build_corpus
from tinylang.corpus.store import record_split_key, validation_ids
from tinylang.records import StagedFiles, StoryRecord, read_parquet
from tinylang.sources import in_validation
from tinylang.testing.openai_server import OpenAIServer

REPO = Path(__file__).resolve().parents[2]
OUTPUTS = ("train.parquet", "validation.parquet", "rejected.jsonl", "stats.json")


@pytest.fixture(autouse=True)
def no_endpoint(monkeypatch):
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_MODEL"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def half_kept_pack(tmp_path) -> Path:
    """The Finnish pack with max_words 130: its grammar stories (86-166 words) are kept or dropped as
    too long about half and half, so a folder has both splits and rejections."""
    pack = tmp_path / "fi-pack"
    shutil.copytree(REPO / "corpora" / "fi", pack)
    spec = (pack / "pack.yaml").read_text(encoding="utf-8")
    assert "max_words: 700" in spec
    (pack / "pack.yaml").write_text(spec.replace("max_words: 700", "max_words: 130"), encoding="utf-8")
    return pack


def quiet() -> Console:
    return Console(file=io.StringIO(), width=200)


def snapshot(out: Path) -> dict[str, bytes]:
    return {name: (out / name).read_bytes() for name in OUTPUTS if (out / name).exists()}


def leftovers(out: Path) -> list[str]:
    return sorted(p.name for p in out.glob("*.tmp"))


def assert_consistent(out: Path) -> dict:
    """stats.json says what the files hold, and no temporary file is left."""
    stats = json.loads((out / "stats.json").read_text())
    rows = {split: pq.ParquetFile(out / f"{split}.parquet").metadata.num_rows for split in ("train", "validation")}
    assert stats["splits"] == rows
    if stats["filter"]:
        rejected = (out / "rejected.jsonl").read_text(encoding="utf-8").splitlines()
        assert len(rejected) == stats["filter"]["dropped"] == stats["filter"]["seen"] - stats["filter"]["kept"]
        assert stats["filter"]["kept"] == sum(rows.values())
    else:
        assert not (out / "rejected.jsonl").exists()
    assert leftovers(out) == []
    return stats


def stop_after(count: int, function):
    """``function`` whose records stop with a KeyboardInterrupt (Ctrl-C) after ``count``."""
    def stopped(*args, **kwargs):
        for number, record in enumerate(function(*args, **kwargs)):
            if number == count:
                raise KeyboardInterrupt
            yield record
    return stopped


def test_a_refilter_stopped_while_filtering_leaves_the_earlier_outputs_whole(half_kept_pack, tmp_path, monkeypatch):
    out = tmp_path / "corpus"
    first = build_corpus(BuildOptions(lang=str(half_kept_pack), n=30, out=out), quiet())
    assert 0 < first.stats["filter"]["kept"] < 30  # both splits and rejections to lose
    before = snapshot(out)
    monkeypatch.setattr(build, "split_records", stop_after(12, build.split_records))
    with pytest.raises(KeyboardInterrupt):
        build_corpus(BuildOptions(lang=str(half_kept_pack), n=30, out=out, format="instruct"), quiet())
    assert snapshot(out) == before and leftovers(out) == []  # kept.jsonl.tmp and the staged files are gone
    monkeypatch.undo()
    for name in ("kept.jsonl.tmp", "train.parquet.tmp", "rejected.jsonl.tmp"):  # as a kill -9 would leave them
        (out / name).write_text("partial")
    again = build_corpus(BuildOptions(lang=str(half_kept_pack), n=30, out=out), quiet())
    assert assert_consistent(out)["filter"] == first.stats["filter"] and again.stats["splits"] == first.stats["splits"]


@pytest.mark.parametrize("filtered,module", [(True, filter_run), (False, store)])
def test_a_rewrite_stopped_while_writing_the_splits_leaves_the_earlier_outputs_whole(half_kept_pack, tmp_path,
                                                                                     monkeypatch, filtered, module):
    out = tmp_path / "corpus"
    build_corpus(BuildOptions(lang=str(half_kept_pack), n=30, out=out, filter=filtered), quiet())
    before = snapshot(out)
    real = module.write_split_parquets

    def write_some_then_stop(directory, records, validation, **options):
        real(directory, islice(records, 3), validation, **options)
        raise KeyboardInterrupt

    monkeypatch.setattr(module, "write_split_parquets", write_some_then_stop)
    with pytest.raises(KeyboardInterrupt):
        build_corpus(BuildOptions(lang=str(half_kept_pack), n=30, out=out, format="instruct", filter=filtered), quiet())
    assert snapshot(out) == before and leftovers(out) == []
    assert json.loads((out / "stats.json").read_text())["splits_fingerprint"]  # the old files are still trusted


def test_a_rewrite_stopped_while_renaming_is_redone_by_the_next_build(half_kept_pack, tmp_path, monkeypatch):
    """Some files renamed into place, others not: the stored fingerprint is gone, so the next build
    filters again instead of trusting a mix of old and new files."""
    out = tmp_path / "corpus"
    build_corpus(BuildOptions(lang=str(half_kept_pack), n=30, out=out), quiet())

    def rename_one_then_stop(self):
        self.path(self.names[0]).replace(self.directory / self.names[0])
        raise KeyboardInterrupt

    monkeypatch.setattr(StagedFiles, "commit", rename_one_then_stop)
    with pytest.raises(KeyboardInterrupt):
        build_corpus(BuildOptions(lang=str(half_kept_pack), n=30, out=out, format="instruct"), quiet())
    assert json.loads((out / "stats.json").read_text())["splits_fingerprint"] is None
    assert leftovers(out) == []
    assert all(r.instruct for r in read_parquet(out / "train.parquet"))  # the new train split, the old others
    monkeypatch.undo()
    build_corpus(BuildOptions(lang=str(half_kept_pack), n=30, out=out), quiet())
    assert_consistent(out)
    assert all(r.instruct is None for split in ("train", "validation") for r in read_parquet(out / f"{split}.parquet"))


def test_no_filter_on_a_filtered_folder_removes_its_rejections_and_says_so(half_kept_pack, tmp_path):
    out = tmp_path / "corpus"
    build_corpus(BuildOptions(lang=str(half_kept_pack), n=30, out=out), quiet())
    assert (out / "rejected.jsonl").read_text().strip()
    output = quiet()
    unfiltered = build_corpus(BuildOptions(lang=str(half_kept_pack), n=30, out=out, filter=False), output)
    assert sum(unfiltered.stats["splits"].values()) == 30 and not (out / "rejected.jsonl").exists()
    assert "removed" in output.file.getvalue() and "rejected.jsonl" in output.file.getvalue()
    assert_consistent(out)


def test_translations_of_a_tinylang_corpus_get_their_own_validation_split(tmp_path):
    """The source is the train split of a tinylang corpus, split by the same id hash: translations
    split by the bare id would all land in train (one validation story, by the fallback)."""
    source = tmp_path / "fi-source"
    build_corpus(BuildOptions(lang="fi", n=200, out=source, filter=False), quiet())
    source_train = json.loads((source / "stats.json").read_text())["splits"]["train"]

    def echo_story(messages: list[dict]) -> str:  # a "translation" the Finnish filters keep: the story itself
        return messages[-1]["content"].split("):\n", 1)[1]

    with OpenAIServer(answer=echo_story) as server:
        for filtered in (False, True):
            out = tmp_path / f"translated-{filtered}"
            result = build_corpus(BuildOptions(lang="fi", mode="translate", source=str(source), n=200, out=out,
                                               model="m", base_url=server.url, filter=filtered, backoff_s=0.01), quiet())
            splits = result.stats["splits"]
            assert sum(splits.values()) >= 0.9 * source_train
            assert 0.02 * source_train <= splits["validation"] <= 0.1 * source_train, splits


def test_generated_corpora_keep_their_splits_and_fingerprint(tiny_pack, tmp_path):
    """Splitting translations by id and language must not move a single generated story, nor make
    existing generated folders rewrite their splits (the fingerprint is the one stored before)."""
    out = tmp_path / "corpus"
    options = BuildOptions(lang=str(tiny_pack), n=200, out=out, filter=False)
    result = build_corpus(options, quiet())
    validation = {r.id for r in read_parquet(out / "validation.parquet")}
    assert validation == {f"fi-0-{i:07d}" for i in range(200) if in_validation(f"fi-0-{i:07d}", 0.05)}
    digest = hashlib.sha256(b"200:0.05:False")
    for shard in sorted((out / "raw").glob("shard-*.jsonl")):
        digest.update(f"{shard.name}:{shard.stat().st_size}".encode())
    for name in ("pack.yaml", "vocabulary.tsv", "function-words.txt", "names.txt"):
        digest.update((tiny_pack / name).read_bytes())
    assert result.stats["splits_fingerprint"] == digest.hexdigest()[:16]


def test_the_filter_splits_translated_records_by_id_and_language():
    ids = [f"train-{i:08d}" for i in range(2000)]
    source_train = [i for i in ids if not in_validation(i, 0.05)]
    records = {i: StoryRecord(id=i, lang="fi", text="x", source="llm", mode="translate") for i in source_train}
    held_out = validation_ids(records, 0.05, lambda i: record_split_key(records[i]))
    assert 0.03 * len(source_train) <= len(held_out) <= 0.07 * len(source_train)
    generated = {i: StoryRecord(id=i, lang="fi", text="x", source="llm") for i in ids}
    assert validation_ids(generated, 0.05, lambda i: record_split_key(generated[i])) == validation_ids(ids, 0.05)
