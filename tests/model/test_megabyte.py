"""The model's contract: shapes, strict causality, KV-cached generation equal to full forwards, and
that it actually learns."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from tests.conftest import tiny_config
from tinylang.model import BOS_ID, EOS_ID, PAD_ID, VOCAB_SIZE, Megabyte, MegabyteConfig


def sharpened_model(config: MegabyteConfig, seed: int = 0) -> Megabyte:
    """Random weights scaled up so greedy choices are decisive (no near-ties) and vary by position."""
    torch.manual_seed(seed)
    model = Megabyte(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(4.0)
    return model


def naive_greedy(model: Megabyte, ids: torch.Tensor, new: int) -> torch.Tensor:
    """Reference decoding: a full forward pass for every new byte."""
    for _ in range(new):
        logits, _ = model(ids)
        logits[:, -1, PAD_ID] = float("-inf")
        ids = torch.cat([ids, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    return ids


@pytest.mark.parametrize("length", [1, 3, 4, 5, 17, 32])
def test_forward_shapes_and_loss(length):
    model = Megabyte(tiny_config())
    ids = torch.randint(0, 256, (3, length))
    logits, loss = model(ids)
    assert logits.shape == (3, length, VOCAB_SIZE)
    assert loss is None
    _, loss = model(ids, torch.randint(0, 256, (3, length)))
    assert loss.ndim == 0 and torch.isfinite(loss)


def test_rejects_sequences_longer_than_context():
    model = Megabyte(tiny_config())
    with pytest.raises(ValueError, match="context_bytes=32"):
        model(torch.zeros(1, 33, dtype=torch.long))


@pytest.mark.parametrize("positions", ["rotary", "learned"])
@pytest.mark.parametrize("changed", [0, 3, 4, 7, 8, 13, 30])
def test_strictly_causal(changed, positions):
    model = sharpened_model(tiny_config(positions=positions))
    ids = torch.randint(0, 256, (2, 32))
    other = ids.clone()
    other[:, changed] = (other[:, changed] + 1) % 256
    a, _ = model(ids)
    b, _ = model(other)
    assert torch.equal(a[:, :changed], b[:, :changed]), "an output saw a later byte"
    assert not torch.allclose(a[:, changed:], b[:, changed:]), "the changed byte had no effect at all"


def test_loss_ignores_padding_targets():
    model = Megabyte(tiny_config())
    ids = torch.randint(0, 256, (2, 16))
    targets = torch.randint(0, 256, (2, 16))
    padded = targets.clone()
    padded[:, 8:] = PAD_ID
    logits, loss = model(ids, padded)
    expected = torch.nn.functional.cross_entropy(logits[:, :8].reshape(-1, VOCAB_SIZE), targets[:, :8].reshape(-1))
    assert torch.allclose(loss, expected, atol=1e-6)


@pytest.mark.parametrize("positions", ["rotary", "learned"])
@pytest.mark.parametrize("prompt_length", [1, 2, 4, 5, 8, 11])
def test_cached_greedy_generation_equals_naive_loop(prompt_length, positions):
    """Across several patch boundaries (patch size 4, up to the full 32-byte context)."""
    model = sharpened_model(tiny_config(positions=positions), seed=prompt_length)
    torch.manual_seed(100 + prompt_length)
    prompt = torch.randint(0, 256, (2, prompt_length))
    new = 32 - prompt_length
    cached = model.generate(prompt, new, temperature=0)
    assert cached.shape == (2, 32)
    assert torch.equal(cached, naive_greedy(model, prompt, new))


def test_generation_continues_past_the_context():
    model = sharpened_model(tiny_config())
    out = model.generate(torch.tensor([[BOS_ID, 65]]), 100, temperature=1.0, top_k=20)
    assert out.shape == (1, 102)
    assert int(out.max()) < VOCAB_SIZE and PAD_ID not in out[0, 2:].tolist()


class _EndAtStep:
    """A logits processor: EOS for the first row at once, for the second row on its third byte."""

    def __init__(self):
        self.calls = 0

    def __call__(self, logits: torch.Tensor, sampled: torch.Tensor | None) -> torch.Tensor:
        logits = torch.zeros_like(logits)
        logits[:, 65] = 1.0
        logits[0, EOS_ID] = 10.0
        if self.calls >= 2:
            logits[1, EOS_ID] = 10.0
        self.calls += 1
        return logits


def test_stop_at_end_pads_finished_rows():
    model = Megabyte(tiny_config())
    out = model.generate(torch.tensor([[BOS_ID], [BOS_ID]]), 10, temperature=0, stop_at_end=True,
                         processor=_EndAtStep())
    assert out.tolist() == [[BOS_ID, EOS_ID, PAD_ID, PAD_ID], [BOS_ID, 65, 65, EOS_ID]]


def test_generate_restores_training_mode():
    model = Megabyte(tiny_config()).train()
    model.generate(torch.tensor([[BOS_ID]]), 3)
    assert model.training


def test_byte_zero_is_an_ordinary_byte():
    model = Megabyte(tiny_config())
    ids = torch.zeros(1, 8, dtype=torch.long)
    logits, loss = model(ids, torch.zeros(1, 8, dtype=torch.long))
    assert torch.isfinite(loss) and loss > 0  # byte 0 is a real target, not ignored padding
    assert PAD_ID not in range(256)


def test_overfits_one_batch():
    torch.manual_seed(0)
    model = Megabyte(tiny_config())
    text = b"Olipa kerran pieni kissa, joka rakasti maitoa."[:33]
    row = torch.tensor(list(text))
    ids, targets = row[None, :-1], row[None, 1:]
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(150):
        _, loss = model(ids, targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.1
    generated = model.generate(ids[:, :1], 31, temperature=0)
    assert bytes(generated[0].tolist()) == text[:32]


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"context_bytes": 30}, "multiple of patch_size"),
        ({"global_heads": 3}, "divisible by global_heads"),
        ({"global_dim": 24, "global_heads": 8, "patch_size": 4, "context_bytes": 32}, "even for rotary"),
    ],
)
def test_config_errors_are_clear(fields, message):
    with pytest.raises(ValidationError, match=message):
        tiny_config(**fields)


def test_config_rejects_unknown_keys():
    with pytest.raises(ValidationError, match="extra"):
        MegabyteConfig(patch_size=4, context_bytes=32, hidden=3)


def test_forty_million_model_has_sane_gradients_at_init():
    """A zero start vector once made the gradient norm of deep models overflow to inf."""
    from pathlib import Path

    from tinylang.recipe import load_recipe

    config = load_recipe(Path(__file__).parents[2] / "recipes" / "fi-40m.yaml").model
    torch.manual_seed(0)
    model = Megabyte(config)
    row = torch.randint(0, 256, (1, 129))
    _, loss = model(row[:, :-1], row[:, 1:])
    loss.backward()
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), float("inf"))
    assert torch.isfinite(norm) and norm < 100


def test_rms_norm_matches_torchs_forward_bit_for_bit_and_its_gradients():
    from tinylang.model.norm import FrozenRMSNorm, RMSNorm

    torch.manual_seed(0)
    for shape in ((1, 160), (3, 64), (2, 5, 96), (4, 640), (64, 1000)):
        x, weight = torch.randn(*shape) * 3, torch.rand(shape[-1]) + 0.5
        expected = torch.nn.functional.rms_norm(x, shape[-1:], weight, 1e-6)
        assert torch.equal(FrozenRMSNorm(weight, 1e-6)(x), expected)  # the decode step's norm
        assert torch.equal(FrozenRMSNorm(weight, 1e-6)(x.bfloat16()), torch.nn.functional.rms_norm(x.bfloat16(), shape[-1:], weight, 1e-6))
        norm = RMSNorm(shape[-1])
        norm.weight.data.copy_(weight)
        ours_x, torch_x = x.clone().requires_grad_(), x.clone().requires_grad_()
        torch_w = weight.clone().requires_grad_()
        grad = torch.randn(*shape)
        out = norm(ours_x)
        assert torch.equal(out, expected)
        out.backward(grad)
        torch.nn.functional.rms_norm(torch_x, shape[-1:], torch_w, 1e-6).backward(grad)
        torch.testing.assert_close(ours_x.grad, torch_x.grad, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(norm.weight.grad, torch_w.grad, rtol=1e-5, atol=1e-6)


def test_rms_norm_backward_inside_autocast_stays_fp32():
    """Some training loops call backward() inside the autocast block; the norm's gradient must not
    drop to bf16 there."""
    from tinylang.model.norm import RMSNorm

    torch.manual_seed(0)
    norm, x, grad = RMSNorm(96), torch.randn(4, 7, 96, requires_grad=True), torch.randn(4, 7, 96)
    norm.weight.data.uniform_(0.5, 1.5)
    expected = torch.autograd.grad(norm(x), (x, norm.weight), grad)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = torch.autograd.grad(norm(x), (x, norm.weight), grad)
    for a, b in zip(got, expected):
        assert a.dtype == torch.float32 and torch.equal(a, b)


def test_attention_runs_in_fp32_under_cpu_bf16_autocast(monkeypatch):
    """CPU autocast would run SDPA in bf16, whose backward is several times slower there than fp32's;
    the model hands it fp32 with autocast off, while the projections around it stay in bf16."""
    import tinylang.model.megabyte as megabyte

    seen = []
    real = torch.nn.functional.scaled_dot_product_attention

    def spy(q, k, v, **kwargs):
        seen.append((q.dtype, k.dtype, v.dtype, torch.is_autocast_enabled("cpu")))
        return real(q, k, v, **kwargs)

    monkeypatch.setattr(megabyte.F, "scaled_dot_product_attention", spy)
    torch.manual_seed(0)
    model = Megabyte(tiny_config())
    ids = torch.randint(0, 256, (4, 30))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits, loss = model(ids, ids)
    loss.backward()
    assert len(seen) == model.config.global_layers + model.config.local_layers
    assert all(s == (torch.float32, torch.float32, torch.float32, False) for s in seen)
    assert logits.dtype == torch.bfloat16  # the head still ran in bf16: autocast is back on after attention
    _, fp32_loss = model(ids, ids)
    assert abs(loss.item() - fp32_loss.item()) < 0.05


def test_cached_generation_equals_naive_loop_for_odd_widths():
    # token_shift keeps the first ceil(dim / 2) features (chunk); the decode step must keep as many
    config = tiny_config(positions="learned", global_dim=18, global_heads=2, local_dim=15, local_heads=3)
    model = sharpened_model(config, seed=3)
    torch.manual_seed(7)
    prompt = torch.randint(0, 256, (2, 3))
    assert torch.equal(model.generate(prompt, 29, temperature=0), naive_greedy(model, prompt, 29))


def test_attention_groups_divide_the_batch_and_stay_within_the_span():
    from tinylang.model.megabyte import attention_group

    cpu, meta = torch.device("cpu"), torch.device("meta")
    assert attention_group(1032, 8, cpu) == 4  # the small benchmark model's local attention
    assert attention_group(129, 8, cpu) == 3  # one story: the largest divisor that fits
    assert attention_group(7, 8, cpu) == 1  # a prime batch: plain attention
    assert attention_group(1032, 129, cpu) == 1  # global attention: long sequences stay apart
    assert attention_group(1032, 1, cpu) == 1
    assert attention_group(1032, 8, meta) == 1  # off the CPU
    for batch in range(1, 40):
        for length in range(2, 17):
            group = attention_group(batch, length, cpu)
            assert batch % group == 0 and (group == 1 or group * length <= 32)


@pytest.mark.parametrize("batch", [3, 4, 5])
def test_grouped_local_attention_equals_attention_one_patch_at_a_time(batch, monkeypatch):
    """Attending over several patches at once behind a block-diagonal mask must give what separate
    patches give: the same logits, loss and gradients (to rounding)."""
    import tinylang.model.megabyte as megabyte

    torch.manual_seed(1)
    model = Megabyte(tiny_config(positions="learned"))
    ids, targets = torch.randint(0, 256, (batch, 29)), torch.randint(0, 256, (batch, 29))

    def run():
        model.zero_grad()
        logits, loss = model(ids, targets)
        loss.backward()
        return logits, loss, [p.grad.clone() for p in model.parameters()]

    assert megabyte.attention_group(batch * 8, 4, torch.device("cpu")) > 1  # 8 patches per row
    grouped = run()
    monkeypatch.setattr(megabyte, "GROUPED_ATTENTION_SPAN", 0)
    plain = run()
    assert megabyte.attention_group(batch * 8, 4, torch.device("cpu")) == 1
    for a, b in zip(grouped[:2] + tuple(grouped[2]), plain[:2] + tuple(plain[2])):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5 * float(b.abs().max()))
