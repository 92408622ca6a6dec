"""Data-parallel training under torchrun, on CPU with gloo: 2 ranks with batch b train exactly like
1 process with batch 2b; only rank 0 writes; resume and gradient accumulation keep that true."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tinylang.recipe import load_recipe
from tinylang.train import TrainError, accumulation_steps, train

# Launch + two torch imports per run: a few seconds each on 2 cores.
STEPS = 8
COMMON = [f"train.max_steps={STEPS}", "train.precision=fp32", "train.device=cpu", "train.threads=1",
          "train.checkpoint_every=4", "eval.every_steps=4"]


def torchrun(recipe: Path, overrides: list[str], *extra: str) -> subprocess.CompletedProcess:
    args = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
            "-m", "tinylang", "train", str(recipe), *extra]
    for item in overrides:
        args += ["--set", item]
    env = dict(os.environ, OMP_NUM_THREADS="1", COLUMNS="200")
    done = subprocess.run(args, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def close(a: list[float], b: list[float], tol: float = 1e-5) -> bool:
    return len(a) == len(b) and all(abs(x - y) <= tol * max(1.0, abs(y)) for x, y in zip(a, b))


@pytest.fixture
def single_run(recipe_file, tmp_path):
    """One process, batch 8: the reference the ranks must match."""
    from rich.console import Console

    run = tmp_path / "single"
    train(load_recipe(recipe_file, COMMON + ["train.batch_size=8", f"output.dir={run}"]), console=Console(quiet=True))
    return run


def test_two_ranks_match_one_process_with_twice_the_batch(recipe_file, tmp_path, single_run):
    run = tmp_path / "ddp"
    done = torchrun(recipe_file, COMMON + ["train.batch_size=4", f"output.dir={run}"])
    assert "x 2 processes" in done.stdout and done.stdout.count("Done:") == 1  # rank 1 prints nothing
    ddp, ref = rows(run), rows(single_run)
    assert [r["step"] for r in ddp] == [r["step"] for r in ref] == list(range(1, STEPS + 1))
    assert close([r["train_loss"] for r in ddp], [r["train_loss"] for r in ref])
    assert close([r["val_bpb"] for r in ddp if "val_bpb" in r], [r["val_bpb"] for r in ref if "val_bpb" in r])
    assert [r["bytes"] for r in ddp] == [r["bytes"] for r in ref]  # bytes count the global batch
    samples = (run / "samples.jsonl").read_text().splitlines()
    assert len(samples) == 2  # rank 0 alone samples (1 sample at steps 4 and 8)

    from tinylang.checkpoint import load_checkpoint

    assert load_checkpoint(run / "checkpoint.pt")["world_size"] == 2


def test_resume_and_accumulation_under_torchrun(recipe_file, tmp_path, single_run):
    """Stopped at step 4 and resumed, with batch 2 x 2 micro-batches per rank (global batch 8 derived
    from train.global_batch_size), the run still follows the single process."""
    run = tmp_path / "ddp-accum"
    accum = ["train.batch_size=2", "train.global_batch_size=8", f"output.dir={run}"]
    torchrun(recipe_file, COMMON + accum + ["train.max_steps=4"])
    done = torchrun(recipe_file, COMMON + accum, "--resume")
    assert "Resuming" in done.stdout
    ddp, ref = rows(run), rows(single_run)
    assert [r["step"] for r in ddp] == list(range(1, STEPS + 1))
    assert close([r["train_loss"] for r in ddp], [r["train_loss"] for r in ref])


def test_global_batch_size_sets_accumulation(recipe_file):
    recipe = load_recipe(recipe_file, ["train.batch_size=4", "train.global_batch_size=32"])
    assert accumulation_steps(recipe, 1) == 8 and accumulation_steps(recipe, 2) == 4
    with pytest.raises(TrainError, match="multiple of processes x train.batch_size"):
        accumulation_steps(recipe, 3)
    clash = load_recipe(recipe_file, ["train.batch_size=4", "train.global_batch_size=32", "train.grad_accum_steps=2"])
    with pytest.raises(TrainError, match="contradicts"):
        accumulation_steps(clash, 1)
