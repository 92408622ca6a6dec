#!/usr/bin/env python
"""Where the real trainer's step spends its time: torch.profiler over ``tinylang train``.

bench_model.py times bare steps of the model; this profiles the trainer's own loop (batch drawing,
clipping, logging, the optimizer), which on an H200 ran 48-69 ms a step against the benchmark's 41
(docs/benchmarks.md, "On a GPU"). It trains RECIPE for --warmup + --steps steps with evaluation and
checkpoints pushed past the end, profiles the last --steps, and prints:

  * the median wall time between optimizer steps;
  * on a GPU, how much of that the GPU was busy (the sum of its kernels' times), the rest being time
    the GPU waited for the host;
  * the ops with the most self time (CUDA time on a GPU, CPU time otherwise).

On a CPU it profiles plain steps (train.cpu_workers=1): ops in the trainer's worker threads, which it
uses by default there, are invisible to torch.profiler.

    python benchmarks/profile_train.py recipes/fi-tiny.yaml --steps 10
    python benchmarks/profile_train.py recipes/fi-40m.yaml --set data.path=data/fi-generate --out trace.json
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time

import torch
from rich.console import Console
from torch.profiler import ProfilerActivity, profile, schedule

import tinylang.train as trainer
from tinylang.recipe import load_recipe


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("recipe")
    p.add_argument("--set", dest="overrides", action="append", default=[], help="recipe override, as for train")
    p.add_argument("--warmup", type=int, default=5, help="steps before profiling (compile, caches, allocator)")
    p.add_argument("--steps", type=int, default=20, help="steps profiled")
    p.add_argument("--rows", type=int, default=25, help="ops shown")
    p.add_argument("--out", help="also write a Chrome trace (open in chrome://tracing or Perfetto)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    total = args.warmup + args.steps
    with tempfile.TemporaryDirectory() as run_dir:
        recipe = load_recipe(args.recipe, [*args.overrides, f"output.dir={run_dir}", f"train.max_steps={total}",
                                           "train.max_minutes=null", "train.max_bytes=null",
                                           f"train.log_every={total}", f"train.checkpoint_every={total + 1}",
                                           f"eval.every_steps={total + 1}", "eval.samples=0", "eval.batches=1"])
        gpu = torch.cuda.is_available() and recipe.train.device in ("auto", "cuda")
        if not gpu and recipe.train.cpu_workers != 1:
            # the profiler sees the main thread's ops, not those of the trainer's worker threads
            print("note: profiling with train.cpu_workers=1 (torch.profiler does not see the trainer's CPU worker "
                  "threads)", file=sys.stderr)
            recipe = recipe.model_copy(update={"train": recipe.train.model_copy(update={"cpu_workers": 1})})
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if gpu else [])
        stamps: list[float] = []
        with profile(activities=activities, schedule=schedule(wait=max(args.warmup - 1, 0), warmup=1, active=args.steps),
                     record_shapes=False) as prof:
            def after_step(*_):  # the optimizer steps once per training step: the profiler's clock
                stamps.append(time.perf_counter())
                prof.step()

            build = trainer.build_optimizer
            trainer.build_optimizer = lambda *a, **k: _hooked(build(*a, **k), after_step)
            try:
                trainer.train(recipe, console=Console(stderr=True))
            finally:
                trainer.build_optimizer = build
        profiled = stamps[args.warmup:]
        step_s = statistics.median(b - a for a, b in zip(profiled, profiled[1:]))
    events = prof.key_averages()
    print(f"\n{args.steps} steps profiled after {args.warmup}; median step {step_s * 1e3:.1f} ms (wall, between "
          "optimizer steps)")
    if gpu:
        busy = sum(e.self_device_time_total for e in events if e.device_type == torch.autograd.DeviceType.CUDA)
        per_step = busy / 1e3 / args.steps
        print(f"GPU busy {per_step:.1f} ms per step ({per_step / (step_s * 1e3):.0%} of the step); the rest the GPU "
              "waited for the host")
    key = "self_cuda_time_total" if gpu else "self_cpu_time_total"
    print(events.table(sort_by=key, row_limit=args.rows))
    if args.out:
        prof.export_chrome_trace(args.out)
        print(f"trace -> {args.out}")


def _hooked(optimizer: torch.optim.Optimizer, hook) -> torch.optim.Optimizer:
    optimizer.register_step_post_hook(hook)
    return optimizer


if __name__ == "__main__":
    main()
