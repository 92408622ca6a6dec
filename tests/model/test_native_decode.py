"""The C decode steps (tinylang/model/native): the same logits as PyTorch's steps, used where they
apply, and a quiet fallback to PyTorch's steps wherever they cannot be built or must not run."""

from __future__ import annotations

import os
import shutil

import pytest
import torch

from tests.conftest import tiny_config
from tests.model.test_megabyte import naive_greedy, sharpened_model
from tinylang.model import PAD_ID, Megabyte
from tinylang.model import native
from tinylang.model.decode import GenerationState

needs_compiler = pytest.mark.skipif(
    shutil.which(os.environ.get("CC", "cc")) is None, reason="no C compiler to build the native decode steps")


def generation_logits(model: Megabyte, prompt: torch.Tensor, new_bytes: torch.Tensor) -> tuple[list, GenerationState]:
    """Next-byte logits after the prompt and after each of ``new_bytes`` (batch, n), fed one by one."""
    with torch.inference_mode():
        state = GenerationState(model, prompt, new_bytes.shape[1])
        logits = [state.logits.clone()]
        for column in new_bytes.unbind(1):
            state.advance(column.contiguous())
            logits.append(state.logits.clone())
    return logits, state


@needs_compiler
@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("shape", [
    dict(positions="rotary"),
    dict(positions="learned"),
    # widths that are no multiple of the 16 vector lanes or of the 4 rows matvec takes at a time,
    # and an odd width for the token shift (which keeps ceil(dim / 2) features)
    dict(positions="rotary", global_dim=36, global_heads=3, local_dim=15, local_heads=3, ff_mult=3),
    dict(positions="learned", patch_size=8, context_bytes=64, global_dim=48, local_dim=40, local_heads=5),
])
def test_native_steps_give_pytorchs_logits(shape, batch, monkeypatch):
    """Byte by byte across patch boundaries and past the context (a re-prefill), both ways. Default
    initialisation: sharpened weights amplify float rounding (PyTorch's own steps at batch 1 and 2
    then differ by 1e-5 of the logits' scale)."""
    torch.manual_seed(batch)
    model = Megabyte(tiny_config(**shape)).eval()
    config = model.config
    torch.manual_seed(1)
    prompt = torch.randint(0, 256, (batch, 5))
    fed = torch.randint(0, 256, (batch, config.context_bytes + 2 * config.patch_size))
    ours, state = generation_logits(model, prompt, fed)
    assert state.native is not None, "the C steps did not run"
    monkeypatch.setenv(native.DISABLE_VARIABLE, "0")
    theirs, state = generation_logits(model, prompt, fed)
    assert state.native is None
    for step, (a, b) in enumerate(zip(ours, theirs)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5 * float(b.abs().max()), msg=lambda m: f"step {step}: {m}")


@needs_compiler
def test_greedy_generation_with_native_steps_equals_naive_loop():
    model = sharpened_model(tiny_config(patch_size=8, context_bytes=64, global_dim=40, local_dim=24), seed=5)
    prompt = torch.randint(0, 256, (1, 3))
    with torch.inference_mode():
        assert GenerationState(model, prompt, 1).native is not None
    assert torch.equal(model.generate(prompt, 61, temperature=0), naive_greedy(model, prompt, 61))


@needs_compiler
def test_seeded_sampling_is_reproducible_with_native_steps():
    model = sharpened_model(tiny_config())
    prompt = torch.randint(0, 256, (1, 4))
    runs = [model.generate(prompt, 80, temperature=1.0, top_k=20, generator=torch.Generator().manual_seed(3))
            for _ in range(2)]
    assert torch.equal(*runs)


@needs_compiler
def test_pytorch_steps_where_native_ones_do_not_apply(monkeypatch):
    model = sharpened_model(tiny_config())
    with torch.inference_mode():
        assert GenerationState(model, torch.randint(0, 256, (1, 3)), 0).native is None  # a prefill only
        wide = GenerationState(model, torch.randint(0, 256, (native.MAX_BATCH + 1, 3)), 1)
        assert wide.native is None  # a wider batch: PyTorch's matrix products share the weights
        half = GenerationState(model.to(torch.bfloat16), torch.randint(0, 256, (1, 3)), 1)
        assert half.native is None  # the C steps compute in fp32 only
        monkeypatch.setenv(native.DISABLE_VARIABLE, "off")
        assert GenerationState(model.float(), torch.randint(0, 256, (1, 3)), 1).native is None


@needs_compiler
def test_stages_above_the_size_limit_keep_pytorchs_steps(monkeypatch):
    """A wide global stage: global steps in PyTorch, local steps in C, and the bytes of full forwards."""
    model = sharpened_model(tiny_config(global_dim=64, global_heads=4), seed=2)
    local = sum(p.numel() for p in model.local_model.parameters())
    glob = sum(p.numel() for p in model.global_model.parameters())
    assert glob > local
    prompt = torch.randint(0, 256, (1, 3))
    with torch.inference_mode():
        assert GenerationState(model, prompt, 1).native.runs_global
        monkeypatch.setattr(native, "MAX_STAGE_PARAMETERS", glob - 1)
        state = GenerationState(model, prompt, 1)
        assert state.native is not None and not state.native.runs_global
    assert torch.equal(model.generate(prompt, 29, temperature=0), naive_greedy(model, prompt, 29))
    monkeypatch.setattr(native, "MAX_STAGE_PARAMETERS", local - 1)
    with torch.inference_mode():
        assert GenerationState(model, prompt, 1).native is None


@pytest.mark.parametrize("broken", ["compiler", "cache"])
def test_generation_falls_back_when_the_steps_cannot_be_built(broken, monkeypatch, tmp_path):
    """No working compiler, or a cache folder that cannot be made (here: a file is in its way)."""
    model = sharpened_model(tiny_config())
    prompt = torch.randint(0, 256, (1, 3))
    expected = naive_greedy(model, prompt, 20)
    if broken == "compiler":
        monkeypatch.setenv("TINYLANG_CACHE_DIR", str(tmp_path / "cache"))
        monkeypatch.setenv("CC", str(tmp_path / "no-such-compiler"))
    else:
        (tmp_path / "not-a-folder").write_text("")
        monkeypatch.setenv("TINYLANG_CACHE_DIR", str(tmp_path / "not-a-folder"))
    native.library.cache_clear()
    try:
        assert native.library() is None
        with torch.inference_mode():
            assert GenerationState(model, prompt, 1).native is None
        assert torch.equal(model.generate(prompt, 20, temperature=0), expected)
    finally:
        native.library.cache_clear()


@needs_compiler
def test_library_is_built_once_into_the_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("TINYLANG_CACHE_DIR", str(tmp_path))
    native.library.cache_clear()
    try:
        assert native.library() is not None
        built = list((tmp_path / "native").glob("decode_step-*.so"))
        assert len(built) == 1
        stamp = built[0].stat().st_mtime_ns
        native.library.cache_clear()
        assert native.library() is not None
        assert built[0].stat().st_mtime_ns == stamp, "rebuilt although a build was cached"
        assert not list((tmp_path / "native").glob("*.so.tmp*")) and len(list((tmp_path / "native").iterdir())) == 1
    finally:
        native.library.cache_clear()


@needs_compiler
def test_out_of_range_ids_raise_instead_of_reading_past_the_tables():
    model = sharpened_model(tiny_config())
    with torch.inference_mode():
        state = GenerationState(model, torch.randint(0, 256, (1, 3)), 4)
        assert state.native is not None
        with pytest.raises(IndexError, match="byte id"):
            state.native.local_step(torch.tensor([PAD_ID + 1]), state.cond[:, 0], 0)
        with pytest.raises(IndexError, match="position"):
            state.native.local_step(torch.tensor([65]), state.cond[:, 0], model.config.patch_size)
