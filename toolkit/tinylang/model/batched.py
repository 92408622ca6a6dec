"""Continuous batching: rows at different positions generate together, joining and leaving at will.

A server receives requests at any time, with prompts of any length. Each request joins with its own
prefill (the code ``generate`` uses), then every step advances all rows by one byte in one batched
pass: one local step per row, and one global step for the rows whose byte completes a patch. At
batch 1 on a CPU a step is mostly per-operation overhead, so eight rows cost little more than one.

    batch = RaggedBatch(model)
    batch.add(prompt_ids)              # (1, T) ids starting with BOS_ID
    next_bytes = sample(batch.logits)  # (rows, vocab) -> (rows,)
    batch.advance(next_bytes)
    batch.remove([0])                  # row 0 is done

Greedy decoding here gives exactly the bytes ``Megabyte.generate`` gives for each prompt alone
(tests/model/test_batched.py).
"""

from __future__ import annotations

import torch

from .config import PAD_ID
from .decode import DecodeWeights, GenerationState, LayerCache, kept_past_context
from .megabyte import Megabyte


class RaggedBatch:
    def __init__(self, model: Megabyte):
        self.model, self.P = model, model.config.patch_size
        self.weights = DecodeWeights(model)
        self.history: list[list[int]] = []  # each row's latest ids (for patches and re-encoding past the context)
        self.lengths = torch.zeros(0, dtype=torch.long)  # per row: the stream position predicted next
        self.global_caches: list[LayerCache] = []
        self.local_caches: list[LayerCache] = []
        self.cond: torch.Tensor | None = None  # (rows, P, local_dim): conditioning of each row's patch
        self.logits: torch.Tensor | None = None  # (rows, vocab): next-byte logits of each row

    def __len__(self) -> int:
        return len(self.history)

    @torch.inference_mode()
    def add(self, ids: torch.Tensor) -> None:
        """Append one row, ``ids`` (1, T), prefilled; its logits are ready at ``logits[-1]``."""
        if ids.ndim != 2 or ids.shape[0] != 1 or ids.shape[1] == 0:
            raise ValueError("a row joins as (1, T) ids with T >= 1")
        self._join(GenerationState(self.model, ids, 0), ids[0].tolist())

    def remove(self, rows: list[int]) -> None:
        """Drop these rows; the others keep their order."""
        if not rows:
            return
        gone = set(rows)
        keep = [r for r in range(len(self)) if r not in gone]
        self.history = [self.history[r] for r in keep]
        if not keep:
            self.__init__(self.model)
            return
        self.lengths = self.lengths[keep]
        self.global_caches = [c.take(keep) for c in self.global_caches]
        self.local_caches = [c.take(keep) for c in self.local_caches]
        self.cond, self.logits = self.cond[keep], self.logits[keep]

    @torch.inference_mode()
    def advance(self, new_bytes: torch.Tensor) -> None:
        """Feed each row the byte it just produced, (rows,); ``logits`` then predicts the next one."""
        m, c, P = self.model, self.model.config, self.P
        n = len(self)
        device = self.lengths.device
        horizon = c.context_bytes  # the most a row can ever re-encode; older ids are dropped
        for row, byte in zip(self.history, new_bytes.tolist()):
            row.append(byte)
            if len(row) > 2 * horizon:
                del row[:-horizon]
        s = self.lengths + 1
        overflow = (s > c.context_bytes).nonzero().flatten().tolist()
        completing = s % P == 0
        if bool(completing.any()):
            # One global step for all rows. Rows whose patch is not complete keep their state: their
            # keys land on their next free position, overwritten when their patch completes.
            patches = torch.tensor([h[-P:] if len(h) >= P else [PAD_ID] * (P - len(h)) + h for h in self.history],
                                   device=device)
            saved = [(cache.previous_attn_in, cache.previous_mlp_in) for cache in self.global_caches]
            positions = torch.where(completing, s // P, s // P + 1).clamp(max=c.max_patches - 1)
            cond = self.weights.global_step(patches, self.global_caches, positions)
            if bool(completing.all()):
                self.cond = cond
            else:
                keep_old = ~completing[:, None]
                for cache, (attn_in, mlp_in) in zip(self.global_caches, saved):
                    cache.previous_attn_in = torch.where(keep_old, attn_in, cache.previous_attn_in)
                    cache.previous_mlp_in = torch.where(keep_old, mlp_in, cache.previous_mlp_in)
                self.cond = torch.where(keep_old[:, :, None], self.cond, cond)
            for cache in self.local_caches:  # a fresh patch: no previous byte inside it
                cache.previous_attn_in = cache.previous_attn_in.masked_fill(completing[:, None], 0.0)
                cache.previous_mlp_in = cache.previous_mlp_in.masked_fill(completing[:, None], 0.0)
        j = s % P
        cond = self.cond[torch.arange(n, device=device), j]
        self.logits = self.weights.local_step(new_bytes.to(device), cond, self.local_caches, j)
        self.lengths = s
        for r in overflow:  # past the context: re-encode the row's last half-context, as generate() does
            tail = torch.tensor([self.history[r][-kept_past_context(c):]], device=device)
            self._replace(r, GenerationState(m, tail, 0))

    # -- moving prefilled rows in -----------------------------------------------------------------

    def _join(self, state: GenerationState, history: list[int]) -> None:
        self.history.append(history)
        length = torch.tensor([state.length], device=state.logits.device)
        if len(self) == 1:
            self.lengths, self.cond, self.logits = length, state.cond, state.logits
            self.global_caches, self.local_caches = state.global_caches, state.local_caches
            return
        self.lengths = torch.cat([self.lengths, length])
        self.cond = torch.cat([self.cond, state.cond])
        self.logits = torch.cat([self.logits, state.logits])
        self.global_caches = [LayerCache.concat([a, b]) for a, b in zip(self.global_caches, state.global_caches)]
        self.local_caches = [LayerCache.concat([a, b]) for a, b in zip(self.local_caches, state.local_caches)]

    def _replace(self, row: int, state: GenerationState) -> None:
        self.lengths[row] = state.length
        self.cond[row], self.logits[row] = state.cond[0], state.logits[0]
        for ours, theirs in zip(self.global_caches + self.local_caches, state.global_caches + state.local_caches):
            ours.k[row], ours.v[row] = theirs.k[0], theirs.v[0]
            ours.previous_attn_in[row], ours.previous_mlp_in[row] = theirs.previous_attn_in[0], theirs.previous_mlp_in[0]


__all__ = ["RaggedBatch"]
