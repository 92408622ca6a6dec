"""Continuous batching gives each row exactly what generating it alone gives."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import tiny_config
from tests.model.test_megabyte import sharpened_model
from tinylang.model import BOS_ID
from tinylang.model.batched import RaggedBatch


def alone(model, prompt: list[int], new: int) -> list[int]:
    out = model.generate(torch.tensor([prompt]), new, temperature=0)
    return out[0, len(prompt):].tolist()


@pytest.mark.parametrize("positions", ["rotary", "learned"])
def test_rows_of_any_length_joining_at_any_time_match_generating_alone(positions):
    """Prompts of 1..30 ids, rows joining after 0, 3 and 9 steps and one leaving early; 70 new bytes
    each, well past the 32-byte context, so patch completions fall on different steps per row and the
    context is re-encoded mid-batch."""
    model = sharpened_model(tiny_config(positions=positions))
    prompts = {0: [BOS_ID, *b"Olipa kerran"], 1: [BOS_ID], 2: [BOS_ID, *b"Kissa ja koira leikkivat pihalla."],
               3: [BOS_ID, *b"abc"]}
    joins = {0: 0, 1: 0, 2: 3, 3: 9}
    wanted = {0: 70, 1: 70, 2: 70, 3: 20}
    batch, order, produced = RaggedBatch(model), [], {r: [] for r in prompts}
    step = 0
    while step < 100 and (len(batch) or step == 0 or len(order) < len(prompts)):
        for r, at in joins.items():
            if at == step:
                batch.add(torch.tensor([prompts[r]]))
                order.append(r)
        if not len(batch):
            break
        nxt = batch.logits[:, :-1].argmax(-1)
        for row, r in enumerate(order):
            produced[r].append(int(nxt[row]))
        done = [row for row, r in enumerate(order) if len(produced[r]) == wanted[r]]
        batch.advance(nxt)
        batch.remove(done)
        order = [r for row, r in enumerate(order) if row not in done]
        step += 1
    for r, prompt in prompts.items():
        assert produced[r] == alone(model, prompt, wanted[r]), f"row {r}"


def test_empty_batch_and_bad_rows():
    model = sharpened_model(tiny_config())
    batch = RaggedBatch(model)
    batch.add(torch.tensor([[BOS_ID, 65]]))
    batch.remove([0])
    assert len(batch) == 0
    with pytest.raises(ValueError, match="joins as"):
        batch.add(torch.tensor([[BOS_ID], [BOS_ID]]))
