"""CPU data parallelism: row slices on threads give the gradients of one plain backward, repeatably,
single-threaded inside, and the trainer uses it only where runs stay exact."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from tinylang.cpu_parallel import CpuDataParallel
from tinylang.model import PAD_ID, Megabyte
from tinylang.recipe import load_recipe
from tinylang.distributed import Distributed
from tinylang.train import TrainError, cpu_workers, train

from .conftest import tiny_config


def model_and_batch(rows: int = 6, length: int = 31):
    torch.manual_seed(0)
    model = Megabyte(tiny_config())
    ids = torch.randint(0, 256, (rows, length))
    targets = torch.randint(0, 256, (rows, length))
    targets[1, 20:] = PAD_ID  # rows score different numbers of targets
    targets[4:] = PAD_ID  # and the last slice of three scores none
    return model, ids, targets


def plain_gradients(model, ids, targets, scale=1.0):
    model.zero_grad(set_to_none=True)
    _, loss = model(ids, targets)
    (loss * scale).backward()
    return loss.detach(), [p.grad.clone() for p in model.parameters()]


def parallel_gradients(model, ids, targets, workers, scale=1.0):
    model.zero_grad(set_to_none=True)
    with CpuDataParallel(model, workers) as parallel:
        loss = parallel.forward_backward(ids, targets, scale)
    return loss, [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize("workers", [2, 3])
def test_slices_give_the_loss_and_gradients_of_one_backward(workers):
    model, ids, targets = model_and_batch()
    loss, grads = plain_gradients(model, ids, targets, scale=0.5)
    got_loss, got = parallel_gradients(model, ids, targets, workers, scale=0.5)
    assert torch.allclose(got_loss, loss, rtol=1e-5)
    for a, b in zip(got, grads):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6)


def test_gradients_are_the_same_bits_every_run_and_add_to_existing_ones():
    model, ids, targets = model_and_batch()
    _, first = parallel_gradients(model, ids, targets, 2)
    _, again = parallel_gradients(model, ids, targets, 2)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    # two micro-batches of half weight accumulate like gradient accumulation does
    model.zero_grad(set_to_none=True)
    with CpuDataParallel(model, 2) as parallel:
        parallel.forward_backward(ids, targets, 0.5)
        parallel.forward_backward(ids, targets, 0.5)
    for p, g in zip(model.parameters(), first):
        assert torch.allclose(p.grad, g, rtol=1e-5, atol=1e-7)


def test_validation_loss_matches_the_model():
    model, ids, targets = model_and_batch()
    with torch.no_grad():
        _, expected = model(ids, targets)
    with CpuDataParallel(model, 2) as parallel:
        assert parallel.loss(ids, targets) == pytest.approx(float(expected), rel=1e-5)
        assert math.isnan(parallel.loss(ids, torch.full_like(targets, PAD_ID)))  # nothing to score
        with pytest.raises(ValueError, match="no targets"):
            parallel.forward_backward(ids, torch.full_like(targets, PAD_ID))


class Spy(torch.nn.Module):
    """Records, inside each call, torch's thread count and whether autocast is on."""

    def __init__(self, model: Megabyte):
        super().__init__()
        self.model, self.seen = model, []

    def forward(self, ids, targets):
        self.seen.append((torch.get_num_threads(), torch.is_autocast_enabled("cpu")))
        return self.model(ids, targets)


def test_workers_run_single_threaded_in_the_asked_precision_and_threads_come_back():
    model, ids, targets = model_and_batch()
    spy = Spy(model)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with CpuDataParallel(spy, 2, dtype=torch.bfloat16) as parallel:
            assert torch.get_num_threads() == 1
            parallel.forward_backward(ids, targets)
        assert torch.get_num_threads() == 2
        assert spy.seen == [(1, True), (1, True)]
        with pytest.raises(RuntimeError, match="with"):
            parallel.loss(ids, targets)
    finally:
        torch.set_num_threads(before)


def metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_training_with_threads_resumes_exactly_and_matches_plain_steps(recipe_file, tmp_path, capsys):
    two = ["train.cpu_workers=2", "train.precision=fp32"]  # fp32 on every CPU: auto is bf16 on AMX ones
    stopped = tmp_path / "stopped"
    train(load_recipe(recipe_file, two + [f"output.dir={stopped}", "train.max_steps=6"]))
    assert "(fp32, data parallel over 2 threads)" in " ".join(capsys.readouterr().out.split())
    train(load_recipe(recipe_file, two + [f"output.dir={stopped}"]), resume=True)
    whole = tmp_path / "whole"
    train(load_recipe(recipe_file, two + [f"output.dir={whole}"]))
    capsys.readouterr()
    assert [r["train_loss"] for r in metrics(stopped)] == [r["train_loss"] for r in metrics(whole)]
    plain = tmp_path / "plain"
    train(load_recipe(recipe_file, ["train.cpu_workers=1", "train.precision=fp32", f"output.dir={plain}"]))
    assert "data parallel" not in capsys.readouterr().out
    for a, b in zip(metrics(whole), metrics(plain)):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)
        assert ("val_bpb" in a) == ("val_bpb" in b)
        assert a.get("val_bpb", 0) == pytest.approx(b.get("val_bpb", 0), rel=1e-4)


def test_accumulated_micro_batches_match_plain_steps(recipe_file, tmp_path):
    accumulate = ["train.grad_accum_steps=2", "train.max_steps=6", "eval.every_steps=3"]
    threads, plain = tmp_path / "threads", tmp_path / "plain"
    train(load_recipe(recipe_file, accumulate + ["train.cpu_workers=2", f"output.dir={threads}"]))
    train(load_recipe(recipe_file, accumulate + ["train.cpu_workers=1", f"output.dir={plain}"]))
    for a, b in zip(metrics(threads), metrics(plain), strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)
        assert a["grad_norm"] == pytest.approx(b["grad_norm"], rel=1e-3)  # the 1 / grad_accum scale too


def test_resuming_with_another_slice_count_says_so(recipe_file, tmp_path, capsys):
    run = tmp_path / "run"
    train(load_recipe(recipe_file, ["train.cpu_workers=2", "train.max_steps=4", f"output.dir={run}"]))
    train(load_recipe(recipe_file, ["train.cpu_workers=1", "train.max_steps=6", f"output.dir={run}"]), resume=True)
    assert "cut each batch into 2 slice(s) on CPU threads, this run into 1" in " ".join(capsys.readouterr().out.split())


def test_auto_slices_only_where_it_was_measured_and_runs_stay_exact(recipe_file, capsys):
    recipe = load_recipe(recipe_file)
    before = torch.get_num_threads()
    try:
        counts = {}
        for threads in (1, 2, 4, 8):
            torch.set_num_threads(threads)
            counts[threads] = cpu_workers(recipe, torch.device("cpu"), Distributed(device=torch.device("cpu")))
    finally:
        torch.set_num_threads(before)
    assert counts == {1: 1, 2: 2, 4: 4, 8: 1}  # batch 4; above MAX_AUTO_WORKERS threads, plain steps
    with pytest.raises(TrainError, match="dropout.*train.cpu_workers=1"):
        train(load_recipe(recipe_file, ["train.cpu_workers=2", "model.dropout=0.1"]))
    capsys.readouterr()
    train(load_recipe(recipe_file, ["model.dropout=0.1", "train.max_steps=2"]))  # auto: plain steps
    assert "data parallel" not in capsys.readouterr().out


def test_bf16_training_with_threads_resumes_exactly(recipe_file, tmp_path, capsys):
    """What ``precision: auto`` trains in on CPUs with native bf16 (emulated, and slower, elsewhere)."""
    bf16 = ["train.cpu_workers=2", "train.precision=bf16", "train.max_steps=8"]
    stopped, whole = tmp_path / "stopped", tmp_path / "whole"
    train(load_recipe(recipe_file, bf16 + [f"output.dir={stopped}", "train.max_steps=4"]))
    assert "(bf16, data parallel over 2 threads)" in " ".join(capsys.readouterr().out.split())
    train(load_recipe(recipe_file, bf16 + [f"output.dir={stopped}"]), resume=True)
    train(load_recipe(recipe_file, bf16 + [f"output.dir={whole}"]))
    losses = [r["train_loss"] for r in metrics(stopped)]
    assert len(losses) == 8 and losses == [r["train_loss"] for r in metrics(whole)]
