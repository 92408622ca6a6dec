"""Choosing the next byte: greedy, top-k, top-p, seeds, and PAD never chosen."""

import torch

from tinylang.model import PAD_ID, VOCAB_SIZE, sample_next_byte


def test_greedy_is_argmax_and_never_pad():
    logits = torch.zeros(2, VOCAB_SIZE)
    logits[0, 65] = 5.0
    logits[1, PAD_ID] = 100.0
    logits[1, 66] = 1.0
    assert sample_next_byte(logits, temperature=0).tolist() == [65, 66]


def test_top_k_keeps_only_the_k_likeliest():
    logits = torch.arange(VOCAB_SIZE, dtype=torch.float).repeat(500, 1) / 50
    logits[:, PAD_ID] = -1.0
    picked = sample_next_byte(logits, temperature=1.0, top_k=3, generator=torch.Generator().manual_seed(0))
    assert set(picked.tolist()) <= {255, 256, 257}
    assert len(set(picked.tolist())) == 3


def test_top_p_keeps_the_nucleus():
    logits = torch.full((400, VOCAB_SIZE), -30.0)
    logits[:, 10], logits[:, 11], logits[:, 12] = 3.0, 2.0, -1.0  # about 0.72, 0.27, 0.01
    picked = sample_next_byte(logits, temperature=1.0, top_p=0.9, generator=torch.Generator().manual_seed(0))
    assert set(picked.tolist()) == {10, 11}


def test_top_p_zero_keeps_the_likeliest_byte():
    logits = torch.randn(50, VOCAB_SIZE)
    picked = sample_next_byte(logits, temperature=1.0, top_p=0.0, generator=torch.Generator().manual_seed(0))
    assert torch.equal(picked, logits[:, :PAD_ID].argmax(dim=-1))


def test_seeded_sampling_repeats():
    logits = torch.randn(4, VOCAB_SIZE)
    a = sample_next_byte(logits, 1.0, generator=torch.Generator().manual_seed(7))
    b = sample_next_byte(logits, 1.0, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a, b)


def test_draw_is_multinomial_with_the_same_random_numbers():
    # sample_next_byte draws through the exponential race that torch.multinomial runs for one
    # sample; seeded outputs (README, docs) depend on the two agreeing exactly.
    from tinylang.model.sampling import draw

    torch.manual_seed(0)
    for trial in range(300):
        probs = (torch.randn(1 + trial % 4, VOCAB_SIZE) * (1 + trial % 6)).softmax(dim=-1)
        probs[:, trial % VOCAB_SIZE] = 0.0  # masked ids (top-k, top-p) have probability 0
        ours, theirs = torch.Generator().manual_seed(trial), torch.Generator().manual_seed(trial)
        assert torch.equal(draw(probs, ours), torch.multinomial(probs, 1, generator=theirs))
        assert torch.equal(ours.get_state(), theirs.get_state())


def test_generate_checks_its_arguments_once():
    import pytest

    from tests.conftest import tiny_config
    from tinylang.model import BOS_ID, Megabyte

    model = Megabyte(tiny_config())
    ids = torch.tensor([[BOS_ID, 65]])
    assert model.generate(ids, 3, top_k=0).shape == (1, 5)  # 0 is every byte, as on the command line
    assert torch.equal(model.generate(ids, 0), ids)
    for kwargs, message in [(dict(top_k=-3), "top_k"), (dict(top_p=1.5), "top_p"), (dict(top_p=-0.1), "top_p"),
                            (dict(temperature=float("nan")), "nan"), (dict(temperature=-1.0), "temperature"),
                            (dict(max_new_bytes=-1), "max_new_bytes")]:
        with pytest.raises(ValueError, match=message):
            model.generate(ids, **({"max_new_bytes": 3} | kwargs))
    with pytest.raises(ValueError, match="batch >= 1"):
        model.generate(ids[:0], 3)
