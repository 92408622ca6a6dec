"""Where and in what precision to run: device auto-detection and mixed-precision choice.

bf16 is only a win where the hardware computes it natively. On CPUs without AVX512-BF16 or AMX,
bf16 matmuls emulated in software run about 3x slower than fp32 (measured, docs/benchmarks.md), so
``auto`` keeps fp32 there.

    device = pick_device("auto"); dtype = pick_precision("auto", device)
"""

from __future__ import annotations

import contextlib
import functools
from pathlib import Path

import torch


def pick_device(name: str = "auto") -> torch.device:
    """``auto`` (CUDA, then MPS, then CPU), ``cpu``, ``cuda``, ``cuda:N`` or ``mps``; anything else, or a
    device this machine lacks, is a RuntimeError that names what to pass."""
    kind, _, index = name.partition(":")
    if kind not in ("auto", "cpu", "cuda", "mps") or (index and (kind != "cuda" or not index.isdigit())):
        raise RuntimeError(f"device {name!r} is not one of auto, cpu, cuda (or cuda:N) and mps")
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if kind == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} was asked for, but torch sees no CUDA GPU (is this a CPU build of torch?)")
    if index and int(index) >= torch.cuda.device_count():
        raise RuntimeError(f"device {name!r} was asked for, but torch sees {torch.cuda.device_count()} GPU(s), "
                           f"numbered from 0")
    if name == "mps" and not torch.backends.mps.is_available():
        raise RuntimeError("device 'mps' was asked for, but this machine has no Apple MPS device")
    return torch.device(name)


@functools.cache
def cpu_has_native_bf16() -> bool:
    """True when the CPU advertises bf16 arithmetic (x86 AVX512-BF16 or AMX; Arm BF16). Other systems
    report False, which only means fp32 is used: set ``train.precision: bf16`` to force it."""
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.is_file():
        return False
    flags = set(cpuinfo.read_text(errors="ignore").split())
    return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})


def pick_precision(name: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype, or None for plain fp32."""
    if name == "fp32":
        return None
    if name == "bf16":
        return torch.bfloat16
    if name == "fp16":
        if device.type == "cpu":
            raise RuntimeError("precision fp16 needs a GPU; use bf16 or fp32 on CPU")
        return torch.float16
    # auto
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and cpu_has_native_bf16():
        return torch.bfloat16
    return None


def precision_name(dtype: torch.dtype | None) -> str:
    """The recipe's name for an autocast dtype (None: fp32), as run headers and benchmarks print it."""
    return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]


def autocast_context(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
