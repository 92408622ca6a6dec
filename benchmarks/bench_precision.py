#!/usr/bin/env python
"""fp32 against bf16 autocast on this CPU: training steps of both models, and the attention kernel.

``train.precision: auto`` trains in bf16 on CPUs with native bf16 (AVX512-BF16 or AMX). This script
shows what that is worth on the machine at hand, and why tinylang's attention stays in fp32 under
CPU autocast (PyTorch's CPU SDPA kernel has a slow bf16 backward):

  * training step times of the benchmark models (bench_model.py's small and medium configurations,
    batch 8 x 1024) for the reference and tinylang in fp32 and in bf16 autocast, tinylang plain and
    over CPU threads as ``tinylang train`` runs it; all interleaved step by step in one process;
  * forward + backward of ``scaled_dot_product_attention`` alone at the two shapes the small model
    uses (the global model's 129 patches; the local model's 8-byte patches, 4 to a sequence),
    in fp32, in bf16, and as tinylang runs it under autocast (bf16 inputs, fp32 kernel).

    python benchmarks/bench_precision.py                       # about 2 minutes on 2 cores
    python benchmarks/bench_precision.py --configs small --out docs/bench-precision.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_model as bench  # noqa: E402  (the matched configurations and the training step)

from tinylang.model.megabyte import grouped_causal_mask  # noqa: E402
from tinylang.runtime import cpu_has_native_bf16, pick_precision  # noqa: E402

ROWS = (("reference", "fp32", False), ("reference", "bf16", False), ("tinylang", "fp32", False),
        ("tinylang", "bf16", False), ("tinylang", "fp32", True), ("tinylang", "bf16", True))


def time_steps(spec: bench.Spec, args) -> dict[str, float]:
    """Median seconds per training step of every row, the rows taking turns step by step
    (bench_model's timing loop, each row in its own precision)."""
    device = torch.device("cpu")
    labels = {row: f"{row[0]} {row[1]}" + ("+threads" if row[2] else "") for row in ROWS}
    models = {labels[row]: bench.build(row[0], spec, args.context, device) for row in ROWS}
    dtypes = {labels[row]: pick_precision(row[1], device) for row in ROWS}
    batches = bench.random_batches(4, args.batch, args.context, device)
    times = bench.time_training(models, batches, args.warmup, args.steps, device, dtypes)
    return {label: statistics.median(t) for label, t in times.items()}


def time_attention(shape: tuple[int, int, int, int], mask: torch.Tensor | None, mode: str, repeats: int) -> float:
    """Median seconds of SDPA forward + backward on (batch, heads, T, head_dim) inputs laid out as the
    model's (views of one (batch, T, 3, heads, head_dim) projection)."""
    B, H, T, hd = shape
    dtype = torch.float32 if mode == "fp32" else torch.bfloat16
    qkv = torch.randn(B, T, 3, H, hd, dtype=dtype, requires_grad=True)
    grad = torch.randn(B, T, H * hd, dtype=dtype)

    def run():
        q, k, v = (x.transpose(1, 2) for x in qkv.unbind(2))
        if mode == "bf16 in, fp32 kernel":  # what Attention.forward does under CPU autocast
            q, k, v = q.float(), k.float(), v.float()
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=mask is None)
        y.transpose(1, 2).reshape(B, T, H * hd).to(dtype).backward(grad)
        qkv.grad = None

    times = [bench.timed(run, torch.device("cpu"))[0] for _ in range(repeats + 2)][2:]
    return statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--configs", default="small,medium", help="of " + ",".join(bench.CPU_SPECS))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--context", type=int, default=1024)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--out", help="write the figures as JSON here")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    report = {"meta": {"torch": torch.__version__, "threads": args.threads, "cpu_model": bench.proc_field(
        "/proc/cpuinfo", "model name"), "native_bf16": cpu_has_native_bf16(), "batch": args.batch,
        "context": args.context, "loadavg_before": list(os.getloadavg())}, "steps": {}, "attention": {}}
    for name in args.configs.split(","):
        print(f"[{name}] training steps ...", file=sys.stderr, flush=True)
        report["steps"][name] = time_steps(bench.CPU_SPECS[name], args)
    spec = bench.CPU_SPECS["small"]
    heads, patches = spec.global_dim // spec.head_dim, args.context // spec.patch + 1
    group = 4
    shapes = {"global": ((args.batch, heads, patches, spec.head_dim), None),
              "local, 4 patches per sequence": ((args.batch * patches // group, heads, group * spec.patch,
                                                  spec.head_dim), grouped_causal_mask(group, spec.patch, torch.device("cpu")))}
    for where, (shape, mask) in shapes.items():
        report["attention"][where] = {mode: time_attention(shape, mask, mode, 5)
                                      for mode in ("fp32", "bf16", "bf16 in, fp32 kernel")}
    report["meta"]["loadavg_after"] = list(os.getloadavg())
    meta = report["meta"]
    print(f"torch {meta['torch']}, {meta['cpu_model']}, native bf16: {meta['native_bf16']}, {args.threads} threads, "
          f"batch {args.batch} x {args.context}, load {meta['loadavg_before'][0]:.2f} -> {meta['loadavg_after'][0]:.2f}\n")
    for name, rows in report["steps"].items():
        reference = rows["reference fp32"]
        print(f"| {name} | ms per step | bytes/s | against reference fp32 |\n|---|--:|--:|--:|")
        for row, seconds in rows.items():
            print(f"| {row} | {seconds * 1e3:,.1f} | {args.batch * args.context / seconds:,.0f} | "
                  f"x{reference / seconds:.2f} |")
        print()
    print("| attention forward + backward, ms | fp32 | bf16 | bf16 in, fp32 kernel |\n|---|--:|--:|--:|")
    for where, modes in report["attention"].items():
        print(f"| {where} | " + " | ".join(f"{s * 1e3:.2f}" for s in modes.values()) + " |")
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
