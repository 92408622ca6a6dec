"""Generation steps in C for CPUs: decode_step.c, compiled on first use and loaded with ctypes.

Why: on a CPU at batch 1 a decode step in PyTorch is ~100 small operations of a few µs each, mostly
framework overhead for a small model; the same arithmetic as plain loops over the weights is bound
only by reading them, and generation of the small benchmark model runs 1.7-2x as fast
(docs/benchmarks.md). Nothing here is needed: without a C compiler, off the CPU, in other precisions,
for larger models or batches (see ``usable``), or with ``TINYLANG_NATIVE_DECODE=0``, generation takes
decode.py's PyTorch steps, which compute the same thing.

The library is built with the system's C compiler (``$CC``, else ``cc``) into
``$TINYLANG_CACHE_DIR`` (default ``~/.cache/tinylang``) under a name that hashes the source, the
compiler command and this CPU, since ``-march=native`` code must not run on another CPU model.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import logging
import os
import platform
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from ..decode import LayerCache
    from ..megabyte import Megabyte, Transformer

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("decode_step.c")
DISABLE_VARIABLE = "TINYLANG_NATIVE_DECODE"
# Tried in order: the first that compiles is used. -march=native vectorises the dot products for
# this CPU (AVX-512 where it has it); the plain build is for compilers that reject it.
FLAG_SETS = (["-O3", "-march=native", "-ffp-contract=fast"], ["-O3", "-ffp-contract=fast"], ["-O3"])


def cache_dir() -> Path:
    return Path(os.environ.get("TINYLANG_CACHE_DIR") or Path.home() / ".cache" / "tinylang") / "native"


def _cpu_identity() -> str:
    """What distinguishes this CPU's instruction set: its flags on Linux, else its model name."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return f"{platform.machine()} {platform.processor()}"


def _compile(compiler: str, flags: list[str], target: Path) -> bool:
    """Build the library at ``target`` atomically (another process may be building it too)."""
    command = [compiler, *flags, "-std=gnu99", "-fPIC", "-shared", str(SOURCE), "-o", "", "-lm"]
    temporary = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(suffix=".so", dir=target.parent)
        os.close(fd)
        command[-2] = temporary
        result = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            log.debug("native decode: %s failed:\n%s", " ".join(command), result.stderr)
            return False
        os.replace(temporary, target)
        return True
    except (OSError, subprocess.SubprocessError) as error:  # no compiler, or a cache we cannot write
        log.debug("native decode: %s failed: %s", " ".join(command), error)
        return False
    finally:
        if temporary is not None:
            Path(temporary).unlink(missing_ok=True)


def _load(target: Path) -> ctypes.CDLL | None:
    try:
        return _declare(ctypes.CDLL(str(target)))
    except OSError as error:  # e.g. a file truncated by a crash mid-build
        log.debug("native decode: loading %s failed: %s", target, error)
        return None


def enabled() -> bool:
    """False when ``TINYLANG_NATIVE_DECODE`` is 0 / false / no / off (to compare, or to rule it out)."""
    return os.environ.get(DISABLE_VARIABLE, "1").strip().lower() not in ("0", "false", "no", "off")


@functools.lru_cache(maxsize=1)
def library() -> ctypes.CDLL | None:
    """The compiled decode steps, building them if needed; None when they cannot be had here.
    Built once per machine and CPU, loaded once per process."""
    compiler = os.environ.get("CC", "cc")
    try:
        source, folder = SOURCE.read_bytes(), cache_dir()
    except (OSError, RuntimeError) as error:  # a package without its C file; no home directory
        log.info("native decode steps unavailable (%s); generation uses PyTorch's steps", error)
        return None
    for flags in FLAG_SETS:
        key = hashlib.sha256(b"\0".join([source, compiler.encode(), " ".join(flags).encode(),
                                          _cpu_identity().encode()])).hexdigest()[:16]
        target = folder / f"decode_step-{key}.so"
        if target.exists():
            lib = _load(target)
            if lib is not None:
                return lib
            with contextlib.suppress(OSError):  # replaced by the build below, if the cache is writable
                target.unlink()
        if _compile(compiler, flags, target):
            lib = _load(target)
            if lib is not None:
                return lib
    log.info("native decode steps unavailable (C compiler %r failed); generation uses PyTorch's steps", compiler)
    return None


# ---------------------------------------------------------------------------------------------
# the structs of decode_step.c
# ---------------------------------------------------------------------------------------------

_float_p = ctypes.POINTER(ctypes.c_float)


class _Block(ctypes.Structure):
    _fields_ = [(name, _float_p) for name in ("attn_norm", "qkv", "out", "mlp_norm", "up", "down")] + [
        ("attn_eps", ctypes.c_float), ("mlp_eps", ctypes.c_float),
        ("k", _float_p), ("v", _float_p), ("previous_attn_in", _float_p), ("previous_mlp_in", _float_p)]


class _Stack(ctypes.Structure):
    _fields_ = [(name, ctypes.c_int64) for name in ("dim", "heads", "hidden", "layers", "max_len")] + [
        ("cos", _float_p), ("sin_signed", _float_p), ("position_embedding", _float_p), ("norm", _float_p),
        ("norm_eps", ctypes.c_float), ("blocks", ctypes.POINTER(_Block))]


class _Model(ctypes.Structure):
    _fields_ = [("patch_size", ctypes.c_int64), ("vocab", ctypes.c_int64)] + [
        (name, _float_p) for name in ("patch_byte_embed", "patch_proj", "global_to_local", "local_byte_embed",
                                      "head_weight", "head_bias")] + [
        ("global_", _Stack), ("local", _Stack), ("work", _float_p)]


def _declare(lib: ctypes.CDLL) -> ctypes.CDLL:
    model_p, i64, vp = ctypes.POINTER(_Model), ctypes.c_int64, ctypes.c_void_p
    lib.tl_work_floats.argtypes, lib.tl_work_floats.restype = [model_p], i64
    lib.tl_global_step.argtypes, lib.tl_global_step.restype = [model_p, vp, i64, i64, i64, vp], ctypes.c_int
    lib.tl_local_step.argtypes, lib.tl_local_step.restype = [model_p, vp, vp, i64, i64, i64, vp], ctypes.c_int
    return lib


# ---------------------------------------------------------------------------------------------
# one generation's steps
# ---------------------------------------------------------------------------------------------


# Rows are computed one after another, each reading every weight, where PyTorch's matrix products
# read them once for the whole batch: generation of the small benchmark model ran 1.85-1.90x as fast
# in C at batch 1, 1.30-1.34x at 2, 0.99-1.06x at 4 and 0.59-0.67x at 8 (benchmarks/bench_decode.py).
MAX_BATCH = 2
# A step reads its stage's weights once, on one core, where PyTorch's matrix-vector products of wide
# layers use every core. Up to a few million parameters per stage the C step wins on overhead (small
# benchmark model: 102 against 213 µs per local step, 298 against 577 per global step); the medium
# model's 7.4M-parameter global stage still ran faster in C (1.47 against 1.59 ms), fi-40m's 37.7M one
# ran slower (15.3 against 9.4 ms: reading 151 MB is the whole cost). A stage above this limit keeps
# PyTorch's steps (benchmarks/bench_decode.py).
MAX_STAGE_PARAMETERS = 20_000_000


def fits(stage: torch.nn.Module) -> bool:
    """Whether a stage (the global or the local Transformer) is small enough for the C step to win."""
    return sum(p.numel() for p in stage.parameters()) <= MAX_STAGE_PARAMETERS


def usable(model: "Megabyte", ids: torch.Tensor) -> bool:
    """Whether the C steps should run this generation's local steps (and its global steps where the
    global stage ``fits``): enabled, on a CPU, at most MAX_BATCH rows, a local stage that fits, and a
    model of contiguous fp32 parameters (a bf16 or fp16 model keeps PyTorch's steps, which compute in
    its own precision). Does not build the library; ``library()`` does."""
    return (enabled() and ids.device.type == "cpu" and ids.shape[0] <= MAX_BATCH
            and not torch.is_autocast_enabled("cpu") and fits(model.local_model)
            and all(p.device.type == "cpu" and p.dtype == torch.float32 and p.is_contiguous()
                    for p in model.parameters()))


class NativeSteps:
    """The C steps of one generation, reading the model's parameters and the caches in place.

    Made after each prefill (which makes new caches). The caches' token-shift inputs must not be
    replaced between steps, only changed in place (``LayerCache.reset`` zeroes them)."""

    def __init__(self, lib: ctypes.CDLL, model: "Megabyte", global_caches: list["LayerCache"],
                 local_caches: list["LayerCache"]):
        self.lib, c = lib, model.config
        self._keep: list[torch.Tensor] = []  # every tensor whose memory C reads, alive as long as this
        self.model = _Model(patch_size=c.patch_size, vocab=model.head.out_features)
        m = self.model
        m.patch_byte_embed = self._pointer(model.patch_byte_embed.weight)
        m.patch_proj = self._pointer(model.patch_proj.weight)
        m.global_to_local = self._pointer(model.global_to_local.weight)
        m.local_byte_embed = self._pointer(model.local_byte_embed.weight)
        m.head_weight, m.head_bias = self._pointer(model.head.weight), self._pointer(model.head.bias)
        self._blocks = [self._stack(m.global_, model.global_model, global_caches),
                        self._stack(m.local, model.local_model, local_caches)]
        self.work = torch.empty(lib.tl_work_floats(ctypes.byref(m)), dtype=torch.float32)
        m.work = self._pointer(self.work)
        self._model = ctypes.byref(m)
        self.local_dim, self.vocab = c.local_dim, m.vocab
        self.runs_global = fits(model.global_model)  # else the caller takes PyTorch's global steps

    def _pointer(self, tensor: torch.Tensor):
        tensor = tensor.detach()
        if not tensor.is_contiguous() or tensor.dtype != torch.float32:
            raise ValueError("native decode reads contiguous fp32 tensors only")
        self._keep.append(tensor)
        return ctypes.cast(tensor.data_ptr(), _float_p)

    def _stack(self, out: _Stack, stack: "Transformer", caches: list["LayerCache"]) -> ctypes.Array:
        first = stack.blocks[0]
        out.dim, out.heads, out.layers = stack.dim, stack.heads, len(stack.blocks)
        out.hidden, out.max_len = first.mlp.up.out_features, caches[0].k.shape[2]
        if stack.rotary is not None:
            out.cos = self._pointer(stack.rotary.cos)
            out.sin_signed = self._pointer(stack.rotary.sin_signed)
        if stack.position_embedding is not None:
            out.position_embedding = self._pointer(stack.position_embedding.weight)
        out.norm, out.norm_eps = self._pointer(stack.norm.weight), stack.norm.eps
        blocks = (_Block * len(stack.blocks))()
        for block, cache, b in zip(stack.blocks, caches, blocks):
            b.attn_norm, b.attn_eps = self._pointer(block.attn_norm.weight), block.attn_norm.eps
            b.mlp_norm, b.mlp_eps = self._pointer(block.mlp_norm.weight), block.mlp_norm.eps
            b.qkv, b.out = self._pointer(block.attn.qkv.weight), self._pointer(block.attn.out.weight)
            b.up, b.down = self._pointer(block.mlp.up.weight), self._pointer(block.mlp.down.weight)
            b.k, b.v = self._pointer(cache.k), self._pointer(cache.v)
            b.previous_attn_in = self._pointer(cache.previous_attn_in)
            b.previous_mlp_in = self._pointer(cache.previous_mlp_in)
        out.blocks = blocks
        return blocks

    def global_step(self, patches: torch.Tensor, position: int) -> torch.Tensor:
        """(batch, P) bytes of one completed patch per row (rows may be a strided view) -> the local
        conditioning of the next patch, (batch, P, local_dim)."""
        B, P = patches.shape
        if patches.stride(1) != 1 or patches.dtype != torch.int64:
            raise ValueError("patches must be int64 with contiguous rows")
        cond = torch.empty(B, P, self.local_dim)
        if self.lib.tl_global_step(self._model, patches.data_ptr(), patches.stride(0), B, position, cond.data_ptr()):
            raise IndexError(f"global step: a byte id outside 0..{self.vocab - 1} or position {position} out of range")
        return cond

    def local_step(self, new_bytes: torch.Tensor, cond: torch.Tensor, position: int) -> torch.Tensor:
        """Each row's newest byte (batch,) int64, its conditioning (batch, local_dim) with contiguous
        rows -> next-byte logits (batch, vocab)."""
        B = new_bytes.shape[0]
        new_bytes = new_bytes.contiguous()
        if cond.stride(1) != 1 or new_bytes.dtype != torch.int64:
            raise ValueError("new bytes must be int64 and cond rows contiguous")
        logits = torch.empty(B, self.vocab)
        if self.lib.tl_local_step(self._model, new_bytes.data_ptr(), cond.data_ptr(), cond.stride(0), B, position,
                                  logits.data_ptr()):
            raise IndexError(f"local step: a byte id outside 0..{self.vocab - 1} or position {position} out of range")
        return logits
