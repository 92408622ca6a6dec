"""build-corpus end to end: grammar and LLM backends, faults, failures, resume after a kill, Batch API."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tinylang.cli import app
from tinylang.corpus.build import BuildError, BuildOptions, build_corpus
from tinylang.records import read_jsonl, read_parquet
from tinylang.sources import open_source, read_stories


@pytest.fixture(autouse=True)
def no_endpoint(monkeypatch):
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_MODEL"):
        monkeypatch.delenv(name, raising=False)


def corpus_ids(out: Path) -> list[str]:
    return [r.id for split in ("train", "validation") for r in read_parquet(out / f"{split}.parquet")]


def llm_options(tiny_pack, server, out, **overrides) -> BuildOptions:
    values = dict(lang=str(tiny_pack), n=20, out=out, model="test-model", base_url=server.url, backoff_s=0.01,
                  timeout_s=1.0, max_attempts=3, concurrency=4, filter=False)
    return BuildOptions(**(values | overrides))


def test_grammar_build_writes_splits_stats_and_card(tiny_pack, tmp_path):
    out = tmp_path / "corpus"
    result = build_corpus(BuildOptions(lang=str(tiny_pack), n=30, out=out, format="instruct", filter=False))
    assert result.backend == "grammar"
    ids = corpus_ids(out)
    assert len(ids) == len(set(ids)) == 30
    records = list(read_parquet(out / "train.parquet"))
    assert all(r.source == "grammar" and r.model == "grammar/fi" and r.prompt_version.startswith("grammar-") for r in records)
    assert all(r.instruct.startswith(("Piirteet:", "Sanat:")) and r.instruct.endswith(r.text) for r in records)
    stats = json.loads((out / "stats.json").read_text())
    assert stats["corpus"]["stories"] == 30 and stats["missing"] == 0 and stats["corpus"]["sources"] == {"grammar": 30}
    assert "source: grammar" in (out / "card.md").read_text()
    # The corpus folder is a training source as it is, and loads with datasets.
    assert len(list(read_stories(open_source(out), "train"))) == stats["splits"]["train"]
    import datasets

    loaded = datasets.load_dataset("parquet", data_files={"train": str(out / "train.parquet")}, split="train")
    assert loaded.num_rows == stats["splits"]["train"] and "text" in loaded.column_names


def test_grammar_build_resumes_and_extends_without_rewriting(tiny_pack, tmp_path):
    out = tmp_path / "corpus"
    build_corpus(BuildOptions(lang=str(tiny_pack), n=10, out=out, filter=False))
    first = {r.id: r.text for shard in (out / "raw").glob("*.jsonl") for r in read_jsonl(shard)}
    again = build_corpus(BuildOptions(lang=str(tiny_pack), n=10, out=out, filter=False))
    assert again.stats["last_run"]["written"] == 0
    more = build_corpus(BuildOptions(lang=str(tiny_pack), n=25, out=out, filter=False))
    assert more.stats["last_run"]["written"] == 15 and len(corpus_ids(out)) == 25
    after = {r.id: r.text for shard in (out / "raw").glob("*.jsonl") for r in read_jsonl(shard)}
    assert {k: after[k] for k in first} == first


def test_llm_build_survives_faults_and_records_provenance(tiny_pack, tmp_path, llm_server):
    llm_server.faults.extend(["429", "500", "drop", "empty"])
    out = tmp_path / "corpus"
    result = build_corpus(llm_options(tiny_pack, llm_server, out, format="instruct"))
    assert result.backend == "llm" and len(corpus_ids(out)) == 20 and result.stats["missing"] == 0
    llm = result.stats["last_run"]["llm"]
    assert llm["requests"] == 20 and sum(llm["retries_by_kind"].values()) == 4
    record = next(read_parquet(out / "train.parquet"))
    assert record.source == "llm" and record.model == "test-model" and record.prompt_version == "fi-v1"
    assert record.params["temperature"] == 1.0 and record.usage["completion_tokens"] > 0
    for word in record.words.values():
        assert word in record.text  # the test server echoes the quoted words of the prompt
    assert "api_key" not in (out / "stats.json").read_text()
    # Everything is cached: a fresh folder with the same cache sends nothing.
    again = build_corpus(llm_options(tiny_pack, llm_server, tmp_path / "again", cache=out / "llm-cache.sqlite"))
    assert again.stats["last_run"]["llm"]["cache_hits"] == 20 and again.stats["last_run"]["llm"]["requests"] == 0


def test_failed_requests_are_recorded_and_retried_next_run(tiny_pack, tmp_path, llm_server):
    out = tmp_path / "corpus"
    llm_server.faults.append("500")
    result = build_corpus(llm_options(tiny_pack, llm_server, out, max_attempts=1))
    assert result.stats["missing"] == 1 and result.stats["failed_pending_retry"] == 1
    failure = json.loads((out / "failures.jsonl").read_text().splitlines()[0])
    assert failure["kind"] == "server_error" and failure["attempts"] == 1
    sent_before = len(llm_server.requests)
    retried = build_corpus(llm_options(tiny_pack, llm_server, out))
    assert retried.stats["missing"] == 0 and len(corpus_ids(out)) == 20
    assert len(llm_server.requests) == sent_before + 1


def test_bad_key_stops_the_build_with_a_clear_message(tiny_pack, tmp_path, llm_server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-do-not-print")
    llm_server.api_key = "sk-the-right-one"
    result = CliRunner().invoke(app, ["build-corpus", "--lang", str(tiny_pack), "--n", "5", "--out", str(tmp_path / "c"),
                                      "--base-url", llm_server.url, "--model", "test-model"])
    assert result.exit_code == 1
    assert "refused the API key" in result.output and "sk-do-not-print" not in result.output
    assert len(llm_server.requests) == 0 or len(llm_server.completed) == 0


def test_dry_run_sends_nothing_and_estimates_cost(tiny_pack, tmp_path, llm_server):
    result = CliRunner().invoke(app, ["build-corpus", "--lang", str(tiny_pack), "--n", "50", "--out", str(tmp_path / "c"),
                                      "--base-url", llm_server.url, "--model", "gpt-4o-mini", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "50 requests to send" in result.output and "estimated cost $" in result.output
    assert llm_server.requests == [] and not (tmp_path / "c").exists()


def test_translation_keeps_source_ids(tiny_pack, tmp_path, llm_server):
    source = tmp_path / "english.jsonl"
    rows = [{"id": f"story-{i}", "text": f"Tom had a dog number {i}."} for i in range(6)]
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "translated"
    build_corpus(llm_options(tiny_pack, llm_server, out, mode="translate", source=str(source), n=4))
    records = {r.id: r for split in ("train", "validation") for r in read_parquet(out / f"{split}.parquet")}
    assert sorted(records) == [f"story-{i}" for i in range(4)]
    assert all(r.source_id == r.id and r.mode == "translate" and r.source_dataset == str(source) for r in records.values())
    prompts = [body["messages"][0]["content"] for body in llm_server.completed]
    assert any("Tom had a dog number 0." in p and "suomeksi" in p and "(English)" in p for p in prompts)
    with pytest.raises(BuildError, match="translation needs an LLM"):
        build_corpus(BuildOptions(lang=str(tiny_pack), mode="translate", source=str(source), backend="grammar", out=out, filter=False))


def test_batch_api_submits_once_and_resumes_polling(tiny_pack, tmp_path, llm_server, monkeypatch):
    out = tmp_path / "batched"
    llm_server.batch_polls_until_done = 3
    import tinylang.corpus.batch as batch

    def interrupt(_seconds):
        raise KeyboardInterrupt

    monkeypatch.setattr(batch.time, "sleep", interrupt)
    with pytest.raises(KeyboardInterrupt):
        build_corpus(llm_options(tiny_pack, llm_server, out, batch_api=True, n=12))
    state = json.loads((out / "batches.json").read_text())
    assert len(state) == 1 and len(state[0]["request_ids"]) == 12 and not state[0]["collected"]
    monkeypatch.setattr(batch.time, "sleep", lambda _seconds: None)
    result = build_corpus(llm_options(tiny_pack, llm_server, out, batch_api=True, n=12))
    assert len(llm_server.batches) == 1  # polled the batch it had, never submitted a second
    assert len(corpus_ids(out)) == 12 and result.stats["missing"] == 0
    assert json.loads((out / "batches.json").read_text())[0]["collected"]
    # The answers entered the cache: the ordinary path sends nothing for them.
    again = build_corpus(llm_options(tiny_pack, llm_server, tmp_path / "again", n=12, cache=out / "llm-cache.sqlite"))
    assert again.stats["last_run"]["llm"]["cache_hits"] == 12 and again.stats["last_run"]["llm"]["requests"] == 0


def test_killed_build_resumes_to_exactly_n_without_resending_finished_requests(tiny_pack, tmp_path):
    from tinylang.testing.openai_server import OpenAIServer

    out = tmp_path / "corpus"
    command = [sys.executable, "-m", "tinylang", "build-corpus", "--lang", str(tiny_pack), "--n", "60", "--out", str(out),
               "--model", "test-model", "--concurrency", "4", "--no-filter"]
    env = dict(os.environ, OPENAI_API_KEY="test")
    with OpenAIServer(latency_s=0.05) as server:
        process = subprocess.Popen(command + ["--base-url", server.url], env=env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shard = out / "raw" / "shard-00000.jsonl"
        deadline = time.time() + 60
        while time.time() < deadline and (not shard.exists() or shard.read_text().count("\n") < 15):
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
        process.wait()
        written = {r.id for r in read_jsonl(shard)}
        assert 15 <= len(written) < 60
        sent_first = len(server.request_ids)
        result = subprocess.run(command + ["--base-url", server.url], env=env, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        second_run = server.request_ids[sent_first:]
    ids = corpus_ids(out)
    assert len(ids) == len(set(ids)) == 60
    assert not set(second_run) & written  # nothing already written was asked again
    assert len(second_run) == len(set(second_run))
    # Answers that arrived but were not yet written when the process died came from the cache.
    assert len(second_run) + _cache_hits(out) == 60 - len(written)


def _cache_hits(out: Path) -> int:
    return json.loads((out / "stats.json").read_text())["last_run"]["llm"]["cache_hits"]


def test_grammar_and_llm_stories_are_never_mixed_in_one_folder(tiny_pack, tmp_path, llm_server):
    out = tmp_path / "corpus"
    build_corpus(BuildOptions(lang=str(tiny_pack), n=5, out=out, filter=False))
    with pytest.raises(BuildError, match="already holds stories written by grammar"):
        build_corpus(llm_options(tiny_pack, llm_server, out, n=5))
    assert llm_server.requests == []


def test_a_pack_without_grammar_asks_for_an_llm(tiny_pack, tmp_path):
    import shutil

    shutil.rmtree(tiny_pack / "grammar")
    with pytest.raises(BuildError, match="has no story grammar, so it needs an LLM"):
        build_corpus(BuildOptions(lang=str(tiny_pack), n=5, out=tmp_path / "c", filter=False))


def test_build_filters_by_default_and_explains_every_removal(tmp_path, llm_server):
    """The real Finnish pack: grammar stories pass; LLM junk (the test server's English) is dropped."""
    out = tmp_path / "grammar"
    result = build_corpus(BuildOptions(lang="fi", n=40, out=out))
    assert result.stats["filter"]["seen"] == 40 and result.stats["filter"]["kept"] >= 38
    kept = corpus_ids(out)
    assert len(kept) == result.stats["filter"]["kept"]
    record = next(read_parquet(out / "train.parquet"))
    assert "vocabulary_adherence" in record.meta["filters"] and "oov" in record.meta["filters"]
    junk = build_corpus(BuildOptions(lang="fi", n=10, out=tmp_path / "junk", model="m", base_url=llm_server.url,
                                     backoff_s=0.01))
    assert junk.stats["filter"]["kept"] == 0 and corpus_ids(tmp_path / "junk") == []
    rejected = [json.loads(line) for line in (tmp_path / "junk" / "rejected.jsonl").read_text().splitlines()]
    assert len(rejected) == 10 and all(r["filter"] and r["reason"] and r["text"] for r in rejected)
    assert "kept 0 of 10" in (tmp_path / "junk" / "card.md").read_text()
    # from the command line, a build that keeps nothing fails: it is nothing to train on
    cli = CliRunner().invoke(app, ["build-corpus", "--lang", "fi", "--n", "3", "--out", str(tmp_path / "junk2"),
                                   "--model", "m", "--base-url", llm_server.url])
    said = "".join(cli.output.split())  # rich wraps long paths mid-word
    assert cli.exit_code == 1 and "passedthefilters,soitssplitsareempty" in said
    assert "junk2/rejected.jsonl" in said and (tmp_path / "junk2" / "rejected.jsonl").is_file()


def test_an_unchanged_corpus_keeps_its_splits_untouched_and_no_filter_rewrites_them(tmp_path):
    out = tmp_path / "fi"
    build_corpus(BuildOptions(lang="fi", n=30, out=out))
    before = (out / "train.parquet").stat().st_mtime_ns
    again = build_corpus(BuildOptions(lang="fi", n=30, out=out))
    assert (out / "train.parquet").stat().st_mtime_ns == before  # training caches stay valid
    assert again.stats["filter"]["kept"] >= 28
    unfiltered = build_corpus(BuildOptions(lang="fi", n=30, out=out, filter=False))
    assert unfiltered.stats["filter"] is None and sum(unfiltered.stats["splits"].values()) == 30


# --- which folders a build may write into, and reruns with other options ------------------------------------


def test_an_out_that_is_a_file_is_one_clear_line(tiny_pack, tmp_path):
    existing = tmp_path / "notes.txt"
    existing.write_text("mine\n")
    result = CliRunner().invoke(app, ["build-corpus", "--lang", str(tiny_pack), "--n", "5", "--out", str(existing)])
    assert result.exit_code == 1 and "is a file, not a folder" in " ".join(result.output.split())
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert existing.read_text() == "mine\n"


def test_a_folder_of_other_data_is_never_overwritten(tiny_pack, tmp_path):
    out = tmp_path / "someone-elses"
    out.mkdir()
    (out / "train.parquet").write_bytes(b"their corpus")
    (out / "validation.parquet").write_bytes(b"their validation")
    with pytest.raises(BuildError, match="already holds files that build-corpus did not write .*train.parquet"):
        build_corpus(BuildOptions(lang=str(tiny_pack), n=5, out=out, filter=False))
    assert (out / "train.parquet").read_bytes() == b"their corpus" and not (out / "raw").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert build_corpus(BuildOptions(lang=str(tiny_pack), n=5, out=empty, filter=False)).stats["corpus"]["stories"] == 5


def test_format_instruct_on_a_plain_folder_renders_the_instruct_column(tiny_pack, tmp_path):
    out = tmp_path / "corpus"
    build_corpus(BuildOptions(lang=str(tiny_pack), n=12, out=out, filter=False))
    assert all(r.instruct is None for r in read_parquet(out / "train.parquet"))
    upgraded = build_corpus(BuildOptions(lang=str(tiny_pack), n=12, out=out, format="instruct", filter=False))
    assert upgraded.stats["last_run"]["written"] == 0 and upgraded.stats["format"] == "instruct"
    records = [r for split in ("train", "validation") for r in read_parquet(out / f"{split}.parquet")]
    assert len(records) == 12 and all(r.instruct and r.instruct.endswith(r.text) for r in records)
    # An instruct folder stays instruct: a later plain command (the default) keeps and extends the column.
    extended = build_corpus(BuildOptions(lang=str(tiny_pack), n=15, out=out, filter=False))
    assert extended.stats["format"] == "instruct"
    assert all(r.instruct for split in ("train", "validation") for r in read_parquet(out / f"{split}.parquet"))


def test_another_seed_lang_or_a_smaller_n_is_refused_naming_the_folders_value(tiny_pack, tmp_path):
    out = tmp_path / "corpus"
    build_corpus(BuildOptions(lang=str(tiny_pack), n=20, out=out, filter=False))
    splits = {s: (out / f"{s}.parquet").read_bytes() for s in ("train", "validation")}
    with pytest.raises(BuildError, match="built with --seed 0, and this build has --seed 5"):
        build_corpus(BuildOptions(lang=str(tiny_pack), n=20, out=out, seed=5, filter=False))
    with pytest.raises(BuildError, match="built with --seed 0"):
        build_corpus(BuildOptions(lang=str(tiny_pack), n=20, out=out, seed=5, dry_run=True))
    with pytest.raises(BuildError, match="20 planned stories; --n 8 would shrink its splits"):
        build_corpus(BuildOptions(lang=str(tiny_pack), n=8, out=out, filter=False))
    source = tmp_path / "english.jsonl"
    source.write_text("".join(json.dumps({"id": f"s{i}", "text": f"Tom had a dog number {i}."}) + "\n" for i in range(20)))
    with pytest.raises(BuildError, match="built with --mode generate"):
        build_corpus(BuildOptions(lang=str(tiny_pack), n=20, out=out, mode="translate", source=str(source),
                                  backend="llm", model="m", base_url="http://127.0.0.1:9"))
    assert {s: (out / f"{s}.parquet").read_bytes() for s in splits} == splits
    assert sum(1 for shard in (out / "raw").glob("*.jsonl") for _ in read_jsonl(shard)) == 20
    # The message reaches the user as one line.
    result = CliRunner().invoke(app, ["build-corpus", "--lang", str(tiny_pack), "--n", "20", "--out", str(out),
                                      "--seed", "5"])
    assert result.exit_code == 1 and "rerun with --seed 0" in " ".join(result.output.split())


def test_folders_built_before_the_plan_was_stored_are_checked_too(tiny_pack, tmp_path):
    out = tmp_path / "corpus"
    build_corpus(BuildOptions(lang=str(tiny_pack), n=10, out=out, seed=3, filter=False))
    stats = json.loads((out / "stats.json").read_text())
    del stats["plan"]
    (out / "stats.json").write_text(json.dumps(stats))
    with pytest.raises(BuildError, match="built with --seed 3"):
        build_corpus(BuildOptions(lang=str(tiny_pack), n=10, out=out, filter=False))
    (out / "stats.json").unlink()  # a first build cut short: only the raw shards say what it was
    with pytest.raises(BuildError, match="built with --seed 3"):
        build_corpus(BuildOptions(lang=str(tiny_pack), n=10, out=out, filter=False))
    assert build_corpus(BuildOptions(lang=str(tiny_pack), n=10, out=out, seed=3, filter=False)).stats["missing"] == 0


def test_grammar_dry_run_says_it_sends_nothing_and_costs_nothing(tiny_pack, tmp_path):
    result = CliRunner().invoke(app, ["build-corpus", "--lang", str(tiny_pack), "--n", "20", "--out", str(tmp_path / "c"),
                                      "--dry-run"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "story grammar would write 20 stories" in text and "sends no requests and costs nothing" in text
    assert "20 requests" not in text and "no price known" not in text and not (tmp_path / "c").exists()


def test_a_model_without_an_endpoint_is_priced_by_a_dry_run_and_refused_by_a_build(tiny_pack, tmp_path):
    out = tmp_path / "c"
    dry = CliRunner().invoke(app, ["build-corpus", "--lang", str(tiny_pack), "--n", "20", "--out", str(out),
                                   "--model", "gpt-4o-mini", "--dry-run"])
    text = " ".join(dry.output.split())
    assert dry.exit_code == 0 and "Dry run (llm): 20 requests to send" in text and "estimated cost $" in text
    assert "needs OPENAI_API_KEY" in text
    with pytest.raises(BuildError, match="--model gpt-4o-mini needs an endpoint: set OPENAI_API_KEY"):
        build_corpus(BuildOptions(lang=str(tiny_pack), n=5, out=out, model="gpt-4o-mini"))
    assert not out.exists()


def test_one_source_spelt_two_ways_is_the_same_plan(tmp_path):
    from tinylang.corpus.folder import plan_conflict

    stored = {"mode": "translate", "source": "./data/stories.jsonl", "n": 5}
    assert plan_conflict(tmp_path, stored, stored | {"source": "data/stories.jsonl"}) is None
    assert "--source" in plan_conflict(tmp_path, stored, stored | {"source": "data/other.jsonl"})


def test_the_dry_run_estimate_is_capped_by_max_tokens(tiny_pack, tmp_path):
    from tinylang.corpus.build import priced_settings

    def estimate(max_tokens: int) -> dict:
        options = BuildOptions(lang=str(tiny_pack), n=100, out=tmp_path / "c", model="gpt-4o-mini", dry_run=True,
                               max_tokens=max_tokens)
        return build_corpus(options).stats["dry_run"] | {"settings": priced_settings(options)}

    capped = estimate(300)
    assert capped["completion_tokens"] == capped["completion_tokens_max"] == 300 * 100
    assert capped["cost_usd"] == pytest.approx(capped["settings"].cost_usd(capped["prompt_tokens"], 30_000))
    assert estimate(2000)["completion_tokens"] == 600 * 100  # the expected story length, when it fits
    result = CliRunner().invoke(app, ["build-corpus", "--lang", str(tiny_pack), "--n", "100", "--out", str(tmp_path / "c"),
                                      "--model", "gpt-4o-mini", "--dry-run", "--max-tokens", "300"])
    assert "+ 30,000 completion tokens (at most 30,000)" in " ".join(result.output.split())


@pytest.mark.parametrize("flag,value,message", [
    ("--timeout", "-5", "--timeout must be more than 0, not -5"), ("--timeout", "0", "--timeout must be more than 0"),
    ("--poll-interval", "0", "--poll-interval must be more than 0"),
    ("--price-input", "-1", "--price-input must be at least 0"), ("--price-output", "-0.5", "--price-output must be at least 0"),
])
def test_nonsense_numbers_are_refused_in_one_line_before_anything_is_sent(tiny_pack, tmp_path, llm_server, flag, value,
                                                                         message):
    out = tmp_path / "c"
    result = CliRunner().invoke(app, ["build-corpus", "--lang", str(tiny_pack), "--n", "5", "--out", str(out),
                                      "--base-url", llm_server.url, "--model", "test-model", flag, value])
    lines = result.output.strip().splitlines()
    assert result.exit_code == 1 and len(lines) == 1 and lines[0].startswith(f"error: {message}"), result.output
    assert llm_server.requests == [] and not out.exists()


@pytest.mark.parametrize("field,value", [("timeout_s", -5.0), ("max_attempts", 0), ("concurrency", 0),
                                         ("max_tokens", 0), ("n", 0), ("poll_interval_s", 0.0)])
def test_the_library_refuses_the_same_numbers(tiny_pack, tmp_path, llm_server, field, value):
    with pytest.raises(BuildError, match="must be"):
        build_corpus(llm_options(tiny_pack, llm_server, tmp_path / "c", **{field: value}))
    assert llm_server.requests == [] and not (tmp_path / "c").exists()
