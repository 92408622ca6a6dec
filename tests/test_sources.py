"""Story sources: the TinyStories .txt format, jsonl, parquet, corpus directories, Hugging Face."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import make_stories, write_txt
from tinylang.sources import (
    SourceError, in_validation, iter_source_rows, iter_source_stories, open_source, read_huggingface, read_stories,
)


def test_txt_separator_format(tmp_path):
    path = tmp_path / "s.txt"
    path.write_text("First story.\nSecond line.\n<|endoftext|>\n\n<|endoftext|>\nSecond story.\n")
    source = open_source(path, validation_fraction=0.01)
    stories = list(read_stories(source, "train")) + list(read_stories(source, "validation"))
    assert sorted(stories) == ["First story.\nSecond line.", "Second story."]


def test_holdout_is_deterministic_and_disjoint(tmp_path):
    stories = make_stories(400)
    source = open_source(write_txt(tmp_path / "s.txt", stories), validation_fraction=0.1)
    train, validation = list(read_stories(source, "train")), list(read_stories(source, "validation"))
    assert len(train) + len(validation) == 400
    assert not set(train) & set(validation)
    assert 20 <= len(validation) <= 65
    assert all(in_validation(s, 0.1) for s in validation)


def test_jsonl_and_parquet_files(tmp_path):
    stories = make_stories(50)
    jsonl = tmp_path / "s.jsonl"
    jsonl.write_text("".join(json.dumps({"story": s, "id": i}) + "\n" for i, s in enumerate(stories)))
    parquet = tmp_path / "s.parquet"
    pq.write_table(pa.table({"story": stories}), parquet)
    for path in (jsonl, parquet):
        source = open_source(path, text_column="story", validation_fraction=0.2)
        got = list(read_stories(source, "train")) + list(read_stories(source, "validation"))
        assert sorted(got) == sorted(stories)


def test_missing_column_is_named(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_text(json.dumps({"story": "x"}) + "\n")
    with pytest.raises(SourceError, match="no 'text' field"):
        list(read_stories(open_source(path, validation_fraction=0.5), "train"))


def test_corpus_directory_uses_its_own_splits(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    pq.write_table(pa.table({"text": ["a train story", "another"]}), corpus / "train.parquet")
    (corpus / "validation.jsonl").write_text(json.dumps({"text": "a validation story"}) + "\n")
    source = open_source(corpus)
    assert list(read_stories(source, "train")) == ["a train story", "another"]
    assert list(read_stories(source, "validation")) == ["a validation story"]


def test_corpus_directory_of_shards(tmp_path):
    corpus = tmp_path / "corpus"
    (corpus / "train").mkdir(parents=True)
    for i in range(2):
        pq.write_table(pa.table({"text": [f"story {i}"]}), corpus / "train" / f"part-{i}.parquet")
    pq.write_table(pa.table({"text": ["held out"]}), corpus / "validation-0000.parquet")
    source = open_source(corpus)
    assert list(read_stories(source, "train")) == ["story 0", "story 1"]
    assert list(read_stories(source, "validation")) == ["held out"]


def test_unusable_locations(tmp_path):
    with pytest.raises(SourceError, match="no such file"):
        open_source(tmp_path / "missing.txt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="needs train.parquet"):
        open_source(tmp_path / "empty")
    odd = tmp_path / "s.csv"
    odd.write_text("x")
    with pytest.raises(SourceError, match="expected a .txt"):
        open_source(odd)


def test_huggingface_loader_on_local_files(tmp_path):
    """The real datasets.load_dataset path, on a local folder of data files (no hub access here)."""
    folder = tmp_path / "hf"
    folder.mkdir()
    (folder / "train.jsonl").write_text("".join(json.dumps({"text": s}) + "\n" for s in ["yksi", "kaksi"]))
    (folder / "validation.jsonl").write_text(json.dumps({"text": "kolme"}) + "\n")
    assert list(read_huggingface(str(folder), "train")) == ["yksi", "kaksi"]
    assert list(read_huggingface(str(folder), "validation")) == ["kolme"]


def test_unknown_hub_name_fails_clearly(recipe_file):
    """End to end through the CLI, offline (a subprocess, so the hub client reads the setting)."""
    env = os.environ | {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "tinylang", "train", str(recipe_file), "--set", "data.path=no-such-user/no-such-dataset"],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert result.returncode == 1
    assert "no-such-user/no-such-dataset" in result.stderr and "Hugging Face" in result.stderr
    assert "Traceback" not in result.stderr
    assert open_source("no-such-user/no-such-dataset").kind == "huggingface"


def test_source_stories_keep_their_ids_or_get_positional_ones(tmp_path):
    from tinylang.records import StoryRecord, write_parquet

    txt = write_txt(tmp_path / "s.txt", ["yksi", "kaksi"])
    assert list(iter_source_stories(txt)) == [("train-00000000", "yksi"), ("train-00000001", "kaksi")]
    jsonl = tmp_path / "s.jsonl"
    jsonl.write_text('{"text": "a"}\n{"id": "x7", "text": "b"}\n', encoding="utf-8")
    assert list(iter_source_stories(jsonl)) == [("train-00000000", "a"), ("x7", "b")]
    parquet = tmp_path / "corpus"
    parquet.mkdir()
    write_parquet(parquet / "validation.parquet", [StoryRecord(id="fi-1", lang="fi", text="c", source="grammar")])
    assert list(iter_source_stories(parquet, split="validation")) == [("fi-1", "c")]
    with pytest.raises(SourceError, match="no train files"):
        list(iter_source_stories(parquet))


def test_a_downloaded_hub_dataset_folder_uses_the_splits_its_file_names_say(tmp_path):
    """data/train-00000-of-00001.parquet and friends, as `huggingface-cli download` leaves them."""
    folder = tmp_path / "TinyStories" / "data"
    folder.mkdir(parents=True)
    pq.write_table(pa.table({"text": ["yksi", "kaksi", "kolme"]}), folder / "train-00000-of-00001.parquet")
    pq.write_table(pa.table({"text": ["neljä"]}), folder / "validation-00000-of-00001.parquet")
    pq.write_table(pa.table({"text": ["viisi"]}), folder / "test-00000-of-00001.parquet")
    source = open_source(tmp_path / "TinyStories")
    assert source.has_own_splits
    assert list(read_stories(source, "train")) == ["yksi", "kaksi", "kolme"]
    assert list(read_stories(source, "validation")) == ["neljä"]
    assert [t for _, t in iter_source_stories(tmp_path / "TinyStories")] == ["yksi", "kaksi", "kolme"]
    # Files that name no split (a licence, a word list) are left out and listed, not read as stories;
    # a split shipped twice (TinyStories has .txt and .parquet copies) is read once, from the parquet.
    (folder.parent / "LICENSE.txt").write_text("MIT\n")
    write_txt(folder.parent / "TinyStories-train.txt", ["yksi", "kaksi", "kolme"])
    write_txt(folder.parent / "TinyStories-valid.txt", ["neljä"])
    source = open_source(tmp_path / "TinyStories")
    assert list(read_stories(source, "train")) == ["yksi", "kaksi", "kolme"]
    assert list(read_stories(source, "validation")) == ["neljä"]
    ignored = {path.name: why for path, why in source.ignored}
    assert ignored["LICENSE.txt"] == "names no split" and ignored["test-00000-of-00001.parquet"] == "a test split"
    assert ignored["TinyStories-valid.txt"] == "a .parquet copy of the validation split is read instead"


def test_folders_that_are_not_a_dataset_layout_are_refused(tmp_path):
    loose = tmp_path / "loose"
    loose.mkdir()
    write_txt(loose / "a.txt", ["yksi"])
    (loose / "names.txt").write_text("Aino\nEino\n")
    with pytest.raises(SourceError, match=r"no file here names its split \(a.txt, names.txt\).*point data.path at it"):
        open_source(loose)
    interrupted = tmp_path / "built"
    (interrupted / "raw").mkdir(parents=True)
    (interrupted / "raw" / "shard-00000.jsonl").write_text("{}\n")
    with pytest.raises(SourceError, match="build-corpus folder without its train/validation splits"):
        open_source(interrupted)


def test_a_folder_of_several_corpora_is_refused_not_merged(tmp_path):
    """data/ with a build in each subfolder: reading every split file below would train on their union."""
    for name, text in (("fi-generate", "yksi"), ("en-generate", "one")):
        (tmp_path / "data" / name).mkdir(parents=True)
        pq.write_table(pa.table({"text": [text]}), tmp_path / "data" / name / "train.parquet")
        pq.write_table(pa.table({"text": [text]}), tmp_path / "data" / name / "validation.parquet")
    with pytest.raises(SourceError, match=r"holds 2 corpora \(en-generate, fi-generate\), not one: point data.path"):
        open_source(tmp_path / "data")
    assert list(read_stories(open_source(tmp_path / "data" / "fi-generate"), "train")) == ["yksi"]


def test_valid_txt_beside_train_txt_is_the_validation_split(tmp_path):
    write_txt(tmp_path / "train.txt", ["yksi", "kaksi"])
    write_txt(tmp_path / "valid.txt", ["kolme"])
    source = open_source(tmp_path)
    assert source.has_own_splits and list(read_stories(source, "validation")) == ["kolme"]


def test_rows_that_are_not_text_name_the_file_row_and_column(tmp_path):
    bad_lines = {'"some text"': "2: expected a JSON object with a 'text' field, got a string",
                 '[1, 2]': "2: expected a JSON object with a 'text' field, got an array",
                 '{"text": 123}': "2: the 'text' column holds int 123, not text",
                 '{"text": {"a": 1}}': "2: the 'text' column holds dict"}
    for line, message in bad_lines.items():
        path = tmp_path / "s.jsonl"
        path.write_text('{"text": "a fine story"}\n' + line + "\n")
        with pytest.raises(SourceError) as error:
            list(read_stories(open_source(path), "train"))
        assert str(error.value).startswith(f"{path}:{message}")
        with pytest.raises(SourceError, match=f"s.jsonl:{message[:20]}"):  # tinylang filter reads sources this way
            list(iter_source_stories(path))
    parquet = tmp_path / "s.parquet"
    pq.write_table(pa.table({"text": [7, 8]}), parquet)
    with pytest.raises(SourceError, match=r"s.parquet: row 1: the 'text' column holds int 7, not text"):
        list(read_stories(open_source(parquet, validation_fraction=0.5), "validation"))


def test_null_and_blank_rows_are_skipped_and_counted(tmp_path):
    from collections import Counter

    path = tmp_path / "s.jsonl"
    path.write_text('{"text": "yksi"}\n{"text": null}\n{"text": "  "}\n{"text": null}\n{"text": "kaksi"}\n')
    source = open_source(path, validation_fraction=0.5)
    skipped = Counter()
    train = list(read_stories(source, "train", skipped))
    assert skipped == {"null text": 2, "empty text": 1}
    validation = list(read_stories(source, "validation", skipped))  # a held-out source counts them once, with train
    assert skipped == {"null text": 2, "empty text": 1}
    assert sorted(train + validation) == ["kaksi", "yksi"]
    skipped = Counter()
    assert [i for i, _ in iter_source_stories(path, skipped=skipped)] == ["train-00000000", "train-00000004"]
    assert skipped == {"null text": 2, "empty text": 1}
    assert [t for _, t in iter_source_rows(path)] == ["yksi", None, "  ", None, "kaksi"]  # for readers that report them


def test_a_folder_of_training_files_holds_validation_out_by_hash(tmp_path):
    folder = tmp_path / "dirs" / "a"
    (folder / "train").mkdir(parents=True)
    stories = make_stories(120)
    (folder / "train" / "stories.jsonl").write_text("".join(json.dumps({"text": s}) + "\n" for s in stories[:60]))
    pq.write_table(pa.table({"text": stories[60:]}), folder / "train" / "part-1.parquet")
    (folder / "train" / ".hidden.jsonl").write_text("not even json\n")
    source = open_source(folder, validation_fraction=0.1)
    train, validation = list(read_stories(source, "train")), list(read_stories(source, "validation"))
    assert sorted(train + validation) == sorted(stories)
    assert validation and not set(train) & set(validation)
    (folder / "train" / "other.jsonl").write_text(json.dumps({"story": "x", "id": 1}) + "\n")  # another column: named
    with pytest.raises(SourceError, match=r"other.jsonl:1: no 'text' field \(fields: story, id\)"):
        list(read_stories(open_source(folder), "train"))


def test_huggingface_dataset_without_validation_split_holds_out_from_train(tmp_path):
    """Read through datasets.load_dataset (a local .csv folder; a Hub dataset with only train is the same)."""
    folder = tmp_path / "hf"
    folder.mkdir()
    stories = [f"story number {i}" for i in range(80)]
    (folder / "stories.csv").write_text("text\n" + "".join(f"{s}\n" for s in stories))
    source = open_source(folder, validation_fraction=0.1)
    assert source.kind == "huggingface"
    train, validation = list(read_stories(source, "train")), list(read_stories(source, "validation"))
    assert validation and not set(train) & set(validation)
    assert sorted(train + validation) == sorted(stories)


def test_local_looking_paths_that_do_not_exist_fail_at_once(tmp_path, monkeypatch):
    import datasets

    def no_hub(*args, **kwargs):
        raise AssertionError("a local path was looked up on the Hub")

    monkeypatch.setattr(datasets, "load_dataset", no_hub)
    monkeypatch.setattr(datasets, "get_dataset_split_names", no_hub)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data" / "fi-generate").mkdir(parents=True)
    with pytest.raises(SourceError, match=r"^no such file or folder: data/fi-genrate \(did you mean data/fi-generate\?\)"):
        open_source("data/fi-genrate")
    for location in ("./stories", "../stories", "/no/such/place", "~/no-such-tinylang-file", "stories.jsonl", "x/y.parquet"):
        with pytest.raises(SourceError, match=f"^no such file or folder: {location}") as error:
            open_source(location)
        relative = "a relative path is read from the current directory" in str(error.value)
        assert relative == (location[0] not in "/~")  # a recipe run from elsewhere: where it looked
    with pytest.raises(SourceError, match="no such file or folder"):
        list(iter_source_stories("data/fi-genrate"))
    assert open_source("roneneldan/TinyStories").kind == "huggingface"


def test_txt_separator_inside_a_line(tmp_path):
    path = tmp_path / "s.txt"
    path.write_text("Yksi.<|endoftext|>Kaksi\nrivillä.\n<|endoftext|>  Kolme. <|endoftext|><|endoftext|>\nNeljä.")
    stories = list(read_stories(open_source(path, validation_fraction=0.01), "train"))
    stories += list(read_stories(open_source(path, validation_fraction=0.01), "validation"))
    assert sorted(stories) == sorted(["Yksi.", "Kaksi\nrivillä.", "Kolme.", "Neljä."])


def test_a_linked_folder_of_shards_is_read_and_a_link_loop_is_not_followed(tmp_path):
    store = tmp_path / "store"
    store.mkdir()
    pq.write_table(pa.table({"text": ["kolme"]}), store / "train-00001.parquet")
    dataset = tmp_path / "dataset" / "data"
    dataset.mkdir(parents=True)
    pq.write_table(pa.table({"text": ["yksi", "kaksi"]}), dataset / "train-00000.parquet")
    (dataset / "more").symlink_to(store, target_is_directory=True)
    (store / "back").symlink_to(tmp_path / "dataset", target_is_directory=True)  # a loop
    source = open_source(tmp_path / "dataset", validation_fraction=0.0)
    assert sorted(read_stories(source, "train")) == ["kaksi", "kolme", "yksi"]


def test_positional_ids_in_a_split_of_several_files_stay_put_when_a_file_is_added(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    pq.write_table(pa.table({"text": ["kaksi"]}), data / "train-00002.parquet")
    before = dict(iter_source_stories(tmp_path))
    pq.write_table(pa.table({"text": ["yksi"]}), data / "train-00001.parquet")  # sorts first
    after = dict(iter_source_stories(tmp_path))
    assert before == {"train-data/train-00002.parquet-00000000": "kaksi"}
    assert after == before | {"train-data/train-00001.parquet-00000000": "yksi"}
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    pq.write_table(pa.table({"text": ["kolme"]}), corpus / "train.parquet")
    assert dict(iter_source_stories(corpus)) == {"train-00000000": "kolme"}  # as before this scheme
    pq.write_table(pa.table({"text": ["neljä"]}), corpus / "train-extra.parquet")
    assert dict(iter_source_stories(corpus)) == {"train-00000000": "kolme", "train-train-extra.parquet-00000000": "neljä"}


def test_a_split_is_read_from_one_name_and_one_format(tmp_path):
    """validation.parquet beside valid.txt (the same stories), train.parquet beside train.txt."""
    pq.write_table(pa.table({"text": ["yksi", "kaksi"]}), tmp_path / "train.parquet")
    write_txt(tmp_path / "train.txt", ["yksi", "kaksi"])
    pq.write_table(pa.table({"text": ["kolme"]}), tmp_path / "validation.parquet")
    write_txt(tmp_path / "valid.txt", ["kolme"])
    source = open_source(tmp_path)
    assert list(read_stories(source, "train")) == ["yksi", "kaksi"]
    assert list(read_stories(source, "validation")) == ["kolme"]
    ignored = {path.name: why for path, why in source.ignored}
    assert ignored == {"train.txt": "a .parquet copy of the train split is read instead",
                       "valid.txt": "validation files are the validation split"}


def test_a_hugging_face_cache_folder_reads_one_revision(tmp_path):
    """~/.cache/huggingface/hub/datasets--owner--name keeps every revision fetched under snapshots/:
    reading them all would train on the same stories twice."""
    cache = tmp_path / "datasets--owner--stories"
    for revision, stories in (("aaa", ["vanha tarina"]), ("bbb", ["uusi tarina", "toinen uusi"])):
        write_txt((cache / "snapshots" / revision / "data").mkdir(parents=True) or
                  cache / "snapshots" / revision / "data" / "train.txt", stories)
    (cache / "blobs").mkdir()
    (cache / "refs").mkdir()
    (cache / "refs" / "main").write_text("bbb")
    for location in (cache, cache / "snapshots"):
        source = open_source(location)
        stories = set(read_stories(source, "train")) | set(read_stories(source, "validation"))
        assert stories == {"uusi tarina", "toinen uusi"}, location
        assert {path.name: why for path, why in source.ignored}["aaa"] == "another revision in the Hugging Face cache"
    (cache / "refs" / "main").unlink()  # no ref: the newest revision
    os.utime(cache / "snapshots" / "aaa", (2_000_000_000, 2_000_000_000))
    assert set(read_stories(open_source(cache), "train")) | set(read_stories(open_source(cache), "validation")) == {
        "vanha tarina"}


@pytest.mark.parametrize("suffix", [".txt", ".jsonl"])
def test_a_file_that_is_not_utf8_names_itself_and_its_line(tmp_path, suffix):
    """A Latin-1 file fails where its first é is, which is named (file:line, byte, column) instead of
    Python's bare "'utf-8' codec can't decode byte 0xe9 in position 834"."""
    stories = [f"Story {i}: Tom had a dog." for i in range(200)] + ["Tom went to the café."]
    path = tmp_path / f"en_latin1{suffix}"
    if suffix == ".txt":
        path.write_bytes("".join(f"{s}\n<|endoftext|>\n" for s in stories).encode("latin-1"))
        line = 401
    else:
        path.write_bytes("".join(json.dumps({"text": s}, ensure_ascii=False) + "\n" for s in stories).encode("latin-1"))
        line = 201
    message = rf"en_latin1{suffix}:{line}: not UTF-8 text \(byte 0xe9 at column \d+\)"
    with pytest.raises(SourceError, match=message):
        list(read_stories(open_source(path), "train"))
    with pytest.raises(SourceError, match=message):
        list(iter_source_rows(path))


def test_story_records_that_are_not_utf8_name_their_line(tmp_path):
    from tinylang.records import StoryRecord, read_jsonl, record_line

    path = tmp_path / "shard.jsonl"
    lines = [record_line(StoryRecord(id=f"s{i}", lang="en", text=f"Tom {i}.", source="llm")) for i in range(3)]
    lines.append(record_line(StoryRecord(id="s3", lang="en", text="Tom went to the café.", source="llm")))
    path.write_bytes("".join(lines).encode("latin-1"))
    with pytest.raises(ValueError, match=r"shard.jsonl:4: not UTF-8 text \(byte 0xe9"):
        list(read_jsonl(path))


def test_a_file_that_is_not_parquet_names_itself(tmp_path):
    from tinylang.sources import iter_source_rows

    bad = tmp_path / "stories.parquet"
    bad.write_bytes(b"not parquet at all")
    with pytest.raises(SourceError, match="stories.parquet: not a readable parquet file"):
        list(iter_source_rows(bad))
