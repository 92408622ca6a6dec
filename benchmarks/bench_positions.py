"""Rotary against learned positions: the same recipe, seed, data and step budget, trained twice.

This is the measurement behind the model's default (docs/design.md). It uses the real trainer, so
what it compares is exactly what `tinylang train` would do.

    python benchmarks/bench_positions.py --steps 300 --out docs/bench-positions.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from rich.console import Console

from tinylang.recipe import load_recipe
from tinylang.train import train

ROOT = Path(__file__).resolve().parents[1]


def run(positions: str, args: argparse.Namespace, scratch: Path) -> dict:
    overrides = [
        f"model.positions={positions}",
        f"train.max_steps={args.steps}",
        f"optim.lr_decay_steps={args.steps}",
        "train.max_minutes=null",
        f"eval.every_steps={args.steps}",
        "eval.samples=0",
        f"output.dir={scratch / positions}",
        f"data.cache_dir={scratch / 'cache'}",
    ]
    if args.data:
        overrides.append(f"data.path={args.data}")
    recipe = load_recipe(ROOT / args.recipe, overrides)
    started = time.perf_counter()
    result = train(recipe, console=Console(quiet=True))
    seconds = time.perf_counter() - started
    return {
        "positions": positions,
        "steps": result.step,
        "val_bpb": round(result.val_bpb, 4),
        "train_loss": round(result.train_loss, 4),
        "seconds": round(seconds, 1),
        "bytes_per_s": round(result.bytes_seen / seconds),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="recipes/fi-tiny.yaml")
    parser.add_argument("--data", default=None, help="Override data.path of the recipe.")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--out", default=None, help="Write the results as JSON here.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        rows = [run(p, args, Path(scratch)) for p in ("rotary", "learned")]
    print("| positions | steps | val bpb | final train loss | seconds | bytes/s |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['positions']} | {r['steps']} | {r['val_bpb']} | {r['train_loss']} | {r['seconds']} | {r['bytes_per_s']:,} |")
    if args.out:
        Path(args.out).write_text(json.dumps({"recipe": args.recipe, "data": args.data, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
