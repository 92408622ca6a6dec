"""Byte streams: story encoding, the memmap cache, and training/validation windows."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests.conftest import make_stories, write_txt
from tinylang import data as data_module
from tinylang.data import ByteData, decode_bytes, encode_story
from tinylang.model import BOS_ID, EOS_ID
from tinylang.recipe import DataConfig
from tinylang.sources import SourceError


def test_encode_wraps_utf8_bytes_in_story_markers():
    ids = encode_story("Äiti ja 0")
    assert ids[0] == BOS_ID and ids[-1] == EOS_ID
    assert bytes(ids[1:-1].tolist()).decode("utf-8") == "Äiti ja 0"
    assert decode_bytes(torch.tensor(ids.astype(np.int64))) == "Äiti ja 0"


def test_decode_replaces_broken_utf8():
    assert decode_bytes(list("ä".encode()[:1]) + [65]) == "\ufffdA"


def test_cache_is_reused_and_invalidated(tmp_path, monkeypatch):
    path = write_txt(tmp_path / "s.txt", make_stories(200))
    config = DataConfig(path=str(path), cache_dir=str(tmp_path / "cache"), validation_fraction=0.1)
    first = ByteData.from_config(config)
    assert first.train.stories + first.validation.stories == 200
    assert first.train.text_bytes + first.validation.text_bytes == sum(
        len(s.encode()) for s in make_stories(200)
    )
    calls = []
    original = data_module._encode_to_file
    monkeypatch.setattr(data_module, "_encode_to_file", lambda *a: calls.append(a) or original(*a))
    again = ByteData.from_config(config)
    assert calls == [] and np.array_equal(again.train.ids, first.train.ids)
    write_txt(path, make_stories(201))  # the source changed: encode again
    ByteData.from_config(config)
    assert len(calls) == 2


def test_random_batches_are_next_byte_pairs_and_seeded(tmp_path):
    path = write_txt(tmp_path / "s.txt", make_stories(100))
    data = ByteData.from_config(DataConfig(path=str(path), cache_dir=str(tmp_path / "c")))
    ids, targets = data.train.random_batch(4, 16, torch.Generator().manual_seed(1))
    assert ids.shape == targets.shape == (4, 16)
    assert torch.equal(ids[:, 1:], targets[:, :-1])
    again, _ = data.train.random_batch(4, 16, torch.Generator().manual_seed(1))
    assert torch.equal(ids, again)


def test_story_windows_start_at_stories_and_ranks_split_one_draw(tmp_path):
    path = write_txt(tmp_path / "s.txt", make_stories(100))
    data = ByteData.from_config(DataConfig(path=str(path), cache_dir=str(tmp_path / "c")))
    ids, _ = data.train.random_batch(6, 16, torch.Generator().manual_seed(2), windows="story")
    assert (ids[:, 0] == BOS_ID).all()
    assert len(data.train.story_starts()) == data.train.stories
    whole, _ = data.train.random_batch(6, 16, torch.Generator().manual_seed(3))
    first, _ = data.train.random_batch(3, 16, torch.Generator().manual_seed(3), part=(0, 2))
    second, _ = data.train.random_batch(3, 16, torch.Generator().manual_seed(3), part=(1, 2))
    assert torch.equal(torch.cat([first, second]), whole)


def test_fixed_validation_windows_are_stable(tmp_path):
    path = write_txt(tmp_path / "s.txt", make_stories(100))
    data = ByteData.from_config(DataConfig(path=str(path), cache_dir=str(tmp_path / "c")))
    a = data.validation.fixed_batches(2, 3, 16)
    b = data.validation.fixed_batches(2, 3, 16)
    assert len(a) == 2 and a[0][0].shape == (3, 16)
    assert all(torch.equal(x[0], y[0]) for x, y in zip(a, b))


def test_processes_sharing_a_cache_encode_it_once(tmp_path):
    """The ranks of a torchrun job (or two runs started together) wait on one encoder."""
    import subprocess
    import sys

    path = write_txt(tmp_path / "s.txt", make_stories(3000))
    code = (  # encoding is slowed down so that, without the lock, every process would be encoding at once
        "import sys, time; from rich.console import Console; from tinylang import data; from tinylang.data import ByteData; "
        "from tinylang.recipe import DataConfig; slow = data._encode_to_file; "
        "data._encode_to_file = lambda *a: (time.sleep(2), slow(*a))[1]; "
        f"d = ByteData.from_config(DataConfig(path={str(path)!r}, cache_dir={str(tmp_path / 'c')!r}), Console()); "
        "print('stories', d.train.stories)"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True) for _ in range(3)]
    outputs = [p.communicate(timeout=120)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert sum(out.count("Encoding train") for out in outputs) == 1
    assert len({out.split("stories")[-1] for out in outputs}) == 1


def test_a_corpus_too_small_for_validation_says_how_to_fix_it(tmp_path):
    path = write_txt(tmp_path / "s.txt", ["Yksi tarina.", "Toinen tarina.", "Kolmas tarina."])
    config = DataConfig(path=str(path), cache_dir=str(tmp_path / "c"), validation_fraction=0.01)
    with pytest.raises(SourceError, match="validation split has no stories") as error:
        ByteData.from_config(config)
    assert "data.validation_fraction" in str(error.value) and "train and validation files" in str(error.value)
    # one story in all: no fraction can help, and the message does not suggest one
    one = write_txt(tmp_path / "one.txt", ["Yksi tarina."])
    with pytest.raises(SourceError, match="holds 1 story in all") as error:
        ByteData.from_config(DataConfig(path=str(one), cache_dir=str(tmp_path / "c"), validation_fraction=0.3))
    assert "validation_fraction" not in str(error.value)


def test_rows_without_text_are_counted_reported_and_kept_out(tmp_path):
    from io import StringIO

    from rich.console import Console

    stories = make_stories(40)
    rows = [{"text": s} for s in stories] + [{"text": None}, {"text": None}, {"text": " "}]
    path = tmp_path / "s.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    out = StringIO()
    data = ByteData.from_config(DataConfig(path=str(path), cache_dir=str(tmp_path / "c"), validation_fraction=0.2),
                                Console(file=out, width=200))
    assert data.train.stories + data.validation.stories == 40
    assert "skipped 3 rows without text (empty text: 1, null text: 2)" in out.getvalue()
    assert out.getvalue().count("skipped") == 1  # once per source, not once per split
    only_null = tmp_path / "null.jsonl"
    only_null.write_text('{"text": null}\n')
    with pytest.raises(SourceError, match="train split has no stories; skipped 1 row without text \\(null text: 1\\)"):
        ByteData.from_config(DataConfig(path=str(only_null), cache_dir=str(tmp_path / "c")))


def test_bad_rows_stop_training_with_one_line_naming_the_row(tmp_path, recipe_file):
    """End to end through the CLI: the error the user sees, and no traceback."""
    import subprocess
    import sys

    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "a fine story"}\n{"text": 123}\n')
    result = subprocess.run(
        [sys.executable, "-m", "tinylang", "train", str(recipe_file), "--set", f"data.path={path}"],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 1
    assert f"{path}:2: the 'text' column holds int 123, not text" in " ".join(result.stderr.split())
    assert "Traceback" not in result.stderr


def test_a_damaged_cache_is_encoded_again(tmp_path):
    path = write_txt(tmp_path / "s.txt", make_stories(100))
    config = DataConfig(path=str(path), cache_dir=str(tmp_path / "cache"), validation_fraction=0.1)
    first = ByteData.from_config(config).train.ids.copy()
    (cached,) = (tmp_path / "cache").glob("*-train.u16")
    for size in (1001, 1000):  # odd: not uint16 at all; even: a silently shorter corpus
        with cached.open("r+b") as handle:
            handle.truncate(size)
        assert np.array_equal(ByteData.from_config(config).train.ids, first)


def test_a_byte_order_mark_is_not_part_of_the_first_story(tmp_path):
    stories = make_stories(40)
    txt = tmp_path / "bom.txt"
    txt.write_bytes(b"\xef\xbb\xbf" + "".join(f"{s}\n<|endoftext|>\n" for s in stories).encode())
    jsonl = tmp_path / "bom.jsonl"
    jsonl.write_bytes(b"\xef\xbb\xbf" + "".join(json.dumps({"text": s}) + "\n" for s in stories).encode())
    for path in (txt, jsonl):
        data = ByteData.from_config(DataConfig(path=str(path), cache_dir=str(tmp_path / "cache"), validation_fraction=0.2))
        ids = np.concatenate([data.train.ids, data.validation.ids])
        assert 0xEF not in ids.tolist() and data.train.stories + data.validation.stories == 40


def test_an_uncreatable_cache_dir_is_one_line(tmp_path):
    path = write_txt(tmp_path / "s.txt", make_stories(20))
    (tmp_path / "afile").write_text("")
    with pytest.raises(SourceError, match="data.cache_dir .*afile is a file, not a folder"):
        ByteData.from_config(DataConfig(path=str(path), cache_dir=str(tmp_path / "afile" / "cache")))
