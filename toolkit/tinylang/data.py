"""Byte streams for training: stories encoded as ``BOS bytes EOS``, concatenated, cached as uint16
memmaps, and cut into random training windows or fixed validation windows.

Encoding happens once per source and split; later runs map the cached file.

    data = ByteData.from_config(recipe.data)
    ids, targets = data.train.random_batch(batch=16, length=1024, generator=g)
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from rich.console import Console

from .model import BOS_ID, EOS_ID
from .outputs import make_folder
from .recipe import DataConfig
from .sources import SourceError, StorySource, fingerprint, open_source, read_stories

_FORMAT_VERSION = 2  # 2: <|endoftext|> inside a line ends a story; folders of story files
_CHUNK_IDS = 1 << 20


def encode_story(text: str) -> np.ndarray:
    """One story as uint16 ids: BOS, its UTF-8 bytes, EOS."""
    body = np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.uint16)
    return np.concatenate([np.array([BOS_ID], np.uint16), body, np.array([EOS_ID], np.uint16)])


def decode_bytes(ids: list[int] | torch.Tensor) -> str:
    """Text of the real bytes in ``ids`` (special ids dropped; invalid UTF-8 replaced)."""
    if isinstance(ids, torch.Tensor):
        ids = ids.tolist()
    return bytes(i for i in ids if i < 256).decode("utf-8", errors="replace")


@dataclass
class ByteStream:
    """One split as a flat array of ids, with the count of stories in it."""

    ids: np.ndarray  # uint16, memory-mapped
    stories: int
    _story_starts: np.ndarray | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def text_bytes(self) -> int:
        return len(self.ids) - 2 * self.stories

    def random_batch(
        self,
        batch: int,
        length: int,
        generator: torch.Generator,
        windows: str = "random",
        part: tuple[int, int] = (0, 1),
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Windows of ``length`` inputs and their next-byte targets.

        ``windows="random"`` starts them at any byte; ``"story"`` at the beginning of a random story,
        so that what opens a story (an instruct request) is always in view. ``part=(rank, world)``
        draws ``batch * world`` starts, the same on every rank, and builds only this rank's share:
        under torchrun the ranks together see exactly the batch one process would draw.
        """
        rank, world = part
        window = min(length + 1, len(self.ids))
        if windows == "story":
            starts_of_stories = self.story_starts()
            chosen = torch.randint(0, len(starts_of_stories), (batch * world,), generator=generator)
            starts = np.minimum(starts_of_stories[chosen.numpy()], len(self.ids) - window).tolist()
        else:
            starts = torch.randint(0, len(self.ids) - window + 1, (batch * world,), generator=generator).tolist()
        mine = starts[rank * batch : (rank + 1) * batch]
        rows = torch.from_numpy(np.stack([self.ids[s : s + window] for s in mine]).astype(np.int64))
        return rows[:, :-1], rows[:, 1:]

    def story_starts(self) -> np.ndarray:
        """Offsets of every story's begin id (found once, then kept)."""
        if self._story_starts is None:
            starts = [np.flatnonzero(self.ids[i : i + _CHUNK_IDS] == BOS_ID) + i for i in range(0, len(self.ids), _CHUNK_IDS)]
            self._story_starts = np.concatenate(starts) if starts else np.zeros(0, np.int64)
            if len(self._story_starts) == 0:
                raise SourceError("no story begins in this split (its cache holds no begin-of-story ids)")
        return self._story_starts

    def fixed_batches(self, batches: int, batch: int, length: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Evenly spaced validation windows, the same at every evaluation and in every run."""
        window = min(length + 1, len(self.ids))
        count = batches * batch
        starts = np.linspace(0, len(self.ids) - window, num=count).astype(np.int64)
        rows = torch.from_numpy(np.stack([self.ids[s : s + window] for s in starts]).astype(np.int64))
        return [(rows[i : i + batch, :-1], rows[i : i + batch, 1:]) for i in range(0, count, batch)]


def _cache_key(source: StorySource, split: str) -> str:
    text = json.dumps(
        {
            "version": _FORMAT_VERSION,
            "source": fingerprint(source),
            "split": split,
            "column": source.text_column,
            "fraction": source.validation_fraction,
        },
        sort_keys=True,
    )
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _encode_to_file(
    source: StorySource, split: str, target: Path, console: Console | None
) -> tuple[int, dict[str, int]]:
    """Stream stories into ``target`` without holding the corpus in memory; returns the story count and
    the rows skipped for having no text, by reason."""
    tmp = target.with_suffix(f".tmp{os.getpid()}")
    stories, pending, pending_ids, next_report = 0, [], 0, 100_000
    skipped: Counter = Counter()
    try:
        with tmp.open("wb") as handle:
            for text in read_stories(source, split, skipped):
                pending.append(encode_story(text))
                stories += 1
                pending_ids += len(pending[-1])
                if pending_ids >= _CHUNK_IDS:
                    np.concatenate(pending).tofile(handle)
                    pending, pending_ids = [], 0
                    if console is not None and stories >= next_report:
                        console.print(f"  encoded {stories:,} {split} stories")
                        next_report += 100_000
            if pending:
                np.concatenate(pending).tofile(handle)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return stories, dict(skipped)


def _skipped_text(skipped: dict[str, int]) -> str:
    """'3 rows without text (null text: 2, empty text: 1)'."""
    reasons = ", ".join(f"{reason}: {count:,}" for reason, count in sorted(skipped.items()))
    total = sum(skipped.values())
    return f"{total:,} row{'' if total == 1 else 's'} without text ({reasons})"


def _empty_split_message(source: StorySource, split: str, skipped: dict[str, int], train_stories: int | None) -> str:
    """Why ``split`` came out empty, and what to change."""
    message = f"{source.location}: the {split} split has no stories"
    if skipped:
        message += f"; skipped {_skipped_text(skipped)}"
    if split == "validation" and source.has_own_splits:
        return message + f" (its validation files: {', '.join(p.name for p in source.files['validation'])})"
    if split == "validation" and train_stories is not None and train_stories < 2:
        return message + (
            f": the source holds {train_stories} story in all, and holding stories out for validation needs at "
            "least 2 (one to train on, one to validate); add stories, or give validation stories of your own: a "
            "folder with train and validation files (see docs/train.md, Data)")
    if split == "validation":
        return message + (
            f": none fell in the held-out share (data.validation_fraction={source.validation_fraction}, picked by a "
            "hash of each story's text), as happens with few stories. Raise it "
            "(e.g. --set data.validation_fraction=0.3), or give validation stories of your own: "
            "a folder with train and validation files (see docs/train.md, Data)"
        )
    if skipped or source.has_own_splits:
        return message + f" (stories are read from the {source.text_column!r} column)"
    return message + (
        f": the source holds none, or every one fell in the held-out validation share "
        f"(data.validation_fraction={source.validation_fraction}); add stories"
    )


@contextlib.contextmanager
def _exclusive(lock_path: Path):
    """Hold an exclusive lock on ``lock_path``: processes that need the same cache (the ranks of a
    torchrun job, two runs started together) encode it once; the others wait, then map it."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock, at worst the work is done twice (writes are atomic)
        yield
        return
    with lock_path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _cache_damage(data_path: Path, meta_path: Path) -> str | None:
    """What is wrong with a cached split, or None. Encoding writes atomically, so this catches files
    changed afterwards (a disk filling up during a copy, a truncation): trusted, a truncated stream
    trained on a fraction of the corpus without a word, or ended in a numpy traceback."""
    if not (data_path.is_file() and meta_path.is_file()):
        return None
    size = data_path.stat().st_size
    try:
        expected = json.loads(meta_path.read_text()).get("bytes", size)  # caches from before "bytes" was kept
    except (OSError, ValueError, AttributeError):
        return "its description is unreadable"
    if size != expected or size % 2:
        return f"{size:,} bytes where {expected:,} were written"
    return None


def load_split(source: StorySource, split: str, cache_dir: Path, console: Console | None = None,
               train_stories: int | None = None) -> ByteStream:
    """The encoded split, from the cache when the source has not changed. ``train_stories`` (when the
    validation split is loaded after train) lets an empty validation split say why."""
    problem = make_folder(cache_dir, "data.cache_dir")
    if problem:
        raise SourceError(problem)
    key = _cache_key(source, split)
    data_path, meta_path = cache_dir / f"{key}-{split}.u16", cache_dir / f"{key}-{split}.json"
    with _exclusive(cache_dir / f"{key}-{split}.lock"):
        damaged = _cache_damage(data_path, meta_path)
        if damaged and console is not None:
            console.print(f"[yellow]{data_path}: {damaged}; encoding it again")
        if damaged or not (data_path.is_file() and meta_path.is_file()):
            if console is not None:
                console.print(f"Encoding {split} stories from {source.location} -> {data_path}")
                for path, why in source.ignored[:5] if split == "train" else ():
                    console.print(f"  not read: {path} ({why})")
                if split == "train" and len(source.ignored) > 5:
                    console.print(f"  not read: {len(source.ignored) - 5:,} more files")
            stories, skipped = _encode_to_file(source, split, data_path, console)
            meta = {"stories": stories, "skipped": skipped, "source": source.location, "split": split,
                    "bytes": data_path.stat().st_size}
            meta_path.write_text(json.dumps(meta))
            if console is not None and skipped:
                console.print(f"  skipped {_skipped_text(skipped)} in {source.location}")
    meta = json.loads(meta_path.read_text())
    stories = meta["stories"]
    if stories == 0:
        raise SourceError(_empty_split_message(source, split, meta.get("skipped", {}), train_stories))
    return ByteStream(np.memmap(data_path, dtype=np.uint16, mode="r"), stories)


@dataclass
class ByteData:
    train: ByteStream
    validation: ByteStream
    source_kind: str = "file"  # StorySource.kind: "directory", "file" (local) or "huggingface"

    @classmethod
    def from_config(cls, config: DataConfig, console: Console | None = None) -> "ByteData":
        source = open_source(config.path, config.text_column, config.validation_fraction, config.hf_config)
        cache = Path(config.cache_dir)
        train = load_split(source, "train", cache, console)
        return cls(train, load_split(source, "validation", cache, console, train_stories=train.stories), source.kind)


def bits_per_byte(mean_loss_nats: float) -> float:
    """Cross-entropy in nats per predicted id, as bits. Story markers count as one id each."""
    return mean_loss_nats / float(np.log(2))

