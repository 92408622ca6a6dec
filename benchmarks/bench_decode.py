#!/usr/bin/env python
"""tinylang's two decode paths on this CPU: the C steps (model/native) against PyTorch's (decode.py).

The figures behind the limits in ``tinylang.model.native`` (``MAX_BATCH``, ``MAX_STAGE_PARAMETERS``):

  * one local step and one global step of each model, each path (µs, best of several repeats: the
    step's cost on a quiet moment of this host);
  * generation bytes/s (prompt 64 bytes, temperature 1, top-k 40) at batch 1, 2, 4 and 8 for the
    small model, and at batch 1 for every model: the benchmark's small and medium configurations and
    the 43M model of recipes/fi-40m.yaml. The two paths take turns run by run.

    python benchmarks/bench_decode.py                          # about 2 minutes on 2 cores
    python benchmarks/bench_decode.py --out docs/bench-decode.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import timeit
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_model as bench  # noqa: E402  (the matched configurations)

from tinylang.model import Megabyte, native  # noqa: E402
from tinylang.model.decode import GenerationState  # noqa: E402
from tinylang.recipe import load_recipe  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PROMPT_BYTES, TOP_K = 64, 40
# TINYLANG_NATIVE_DECODE for each path; "c" lifts the limits, "auto" is generation as it ships
PATHS = {"c": "1", "pytorch": "0", "auto": "1"}
STEP_PATHS = ("c", "pytorch")


def models() -> dict[str, Megabyte]:
    torch.manual_seed(0)
    out = {name: bench.build("tinylang", spec, 1024, torch.device("cpu")).eval() for name, spec in bench.CPU_SPECS.items()}
    out["fi-40m"] = Megabyte(load_recipe(ROOT / "recipes" / "fi-40m.yaml").model).eval()
    return out


def on_path(path: str, fn):
    """``fn()`` on one decode path. The C path with its limits lifted: this measures where they belong."""
    limits = native.MAX_BATCH, native.MAX_STAGE_PARAMETERS
    if path == "c":
        native.MAX_BATCH = native.MAX_STAGE_PARAMETERS = 1 << 40
    try:
        with bench.native_decode(PATHS[path]):
            return fn()
    finally:
        native.MAX_BATCH, native.MAX_STAGE_PARAMETERS = limits


def step_times(model: Megabyte, repeats: int) -> dict[str, dict[str, float]]:
    """Best-of-``repeats`` µs of one local step (mid-patch) and one global step, per path."""
    P = model.config.patch_size
    prompt = torch.randint(0, 256, (1, PROMPT_BYTES))
    new_byte = torch.tensor([65])
    out = {}
    with torch.inference_mode():
        for path in STEP_PATHS:
            state = on_path(path, lambda: GenerationState(model, prompt, 2 * P))
            local_pos, global_pos = P // 2, state.global_caches[0].length
            patch = state.history[:, :P]
            if path == "c":
                local = lambda: state.native.local_step(new_byte, state.cond[:, local_pos], local_pos)  # noqa: E731
                global_ = lambda: state.native.global_step(patch, global_pos)  # noqa: E731
            else:
                def local():
                    for cache in state.local_caches:
                        cache.length = local_pos
                    state.weights.local_step(new_byte, state.cond[:, local_pos], state.local_caches)

                def global_():
                    for cache in state.global_caches:
                        cache.length = global_pos
                    state.weights.global_step(patch, state.global_caches)
            number = max(1, int(2e-2 / max(1e-6, timeit.timeit(local, number=3) / 3)))
            out[path] = {
                "local_us": min(timeit.repeat(local, number=number, repeat=repeats)) / number * 1e6,
                "global_us": min(timeit.repeat(global_, number=max(1, number // 4), repeat=repeats))
                / max(1, number // 4) * 1e6,
            }
    return out


def generation_rates(model: Megabyte, batch: int, new_bytes: int, runs: int) -> dict[str, list[float]]:
    """Bytes/s (all rows) of ``runs`` generations per path, the paths taking turns."""
    prompt = torch.randint(0, 256, (batch, PROMPT_BYTES))
    rates: dict[str, list[float]] = {path: [] for path in PATHS}
    with torch.inference_mode():
        for path in PATHS:  # warm-up (and the C library's build, once)
            on_path(path, lambda: model.generate(prompt, 16, temperature=1.0, top_k=TOP_K))
        for _ in range(runs):
            for path in PATHS:
                start = time.perf_counter()
                on_path(path, lambda: model.generate(prompt, new_bytes, temperature=1.0, top_k=TOP_K))
                rates[path].append(batch * new_bytes / (time.perf_counter() - start))
    return rates


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=5, help="generations per path and setting")
    p.add_argument("--repeats", type=int, default=7, help="repeats of each step timing (best is kept)")
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if native.library() is None:
        sys.exit("the C decode steps could not be built here (no working C compiler): nothing to compare")
    report = {"meta": {"torch": torch.__version__, "threads": args.threads, "cpu": bench.proc_field("/proc/cpuinfo", "model name"),
                       "loadavg_before": os.getloadavg(), "max_batch": native.MAX_BATCH,
                       "max_stage_parameters": native.MAX_STAGE_PARAMETERS}, "models": {}, "batches": {}}
    print("| model | params | path | local step µs | global step µs | gen bytes/s, batch 1 (median) |")
    print("|---|--:|---|--:|--:|--:|")
    # "auto": as generate() runs by default, the limits in place
    for name, model in models().items():
        steps = step_times(model, args.repeats)
        rates = generation_rates(model, 1, 256 if name == "fi-40m" else 512, args.runs)
        report["models"][name] = {"params": model.num_parameters(), "steps": steps, "gen_bytes_per_s": rates}
        for path in PATHS:
            local, global_ = (f"{steps[path][k]:,.0f}" if path in steps else "-" for k in ("local_us", "global_us"))
            print(f"| {name} | {model.num_parameters() / 1e6:.1f}M | {path} | {local} | {global_} | "
                  f"{statistics.median(rates[path]):,.0f} |")
    small = bench.build("tinylang", bench.CPU_SPECS["small"], 1024, torch.device("cpu")).eval()
    print("\n| small model, batch | C bytes/s | PyTorch bytes/s | C / PyTorch | auto bytes/s |\n|--:|--:|--:|--:|--:|")
    for batch in (1, 2, 4, 8):
        rates = generation_rates(small, batch, 256, args.runs)
        report["batches"][batch] = rates
        c, pt, auto = (statistics.median(rates[path]) for path in ("c", "pytorch", "auto"))
        print(f"| {batch} | {c:,.0f} | {pt:,.0f} | {c / pt:.2f}x | {auto:,.0f} |")
    report["meta"]["loadavg_after"] = os.getloadavg()
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n")
        print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
