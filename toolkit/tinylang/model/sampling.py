"""Choosing the next byte from logits: greedy, temperature, top-k and nucleus (top-p) sampling.

PAD_ID is never a target in training, so it is masked and never sampled.

    next_ids = sample_next_byte(logits, temperature=0.8, top_k=40)
"""

from __future__ import annotations

import torch

from .config import PAD_ID


def sample_next_byte(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """logits: (batch, vocab) -> ids (batch,). ``temperature <= 0`` means greedy."""
    logits = logits.to(torch.float32, copy=True)
    logits[:, PAD_ID] = float("-inf")
    if temperature <= 0:
        return logits.argmax(dim=-1)
    logits = logits / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        # drop a token when the mass before it already reaches top_p (the first token always stays)
        drop_sorted = (cumulative - sorted_logits.softmax(dim=-1)) >= top_p
        drop = drop_sorted.scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    probs = logits.softmax(dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)
