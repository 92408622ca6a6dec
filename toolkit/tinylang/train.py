"""Training a MEGABYTE model from a recipe: setup -> batches -> evaluation -> schedule -> loop.

Built for multi-hour runs on a laptop: atomic checkpoints that resume exactly (same losses as an
uninterrupted run), Ctrl-C that finishes the current step and saves, budgets in steps, bytes or
minutes, and a progress bar with loss, bits per byte, bytes/s and ETA.

The same loop runs under ``torchrun`` (DistributedDataParallel): every rank draws the same window
starts and keeps its share of them, so N ranks with batch b see exactly the batch one process with
batch N*b would see; only rank 0 logs, samples and writes checkpoints.

    result = train(load_recipe("recipes/fi-tiny.yaml"), resume=False)
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console

from .checkpoint import CHECKPOINT_NAME, CheckpointError, check_same_model, load_checkpoint, load_model, save_checkpoint
from .cpu_parallel import CpuDataParallel, auto_workers, cpu_workers_problem
from .data import ByteData, bits_per_byte, decode_bytes
from .distributed import Distributed
from .model import BOS_ID, Megabyte
from .outputs import make_folder
from .recipe import OptimConfig, Recipe, recipe_to_yaml
from .runtime import autocast_context, pick_precision, precision_name
from .train_console import StopRequest, append_jsonl, one_line, progress_bar, truncate_jsonl

METRICS_NAME, SAMPLES_NAME, RECIPE_NAME = "metrics.jsonl", "samples.jsonl", "recipe.yaml"


class TrainError(RuntimeError):
    """A run that cannot start as asked (the message says what to do instead)."""


@dataclass
class TrainResult:
    run_dir: Path
    step: int
    train_loss: float | None
    val_bpb: float | None
    bytes_seen: int
    elapsed_s: float
    stopped_by: str  # "max_steps", "max_minutes", "max_bytes" or "interrupt"


# -- setup --------------------------------------------------------------------------------------


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def build_optimizer(model: Megabyte, optim: OptimConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only (embeddings included, norms excluded)."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": optim.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    kwargs: dict[str, Any] = dict(lr=optim.lr, betas=(optim.beta1, optim.beta2))
    # The fused kernel: on CPU it measured 3-4x faster than the default (foreach) step.
    if device.type in ("cuda", "cpu"):
        kwargs["fused"] = True
    return torch.optim.AdamW(groups, **kwargs)


# -- schedule -----------------------------------------------------------------------------------


def learning_rate(step: int, optim: OptimConfig) -> float:
    """Linear warmup to ``lr``, cosine decay to ``min_lr`` at ``lr_decay_steps``, then flat.
    ``step`` counts from 1 (the first optimizer step)."""
    if step <= optim.warmup_steps:
        return optim.lr * step / max(1, optim.warmup_steps)
    if step >= optim.lr_decay_steps:
        return optim.min_lr
    progress = (step - optim.warmup_steps) / max(1, optim.lr_decay_steps - optim.warmup_steps)
    return optim.min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (optim.lr - optim.min_lr)


# -- evaluation ---------------------------------------------------------------------------------


@torch.no_grad()
def validation_loss(
    model: torch.nn.Module, batches, device: torch.device, dtype: torch.dtype | None, dist: Distributed | None = None,
    parallel: CpuDataParallel | None = None,
) -> float:
    """Mean next-byte cross-entropy (nats) over fixed validation windows, weighted by target count.
    Under torchrun each rank takes every N-th batch and the sums are added up; with ``parallel`` each
    batch is cut over its CPU threads."""
    dist = dist or Distributed(device=device)
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for ids, targets in batches[dist.rank :: dist.world_size]:
        if parallel is not None:
            loss = parallel.loss(ids.to(device), targets.to(device))
        else:
            with autocast_context(device, dtype):
                _, loss = model(ids.to(device), targets.to(device))
        n = targets.numel()
        total, count = total + float(loss) * n, count + n
    model.train(was_training)
    total, count = dist.sum([total, float(count)])
    return total / max(1, count)


def generate_samples(model: Megabyte, recipe: Recipe, step: int, device: torch.device) -> list[str]:
    cfg = recipe.eval
    if cfg.samples == 0:
        return []
    prompt = [BOS_ID] + list(cfg.sample_prompt.encode("utf-8"))
    ids = torch.tensor([prompt] * cfg.samples, device=device)
    generator = torch.Generator(device=device).manual_seed(recipe.train.seed * 1_000_003 + step)
    out = model.generate(
        ids, cfg.sample_bytes, temperature=cfg.temperature, top_k=cfg.top_k, stop_at_end=True, generator=generator
    )
    return [decode_bytes(row) for row in out.cpu()]


# -- the loop -----------------------------------------------------------------------------------


def pretrained_weights(source: str, recipe: Recipe) -> dict[str, torch.Tensor]:
    """Fine-tuning: the weights of a finished run (same model shape), checked before minutes of encoding."""
    try:
        with torch.random.fork_rng(devices=[]):  # building the loaded model must not move this run's seed
            pretrained, _ = load_model(source)
    except CheckpointError as error:
        raise TrainError(f"train.init_from: {error}") from None
    ours, theirs = recipe.model.model_dump(), pretrained.config.model_dump()
    if recipe.model.positions == "rotary":  # rotary tables are not weights: a longer context fine-tunes fine
        ours.pop("context_bytes"), theirs.pop("context_bytes")
    if ours != theirs:
        diffs = ", ".join(f"model.{k}: {theirs[k]!r} there, {v!r} here" for k, v in ours.items() if theirs[k] != v)
        raise TrainError(f"train.init_from: {source} has a different model shape than this recipe ({diffs})")
    return pretrained.state_dict()


def accumulation_steps(recipe: Recipe, world_size: int) -> int:
    """Micro-batches per optimizer step on each rank; derived from train.global_batch_size when set."""
    cfg = recipe.train
    if cfg.global_batch_size is None:
        return cfg.grad_accum_steps
    per_pass = world_size * cfg.batch_size
    if cfg.global_batch_size % per_pass:
        raise TrainError(
            f"train.global_batch_size ({cfg.global_batch_size}) must be a multiple of processes x train.batch_size "
            f"({world_size} x {cfg.batch_size} = {per_pass})"
        )
    steps = cfg.global_batch_size // per_pass
    if cfg.grad_accum_steps not in (1, steps):
        raise TrainError(
            f"train.grad_accum_steps ({cfg.grad_accum_steps}) contradicts train.global_batch_size "
            f"({cfg.global_batch_size} = {world_size} processes x {cfg.batch_size} x {steps}); set only one"
        )
    return steps


def budget_hint(stopped_by: str, cfg) -> str | None:
    """What to change when a budget other than max_steps ended the run first: a recipe with a time
    budget (fi-tiny's 6 minutes) otherwise stops a longer run silently, or never starts a resumed one."""
    if stopped_by not in ("max_minutes", "max_bytes"):
        return None
    limit = getattr(cfg, stopped_by)
    shown = f"{limit:g}" if isinstance(limit, float) else f"{limit:,}"
    return (f"train.{stopped_by}={shown} ended the run before train.max_steps={cfg.max_steps:,}; "
            f"to train on, raise it or lift it (--set train.{stopped_by}=null) and --resume.")


def cpu_workers(recipe: Recipe, device: torch.device, dist: Distributed) -> int:
    """Row slices each micro-batch is cut into, one per thread (1: plain steps); see cpu_parallel.py."""
    cfg = recipe.train
    if cfg.cpu_workers == "auto":
        return auto_workers(device, dist.enabled, cfg.compile, recipe.model.dropout, cfg.batch_size)
    problem = cpu_workers_problem(device, dist.enabled, cfg.compile, recipe.model.dropout)
    if cfg.cpu_workers > 1 and problem:
        raise TrainError(f"train.cpu_workers={cfg.cpu_workers} cannot be used here: {problem}. "
                         "Set train.cpu_workers=1 (or auto, which chooses for you).")
    return min(cfg.cpu_workers, cfg.batch_size)


def train(recipe: Recipe, resume: bool = False, console: Console | None = None) -> TrainResult:
    """Train (or resume) the run of ``recipe``; under torchrun, one rank of a data-parallel run."""
    if recipe.train.threads:
        torch.set_num_threads(recipe.train.threads)
    dist = Distributed.from_environment(recipe.train.device)
    try:
        return _train(recipe, resume, console or Console(), dist)
    finally:
        dist.close()


def _train(recipe: Recipe, resume: bool, console: Console, dist: Distributed) -> TrainResult:
    if not dist.is_main:
        console = Console(quiet=True)
    cfg, run_dir = recipe.train, Path(recipe.output.dir)
    ckpt_path = run_dir / CHECKPOINT_NAME
    seen_by = dist.sum([float(ckpt_path.exists())])[0]
    if 0 < seen_by < dist.world_size:
        raise TrainError(
            f"{ckpt_path} is visible to {seen_by:.0f} of {dist.world_size} processes: output.dir must be on a "
            "filesystem every node shares, or the ranks would start from different states"
        )
    if ckpt_path.exists() and not resume:
        raise TrainError(
            f"{run_dir} already holds a run ({CHECKPOINT_NAME}). Continue it with --resume, or choose another "
            "output directory (--set output.dir=...)."
        )
    problem = make_folder(run_dir, "output.dir") if dist.is_main else None  # before minutes of encoding
    if problem:
        raise TrainError(problem)
    if resume and not ckpt_path.exists():
        console.print(f"[yellow]No checkpoint in {run_dir}; starting a new run.")
        resume = False

    device = dist.device
    dtype = pick_precision(cfg.precision, device)
    grad_accum = accumulation_steps(recipe, dist.world_size)
    workers = cpu_workers(recipe, device, dist)
    pretrained = pretrained_weights(cfg.init_from, recipe) if cfg.init_from and not resume else None
    seed_everything(cfg.seed)
    data = ByteData.from_config(recipe.data, console)  # one rank encodes, the others wait on its lock
    context = recipe.model.context_bytes
    window = min(context, len(data.train) - 1)  # the inputs of one training window (random_batch)
    if window < context:
        console.print(f"[yellow]The training split holds {len(data.train):,} ids, less than one window of "
                      f"model.context_bytes={context:,}: every window is the whole split ({window:,} bytes), "
                      "so every step sees the same text. Add stories, or lower model.context_bytes.")
    # the same windows whatever the number of processes: each rank evaluates every N-th batch
    val_batches = data.validation.fixed_batches(recipe.eval.batches * dist.world_size, cfg.batch_size, context)

    model = Megabyte(recipe.model).to(device)
    optimizer = build_optimizer(model, recipe.optim, device)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    sampler = torch.Generator().manual_seed(cfg.seed)
    step, bytes_seen, elapsed_before, val_bpb, train_loss = 0, 0, 0.0, None, None

    if resume:
        payload = load_checkpoint(ckpt_path)
        check_same_model(payload["model_config"], recipe.model, ckpt_path)
        model.load_state_dict(payload["model"])
        optimizer.load_state_dict(payload["optimizer"])
        scaler.load_state_dict(payload["scaler"])
        sampler.set_state(payload["rng"]["sampler"])
        torch.set_rng_state(payload["rng"]["torch"])
        cuda_states = payload["rng"].get("cuda_by_rank")
        if device.type == "cuda" and cuda_states and len(cuda_states) == dist.world_size:
            torch.cuda.set_rng_state(cuda_states[dist.rank], device)  # each rank's own GPU stream
        elif device.type == "cuda" and payload["rng"].get("cuda") is not None and not dist.enabled:
            torch.cuda.set_rng_state_all(payload["rng"]["cuda"])  # checkpoints from before cuda_by_rank
        random.setstate(payload["rng"]["python"])
        np.random.set_state(payload["rng"]["numpy"])
        step, bytes_seen, elapsed_before = payload["step"], payload["bytes_seen"], payload["elapsed_s"]
        if step > cfg.max_steps:
            raise TrainError(f"{ckpt_path} is at step {step:,}, past train.max_steps={cfg.max_steps:,}: "
                             f"raise train.max_steps to continue the run (resuming never rewinds it)")
        val_bpb, train_loss = payload.get("val_bpb"), payload.get("train_loss")
        if payload.get("world_size", 1) != dist.world_size:
            console.print(f"[yellow]Note: the checkpoint was written by {payload.get('world_size', 1)} process(es), "
                          f"this run has {dist.world_size}; the batch per step changes unless train.global_batch_size is set.")
        if payload.get("cpu_workers", 1) != workers:
            console.print(f"[yellow]Note: the checkpoint's steps cut each batch into {payload.get('cpu_workers', 1)} "
                          f"slice(s) on CPU threads, this run into {workers} (train.cpu_workers): the run continues "
                          "alike, but its losses can differ in the last digits from an uninterrupted run.")
        if dist.is_main:
            for name in (METRICS_NAME, SAMPLES_NAME):
                truncate_jsonl(run_dir / name, step)
        console.print(f"Resuming {run_dir} from step {step:,} ({bytes_seen:,} bytes seen)")
    else:
        if pretrained is not None:
            model.load_state_dict(pretrained)
            console.print(f"Starting from the weights of {cfg.init_from}")
        if dist.is_main:
            for name in (METRICS_NAME, SAMPLES_NAME):
                (run_dir / name).unlink(missing_ok=True)
    if dist.is_main:
        (run_dir / RECIPE_NAME).write_text(recipe_to_yaml(recipe), encoding="utf-8")

    wrapped: torch.nn.Module = model
    if dist.enabled:
        wrapped = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    forward = torch.compile(wrapped) if cfg.compile else wrapped
    evaluate_with = model if dist.enabled else forward  # DDP's wrapper is for training steps only
    bytes_per_step = dist.world_size * cfg.batch_size * grad_accum * window
    processes = f" x {dist.world_size} processes" if dist.enabled else ""
    threads = f", data parallel over {workers} threads" if workers > 1 else ""
    console.print(
        f"[bold]tinylang train[/] {model.num_parameters():,} parameters on {device.type}{processes}"
        f" ({precision_name(dtype)}{threads}), {bytes_per_step:,} bytes/step, "
        f"train {data.train.text_bytes:,} bytes in {data.train.stories:,} stories, "
        f"validation {data.validation.text_bytes:,} bytes -> {run_dir}"
    )
    if recipe.optim.lr_decay_steps > cfg.max_steps:
        console.print(
            f"[yellow]Note: optim.lr_decay_steps ({recipe.optim.lr_decay_steps:,}) > train.max_steps "
            f"({cfg.max_steps:,}): the run ends before the learning rate has decayed."
        )

    def checkpoint() -> None:
        # every rank's GPU random state (dropout), gathered to rank 0 by a collective all ranks join
        cuda_states = dist.gather(torch.cuda.get_rng_state(device)) if device.type == "cuda" else None
        if not dist.is_main:
            return
        save_checkpoint(
            ckpt_path,
            {
                "model": model.state_dict(),
                "model_config": recipe.model.model_dump(),
                "optimizer": optimizer.state_dict(),
                "scaler": scaler.state_dict(),
                "step": step,
                "bytes_seen": bytes_seen,
                "elapsed_s": elapsed_before + (time.monotonic() - started),
                "train_loss": train_loss,
                "val_bpb": val_bpb,
                "recipe": recipe.model_dump(mode="json"),
                "workdir": os.getcwd(),  # what the recipe's relative paths mean (checkpoint.with_data_found)
                "data_kind": data.source_kind,  # a local corpus is never looked for on the Hub later
                "world_size": dist.world_size,
                "cpu_workers": workers,
                "rng": {
                    "sampler": sampler.get_state(),
                    "torch": torch.get_rng_state(),
                    "cuda_by_rank": cuda_states,
                    "python": random.getstate(),
                    "numpy": np.random.get_state(),
                },
            },
        )

    def stop_reason(interrupted: bool = False) -> str | None:
        """Why to stop now, if at all; every rank gets the same answer (clocks and Ctrl-C differ)."""
        flags = [
            step >= cfg.max_steps,
            cfg.max_bytes is not None and bytes_seen >= cfg.max_bytes,
            cfg.max_minutes is not None and elapsed_before + time.monotonic() - started >= cfg.max_minutes * 60,
            interrupted,
        ]
        flags = [value > 0 for value in dist.sum([float(flag) for flag in flags])]
        return next((name for name, flag in zip(("max_steps", "max_bytes", "max_minutes", "interrupt"), flags) if flag),
                    None)

    started = time.monotonic()
    model.train()
    stopped_by = stop_reason()
    rate_window: list[tuple[float, int]] = [(started, bytes_seen)]
    bad_steps = 0
    parallel = CpuDataParallel(model, workers, dtype) if workers > 1 else None
    with StopRequest(console) as stop, progress_bar(console) as progress, parallel or contextlib.nullcontext():
        task = progress.add_task("train", total=cfg.max_steps, completed=step, loss="-", bpb="-", rate="-")
        while stopped_by is None:
            step += 1
            lr = learning_rate(step, recipe.optim)
            for group in optimizer.param_groups:
                group["lr"] = lr
            loss_sum = 0.0
            for micro in range(grad_accum):
                ids, targets = data.train.random_batch(
                    cfg.batch_size, context, sampler, recipe.data.windows, (dist.rank, dist.world_size)
                )
                if parallel is not None:
                    loss = parallel.forward_backward(ids, targets, 1 / grad_accum)
                else:
                    # DDP averages gradients over ranks on the last micro-batch only.
                    syncing = not dist.enabled or micro == grad_accum - 1
                    with contextlib.nullcontext() if syncing else wrapped.no_sync():
                        with autocast_context(device, dtype):
                            _, loss = forward(ids.to(device, non_blocking=True), targets.to(device, non_blocking=True))
                        scaler.scale(loss / grad_accum).backward()
                loss_sum += float(loss.detach())
            scaler.unscale_(optimizer)
            grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.optim.grad_clip or math.inf))
            if math.isfinite(grad_norm) or scaler.is_enabled():  # the fp16 scaler skips such steps itself
                scaler.step(optimizer)
                bad_steps = 0
            else:
                bad_steps += 1
                progress.console.print(f"[yellow]step {step}: gradient norm is {grad_norm}; update skipped")
                if bad_steps >= 5:
                    raise TrainError(f"step {step}: 5 steps in a row had non-finite gradients; lower optim.lr "
                                     "or use train.precision=fp32")
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            train_loss = dist.mean(loss_sum / grad_accum)
            if not math.isfinite(train_loss):
                raise TrainError(f"step {step}: the loss is {train_loss}; lower optim.lr or use train.precision=fp32")
            bytes_seen += bytes_per_step

            now = time.monotonic()
            rate_window = (rate_window + [(now, bytes_seen)])[-20:]
            rate = (rate_window[-1][1] - rate_window[0][1]) / max(1e-9, rate_window[-1][0] - rate_window[0][0])
            stopped_by = stop_reason(stop.requested)
            # Ctrl-C skips the evaluation so the checkpoint comes at once (torchrun kills 30 s after it)
            evaluate_now = step % recipe.eval.every_steps == 0 or stopped_by not in (None, "interrupt")
            row: dict[str, Any] | None = None
            if step % cfg.log_every == 0 or evaluate_now or stopped_by is not None:
                row = {"step": step, "train_loss": round(train_loss, 6), "lr": lr, "grad_norm": round(grad_norm, 4),
                       "bytes": bytes_seen,
                       "bytes_per_s": round(rate, 1), "elapsed_s": round(elapsed_before + now - started, 2)}
            if evaluate_now:
                val_loss = validation_loss(evaluate_with, val_batches, device, dtype, dist, parallel)
                val_bpb = bits_per_byte(val_loss)
                row |= {"val_loss": round(val_loss, 6), "val_bpb": round(val_bpb, 6)}
                samples = generate_samples(model, recipe, step, device) if dist.is_main else []
                for text in samples:
                    append_jsonl(run_dir / SAMPLES_NAME, {"step": step, "text": text})
                progress.console.print(f"step {step:,}: train loss {train_loss:.4f}, val bpb {val_bpb:.4f}")
                for text in samples[:2]:
                    progress.console.print("  " + one_line(text, 160), style="dim", highlight=False, markup=False)
            if row is not None and dist.is_main:
                append_jsonl(run_dir / METRICS_NAME, row)
            if step % cfg.checkpoint_every == 0 or stopped_by is not None:
                checkpoint()
            progress.update(
                task, completed=step, loss=f"{train_loss:.3f}", rate=f"{rate:,.0f}",
                bpb="-" if val_bpb is None else f"{val_bpb:.3f}",
            )

    elapsed = elapsed_before + time.monotonic() - started
    if stopped_by == "interrupt":
        console.print(f"Interrupted at step {step:,}; checkpoint saved. Continue with --resume.")
    else:
        console.print(f"Done: {step:,} steps ({stopped_by}), val bpb {val_bpb if val_bpb is None else round(val_bpb, 4)}"
                      f" -> {run_dir}")
        hint = budget_hint(stopped_by, cfg)
        if hint:
            console.print(f"[yellow]{hint}")
    return TrainResult(run_dir, step, train_loss, val_bpb, bytes_seen, elapsed, stopped_by or "max_steps")


__all__ = ["CheckpointError", "TrainError", "TrainResult", "learning_rate", "train"]
