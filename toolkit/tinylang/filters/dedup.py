"""Exact and near-duplicate removal. Both remember what they kept, so they run in one process,
after every other filter (a duplicate of a story that was dropped anyway is not a duplicate).

    near = NearDuplicate(threshold=0.8)
    near.check(story)   # drop("near duplicate", "of fi-0-0000042") when a kept story is that close
"""

from __future__ import annotations

import hashlib
import zlib

import numpy as np

from .base import Filter, Story, Verdict, drop, keep

def exact_key(words: list[str]) -> bytes:
    """Same words in the same order, whatever the case, punctuation and spacing."""
    return hashlib.blake2b(" ".join(words).encode("utf-8"), digest_size=16).digest()


class ExactDuplicate(Filter):
    name = "exact_duplicate"
    stateful = True

    def __init__(self) -> None:
        self.seen: dict[bytes, str] = {}

    def check(self, story: Story) -> Verdict:
        key = exact_key(story.lower_words)
        first = self.seen.setdefault(key, story.record.id)
        if first != story.record.id:
            return drop("exact duplicate", f"same text as {first}")
        return keep()


def lsh_bands(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows) with bands * rows == num_perm whose S-curve 1 - (1 - s^r)^b crosses 0.5 closest
    to ``threshold``: pairs above it collide in some band with high probability."""
    options = [(b, num_perm // b) for b in range(1, num_perm + 1) if num_perm % b == 0]
    return min(options, key=lambda br: abs((1 / br[0]) ** (1 / br[1]) - threshold))


class NearDuplicate(Filter):
    """MinHash over word 5-gram shingles (crc32: the same in every process and run) and an LSH index
    of bands; a story whose estimated Jaccard similarity to a kept one reaches ``threshold`` goes.
    The index is a dict per band, which in-process is several times faster than datasketch's."""

    name = "near_duplicate"
    stateful = True
    def __init__(self, threshold: float = 0.8, num_perm: int = 64, shingle_words: int = 5, seed: int = 1) -> None:
        self.threshold = threshold
        self.shingle_words = shingle_words
        generator = np.random.RandomState(seed)
        self._a = generator.randint(1, 1 << 63, size=num_perm, dtype=np.uint64) | np.uint64(1)  # odd multipliers
        self._b = generator.randint(0, 1 << 63, size=num_perm, dtype=np.uint64)
        self.bands, self.rows = lsh_bands(threshold, num_perm)
        self.index: list[dict[bytes, list[str]]] = [{} for _ in range(self.bands)]
        self.signatures: dict[str, np.ndarray] = {}
        self._word_hashes: dict[str, int] = {}
        self._mix = np.array([0x9E3779B97F4A7C15 ** k % (1 << 64) for k in range(shingle_words)], dtype=np.uint64)

    def signature(self, words: list[str]) -> np.ndarray:
        """Min over shingles of each hash function; a shingle's hash combines its words' crc32s."""
        cache, n = self._word_hashes, self.shingle_words
        hashes = np.fromiter((cache.get(w) or cache.setdefault(w, zlib.crc32(w.encode("utf-8")) | 1) for w in words),
                             dtype=np.uint64, count=len(words))
        if len(hashes) < n:
            hashes = np.concatenate([hashes, np.zeros(n - len(hashes), dtype=np.uint64)])
        windows = np.lib.stride_tricks.sliding_window_view(hashes, n)  # (shingles, n)
        shingles = windows @ self._mix  # polynomial combination, wrapping modulo 2^64 (repeats do not change a min)
        # multiply-add hashing modulo 2^64 (numpy wraps), keeping the well-mixed high half
        permuted = (shingles[:, None] * self._a + self._b) >> np.uint64(32)  # (shingles, num_perm)
        return permuted.min(axis=0)

    def check(self, story: Story) -> Verdict:
        signature = self.signature(story.lower_words)
        keys = [signature[b * self.rows : (b + 1) * self.rows].tobytes() for b in range(self.bands)]
        candidates = {other for band, key in zip(self.index, keys) for other in band.get(key, ())}
        for other in sorted(candidates):
            similarity = float(np.mean(self.signatures[other] == signature))
            if similarity >= self.threshold:
                return drop("near duplicate", f"of {other} (estimated Jaccard {similarity:.2f})", similarity)
        for band, key in zip(self.index, keys):
            band.setdefault(key, []).append(story.record.id)
        self.signatures[story.record.id] = signature
        return keep()
