#!/usr/bin/env python
"""Side-by-side benchmark of tinylang's Megabyte and the reference MEGABYTE_pytorch.MEGABYTE.

Both models get matched shapes (rotary positions, PyTorch SDPA, the same width, heads and head size),
the same batches and the same AdamW, and are timed alternately in one process so that machine noise
hits both alike. benchmarks/README.md says what each figure means; results go to docs/benchmarks.md.

    python benchmarks/bench_model.py --out docs/bench-results.json   # full CPU run (make bench)
    python benchmarks/bench_model.py --quick --skip-bpb                # smoke test
    python benchmarks/bench_model.py --device cuda --out docs/bench-results-cuda.json
"""

from __future__ import annotations

import os

os.environ.setdefault("TQDM_DISABLE", "1")  # the reference's generate() draws a tqdm bar; set before import

import argparse
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from MEGABYTE_pytorch import MEGABYTE
from rich.console import Console
from torch import nn
from torch.utils import flop_counter

from tinylang.corpus.build import BuildOptions, build_corpus
from tinylang.cpu_parallel import CpuDataParallel, auto_workers
from tinylang.data import ByteData
from tinylang.model import BOS_ID, VOCAB_SIZE, Megabyte, MegabyteConfig, native
from tinylang.recipe import DataConfig, load_recipe
from tinylang.runtime import autocast_context, pick_precision, precision_name

KINDS = ("tinylang", "reference")
# Generation also times tinylang with its C decode steps off (PyTorch's only), on a CPU where they apply.
PYTORCH_STEPS = "tinylang-pytorch-steps"
BPB_CONTEXT, BPB_BATCH, BPB_LR, BPB_WARMUP = 512, 8, 2e-3, 50
PROMPT_BYTES, TOP_K = 64, 40
# Step counts and repeats; --quick trades precision for a run of about a minute.
FULL = dict(warmup=2, steps=8, budget_s=120.0, gen_bytes=512, gen_rounds=3, gen_runs_per_round=(3, 3, 1), eval_batches=16,
            memory_steps=3, matmul_repeats=10, bpb_stories=5000)
QUICK = dict(warmup=1, steps=2, budget_s=10.0, gen_bytes=64, gen_rounds=1, gen_runs_per_round=(2, 2, 1), eval_batches=2,
             memory_steps=1, matmul_repeats=3, batch=4, context=512, bpb_stories=300)


@dataclass(frozen=True)
class Spec:
    """Shapes shared by both models. The reference has one heads/dim_head for both stages, so its
    attention is as wide as tinylang's only when both stages have the same width (the CPU configs)."""

    patch: int
    global_dim: int
    global_layers: int
    local_dim: int
    local_layers: int
    head_dim: int


CPU_SPECS = {"small": Spec(8, 160, 4, 160, 2, 32), "medium": Spec(8, 320, 6, 320, 2, 64)}


class Reference(nn.Module):
    """The reference behind tinylang's interface, ``logits, loss = model(ids, targets)``, so one loop
    drives both. Its ``logits[:, i]`` change when ``ids[:, i]`` changes and not when later ids do, so
    they predict ``ids[i + 1]`` exactly like tinylang's: same targets, same cross-entropy, same work.
    (Its own ``return_loss=True`` path also scores byte 0 from a start token and ignores byte 0.)"""

    def __init__(self, spec: Spec, context: int):
        super().__init__()
        self.net = MEGABYTE(num_tokens=VOCAB_SIZE, dim=(spec.global_dim, spec.local_dim),
                            depth=(spec.global_layers, spec.local_layers),
                            max_seq_len=(context // spec.patch, spec.patch), dim_head=spec.head_dim,
                            heads=spec.global_dim // spec.head_dim, rel_pos=True, flash_attn=True)

    def forward(self, ids: torch.Tensor, targets: torch.Tensor | None = None):
        logits = self.net(ids)
        if targets is None:
            return logits, None
        return logits, F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1))


def build(kind: str, spec: Spec, context: int, device: torch.device) -> nn.Module:
    """A freshly seeded model, so every measurement of a kind starts from the same weights."""
    torch.manual_seed(0)
    if kind == "reference":
        return Reference(spec, context).to(device)
    config = MegabyteConfig(patch_size=spec.patch, context_bytes=context, global_dim=spec.global_dim,
                            global_layers=spec.global_layers, global_heads=spec.global_dim // spec.head_dim,
                            local_dim=spec.local_dim, local_layers=spec.local_layers,
                            local_heads=spec.local_dim // spec.head_dim, ff_mult=4, dropout=0.0)
    return Megabyte(config).to(device)


def make_optimizer(model: nn.Module, lr: float, device: torch.device) -> torch.optim.AdamW:
    """The same AdamW for both: decay on matrices only, fused (as tinylang's trainer)."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": 0.1},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95), fused=True)


def precision(kind: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype each model trains in (None: fp32). tinylang as ``tinylang train`` runs it
    (``train.precision: auto``: bf16 on CUDA and on CPUs with native bf16, else fp32). The reference has
    no precision setting: bf16 on CUDA, as anyone would run it there, fp32 on a CPU, where bf16 is the
    lever issue 2 expects only tinylang's trainer to pull."""
    if kind == "tinylang":
        return pick_precision("auto", device)
    return torch.bfloat16 if device.type == "cuda" else None


def sync(device: torch.device) -> None:
    """CUDA runs asynchronously: without this a timer measures kernel launches, not work."""
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device: torch.device):
    """(wall seconds, result) of ``fn()``, with the device idle at both ends."""
    sync(device)
    start = time.perf_counter()
    result = fn()
    sync(device)
    return time.perf_counter() - start, result


def threads_apply(device: torch.device) -> bool:
    """Whether ``tinylang train`` would cut batches over CPU threads here (train.cpu_workers: auto with
    this benchmark's models: no dropout, no compile, one process)."""
    return auto_workers(device, False, False, 0.0, batch_size=torch.get_num_threads()) > 1


def threaded(kind: str, model: nn.Module, device: torch.device, workers: int | None = None) -> CpuDataParallel:
    """The model in tinylang's CPU data parallelism, one slice per torch thread, as the trainer runs it."""
    return CpuDataParallel(model, workers or torch.get_num_threads(), precision(kind, device))


@contextmanager
def torch_threads(count: int):
    """torch's CPU thread count set to ``count`` inside the block, and put back after it."""
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def train_step(dtype: torch.dtype | None, model, opt, ids, targets, device, clip: float | None = None,
               parallel: CpuDataParallel | None = None):
    """One forward + backward + AdamW step under autocast to ``dtype`` (None: fp32): the unit that
    training throughput counts. ``parallel`` (entered, with its own dtype): the forward and backward
    run as its thread slices. Returns the loss and, when clipping, the gradient norm before clipping."""
    if parallel is not None:
        loss = parallel.forward_backward(ids, targets)
    else:
        with autocast_context(device, dtype):
            _, loss = model(ids, targets)
        loss.backward()
    norm = None if clip is None else torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    opt.step()
    opt.zero_grad(set_to_none=True)
    return loss.detach(), norm


def random_batches(count: int, batch: int, length: int, device: torch.device, seed: int = 0):
    """Random byte windows: speed does not depend on the text, and both models get the very same ones."""
    g = torch.Generator().manual_seed(seed)
    rows = [torch.randint(0, 256, (batch, length + 1), generator=g) for _ in range(count)]
    return [(r[:, :-1].to(device), r[:, 1:].to(device)) for r in rows]


def count_step_flops(kind: str, model: nn.Module, ids, targets, device: torch.device) -> int:
    """Forward + backward FLOPs of one training step. PyTorch's counter has no formula for the CPU
    SDPA kernel, so it is mapped to the generic attention formulas (which, like every formula there,
    count the full attention matrix and ignore the causal mask, for both models alike)."""
    aten = torch.ops.aten
    extra = {  # formulas receive shapes: (q, k, v, ...) forward and (grad_out, q, k, v, ...) backward
        aten._scaled_dot_product_flash_attention_for_cpu:
            lambda q, k, v, *_, **__: flop_counter.sdpa_flop_count(q, k, v),
        aten._scaled_dot_product_flash_attention_for_cpu_backward:
            lambda g, q, k, v, *_, **__: flop_counter.sdpa_backward_flop_count(g, q, k, v)}
    with flop_counter.FlopCounterMode(display=False, custom_mapping=extra) as counter:
        with autocast_context(device, precision(kind, device)):
            _, loss = model(ids, targets)
        loss.backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def matmul_ceiling(size: int, dtype: torch.dtype, device: torch.device, repeats: int) -> float:
    """Median GFLOP/s of one square matmul: the practical peak that MFU is measured against."""
    a, b = (torch.randn(size, size, device=device, dtype=dtype) for _ in range(2))
    times = [timed(lambda: a @ b, device)[0] for _ in range(repeats + 2)][2:]  # two warm-ups
    return 2 * size**3 / statistics.median(times) / 1e9


def try_compile(kind: str, model: nn.Module, batch, device: torch.device):
    """torch.compile plus one step to trigger compilation; returns (model, None) or (None, error)."""
    compiled = torch.compile(model)
    try:
        train_step(precision(kind, device), compiled, make_optimizer(compiled, 1e-4, device), *batch, device)
    except Exception as error:  # a model that does not compile is a result, not a crash
        return None, f"{type(error).__name__}: {error}"[:400]
    return compiled, None


def time_training(models: dict[str, nn.Module], batches, warmup: int, steps: int, device,
                  dtypes: dict[str, torch.dtype | None] | None = None) -> dict:
    """Seconds per training step of each model, interleaved A B A B ... so load spikes hit all alike.
    "+threads" labels keep their worker threads for the whole run, as the trainer does; torch runs
    single-threaded in them, and with its usual thread count for the other labels' steps. Each label
    trains in ``dtypes[label]``, by default its kind's precision (the label up to "+")."""
    dtypes = dtypes or {label: precision(label.split("+")[0], device) for label in models}
    opts = {label: make_optimizer(m, 1e-4, device) for label, m in models.items()}
    times: dict[str, list[float]] = {label: [] for label in models}
    threads = torch.get_num_threads()
    with ExitStack() as stack:
        parallels = {label: stack.enter_context(CpuDataParallel(model, threads, dtypes[label]))
                     for label, model in models.items() if label.endswith("+threads")}

        def step(label: str, ids, targets):
            if label in parallels:
                return train_step(dtypes[label], models[label], opts[label], ids, targets, device,
                                  parallel=parallels[label])
            with torch_threads(threads):
                return train_step(dtypes[label], models[label], opts[label], ids, targets, device)

        for i in range(warmup + steps):
            ids, targets = batches[i % len(batches)]
            for label in models:
                seconds, _ = timed(lambda: step(label, ids, targets), device)
                if i >= warmup:
                    times[label].append(seconds)
    return times


def bench_training(spec: Spec, args, device, ceilings: dict[str, float]) -> dict:
    """Throughput, FLOPs and MFU of both models, plain and in tinylang's CPU data parallelism ("+threads",
    where ``tinylang train`` uses it), and their torch.compile'd twins on CUDA or with --compile."""
    batches = random_batches(min(4, args.warmup + args.steps), args.batch, args.context, device)
    models = {k: build(k, spec, args.context, device) for k in KINDS}
    out = {"params": {k: sum(p.numel() for p in m.parameters()) for k, m in models.items()}, "compile_errors": {}}
    flops = {k: count_step_flops(k, m, *batches[0], device) for k, m in models.items()}
    if threads_apply(device):
        models |= {f"{k}+threads": build(k, spec, args.context, device) for k in KINDS}
    if device.type == "cuda" or args.compile:
        for kind in KINDS:
            compiled, error = try_compile(kind, build(kind, spec, args.context, device), batches[0], device)
            if compiled is not None:
                models[f"{kind}+compile"] = compiled
            else:
                out["compile_errors"][kind] = error
    times = time_training(models, batches, args.warmup, args.steps, device)
    rows = {}
    for label, seconds in times.items():
        kind = label.split("+")[0]
        step, step_flops, dtype = statistics.median(seconds), flops[kind], precision_name(precision(kind, device))
        rows[label] = {"step_s_median": step, "step_s": seconds, "bytes_per_s": args.batch * args.context / step,
                       "gflop_per_step": step_flops / 1e9, "achieved_gflops": step_flops / step / 1e9,
                       "precision": dtype, "mfu": step_flops / step / 1e9 / ceilings[dtype]}
    out["rows"] = rows
    # the headline: tinylang as `tinylang train` runs it, against the reference as it ships
    out["trained_as"] = "tinylang+threads" if "tinylang+threads" in rows else "tinylang"
    out["speedup"] = rows[out["trained_as"]]["bytes_per_s"] / rows["reference"]["bytes_per_s"]
    out["speedup_plain"] = rows["tinylang"]["bytes_per_s"] / rows["reference"]["bytes_per_s"]
    # The same ratio taken round by round (each round times every model once, back to back), then the
    # median: drift over the run, which moves one model's median more than the other's, cancels out.
    out["speedup_paired"] = statistics.median(
        r / t for t, r in zip(rows[out["trained_as"]]["step_s"], rows["reference"]["step_s"]))
    return out


def bench_generation(spec: Spec, args, device) -> dict:
    """Bytes/s sampling gen_bytes after a 64-byte prompt, batch 1, temperature 1, top-k 40, each model
    through its own API. The reference generates exactly prod(max_seq_len) - prompt bytes, so its model
    is built for prompt + gen_bytes; its top-k is a kept fraction (filter_thres) chosen to equal 40."""
    total = PROMPT_BYTES + args.gen_bytes
    if total % spec.patch:
        raise ValueError(f"--gen-bytes + {PROMPT_BYTES} must be a multiple of the patch size {spec.patch}")
    tiny = build("tinylang", spec, total, device).eval()
    ref = build("reference", spec, total, device).net.eval()
    thres = 1 - (TOP_K + 0.5) / VOCAB_SIZE
    assert max(int((1 - thres) * VOCAB_SIZE), 1) == TOP_K
    g = torch.Generator().manual_seed(1)
    prompt = torch.cat([torch.tensor([[BOS_ID]]), torch.randint(0, 256, (1, PROMPT_BYTES - 1), generator=g)], 1)
    prompt = prompt.to(device)
    runs = {"tinylang": lambda: tiny.generate(prompt, args.gen_bytes, temperature=1.0, top_k=TOP_K),
            PYTORCH_STEPS: lambda: pytorch_steps_only(runs["tinylang"]),
            "reference": lambda: ref.generate(prompt, filter_thres=thres, temperature=1.0)}
    kinds = ("tinylang", PYTORCH_STEPS, "reference") if device.type == "cpu" else KINDS
    # Rounds of back-to-back runs: tinylang's runs take 0.1-0.5 s, the reference's 6-15 s, so a busy
    # spell on a shared host can double one tinylang run while the reference's average over it;
    # several tinylang runs per round give both about the same exposure.
    per_round = dict(zip(("tinylang", PYTORCH_STEPS, "reference"), args.gen_runs_per_round))
    rounds: list[dict[str, list[float]]] = []
    # The reference's generate() leaves autograd on; inference_mode gives it the same footing as tinylang's.
    with torch.inference_mode():
        tiny.generate(prompt, 2 * spec.patch, temperature=1.0, top_k=TOP_K), ref(prompt)  # warm-up
        for _ in range(args.gen_rounds):
            rounds.append({kind: [] for kind in kinds})
            for kind in kinds:
                for _ in range(per_round[kind]):
                    seconds, out = timed(runs[kind], device)
                    rounds[-1][kind].append(seconds)
                    assert out.numel() == total, (kind, tuple(out.shape))
    times = {k: [t for r in rounds for t in r[k]] for k in kinds}
    rates = {k: args.gen_bytes / statistics.median(t) for k, t in times.items()}
    # round by round, as for training: each round's reference time over its tinylang time, the median
    paired = statistics.median(statistics.median(r["reference"]) / statistics.median(r["tinylang"]) for r in rounds)
    return {"bytes_per_s": rates, "seconds": times, "new_bytes": args.gen_bytes,
            "speedup": rates["tinylang"] / rates["reference"], "speedup_paired": paired}


@contextmanager
def native_decode(setting: str):
    """Within: TINYLANG_NATIVE_DECODE set to ``setting`` ("0": PyTorch's decode steps only, as without a
    C compiler), restored on exit."""
    before = os.environ.get(native.DISABLE_VARIABLE)
    os.environ[native.DISABLE_VARIABLE] = setting
    try:
        yield
    finally:
        if before is None:
            del os.environ[native.DISABLE_VARIABLE]
        else:
            os.environ[native.DISABLE_VARIABLE] = before


def pytorch_steps_only(generate):
    """``generate()`` with tinylang's C decode steps switched off."""
    with native_decode("0"):
        return generate()


def proc_field(path: str, key: str) -> str:
    """The value of ``key`` in a /proc text file ("" off Linux): CPU model, VmRSS, VmHWM."""
    lines = Path(path).read_text().splitlines() if Path(path).exists() else []
    return next((line.split(":", 1)[1].strip() for line in lines if line.split(":")[0].strip() == key), "")


def status_mib(key: str) -> float:
    """A "123 kB" line of /proc/self/status in MiB (0 off Linux)."""
    value = proc_field("/proc/self/status", key)
    return int(value.split()[0]) / 1024 if value else 0.0


def memory_child(request: dict) -> dict:
    """Runs in a fresh process, so that its peak RSS belongs to one model's training alone."""
    device = torch.device(request["device"])
    torch.set_num_threads(request["threads"])
    baseline = status_mib("VmRSS")
    model = build(request["kind"], Spec(**request["spec"]), request["context"], device)
    opt = make_optimizer(model, 1e-4, device)
    as_trained = request["kind"] == "tinylang" and threads_apply(device)
    with threaded(request["kind"], model, device) if as_trained else nullcontext() as parallel:
        for ids, targets in random_batches(request["steps"], request["batch"], request["context"], device):
            train_step(precision(request["kind"], device), model, opt, ids, targets, device, parallel=parallel)
    sync(device)
    # VmHWM, not ru_maxrss: Linux carries the parent's peak RSS over (v)fork + exec into ru_maxrss, so
    # every child reported the parent's ~960 MiB. VmHWM belongs to the child's own address space.
    peak = status_mib("VmHWM")
    out = {"baseline_rss_mib": baseline, "peak_rss_mib": peak, "model_rss_mib": peak - baseline}
    if device.type == "cuda":
        out["peak_cuda_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def bench_memory(kind: str, spec: Spec, args, device) -> dict:
    """Peak memory of a few training steps, measured in a child process (RSS never goes down); tinylang
    trains as `tinylang train` does (over CPU threads where it would)."""
    request = dict(kind=kind, spec=asdict(spec), context=args.context, batch=args.batch,
                   steps=args.memory_steps, device=device.type, threads=args.threads)
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--memory-child", json.dumps(request)],
                          capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"memory child for {kind} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


@torch.no_grad()
def validation_bpb(model: nn.Module, batches, device) -> float:
    """Bits per byte over fixed windows. Both models get inputs w[:T-1] and are scored on w[1:T] with
    the same cross-entropy over their logits, so exactly the same positions count."""
    model.eval()
    nats, count = 0.0, 0
    for ids, targets in batches:
        logits, _ = model(ids.to(device))
        nats += F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.to(device).reshape(-1),
                                reduction="sum").item()
        count += targets.numel()
    model.train()
    return nats / count / math.log(2)


def bpb_text(text: str, stories: int, scratch: Path) -> str:
    """What the equal-time comparison trains on: ``text``, or for "grammar" a Finnish corpus of
    ``stories`` stories from the offline story grammar (seed 0, the same every run). The full run's
    5,000 stories (4.7 MB of training text) are more than either model reads in its budget, so the
    comparison measures learning per second; on the 82 KB seed text both models made 20+ passes
    and the figure measured how they overfit."""
    if text != "grammar":
        return text
    out = scratch / "grammar-fi"
    build_corpus(BuildOptions(lang="fi", n=stories, out=out, backend="grammar", filter_workers=1),
                 Console(stderr=True, quiet=True))
    return str(out)


def bench_bpb(kind: str, spec: Spec, data, args, device) -> dict:
    """Train for a fixed wall-clock budget, then score the shared validation windows: which model learns
    more per second. Runs cannot interleave, so they run one after the other (reference first)."""
    model = build(kind, spec, BPB_CONTEXT, device)
    opt = make_optimizer(model, BPB_LR, device)
    g = torch.Generator().manual_seed(1)  # the same training windows, in the same order, for both
    steps, losses, norms, start = 0, [], [], time.perf_counter()
    # tinylang trains as `tinylang train` does: over CPU threads where it would
    with threaded(kind, model, device) if kind == "tinylang" and threads_apply(device) else nullcontext() as parallel:
        while time.perf_counter() - start < args.budget_s:
            for group in opt.param_groups:
                group["lr"] = BPB_LR * min(1.0, (steps + 1) / BPB_WARMUP)
            ids, targets = data.train.random_batch(BPB_BATCH, BPB_CONTEXT, g)
            loss, norm = train_step(precision(kind, device), model, opt, ids.to(device), targets.to(device), device,
                                    clip=args.grad_clip or None, parallel=parallel)
            losses.append(float(loss))
            norms += [] if norm is None else [norm.item()]
            steps += 1
    seconds, finite = time.perf_counter() - start, [n for n in norms if math.isfinite(n)]
    windows = data.validation.fixed_batches(args.eval_batches, BPB_BATCH, BPB_CONTEXT - 1)
    return {"steps": steps, "train_seconds": seconds, "train_bytes": steps * BPB_BATCH * BPB_CONTEXT,
            "last_train_bpb": statistics.mean(losses[-10:]) / math.log(2),
            "median_finite_grad_norm": statistics.median(finite) if finite else None,
            # clipping a non-finite norm zeroes (or NaNs) the whole step's update: no learning
            "nonfinite_grad_norm_steps": len(norms) - len(finite),
            "val_bpb": validation_bpb(model, windows, device)}


def markdown(report: dict) -> str:
    """The human-readable summary printed at the end of a run."""
    m = report["meta"]
    lines = [f"torch {m['torch']}, {m['device_name']}, {m['threads']} threads, batch {m['batch']} x {m['context']}, "
             "matmul ceiling " + ", ".join(f"{p} {g:.1f}" for p, g in m["matmul_ceilings_gflops"].items())
             + f" GFLOP/s ({m['matmul_size']}^2), "
             f"load {m['loadavg_before'][0]:.2f} -> {m['loadavg_after'][0]:.2f}", "",
             "| config | model | params | train bytes/s | GFLOP/step | GFLOP/s | MFU | gen bytes/s | peak mem MiB "
             "| val bpb (steps) |", "|---|---|" + "--:|" * 8]
    notes = []
    for name, res in report["configs"].items():
        for label, row in res["train"]["rows"].items():
            kind = label.split("+")[0]
            eager, mem, bpb = label == kind, res["memory"][kind], res.get("bpb", {}).get(kind)
            # memory and bits per byte come from training as `tinylang train` does (reference: as shipped)
            trained = label == (res["train"]["trained_as"] if kind == "tinylang" else kind)
            cells = [name, label, f"{res['train']['params'][kind] / 1e6:.2f}M", f"{row['bytes_per_s']:,.0f}",
                     f"{row['gflop_per_step']:.1f}", f"{row['achieved_gflops']:.1f}", f"{row['mfu']:.1%}",
                     f"{res['generation']['bytes_per_s'][kind]:,.0f}" if eager else "-",
                     f"{mem.get('peak_cuda_mib', mem['peak_rss_mib']):,.0f}" if trained else "-",
                     f"{bpb['val_bpb']:.3f} ({bpb['steps']})" if trained and bpb else "-"]
            lines.append("| " + " | ".join(cells) + " |")
        notes.append(f"- {name}: trained in " + ", ".join(f"{k} {r['precision']}" for k, r in res["train"]["rows"].items()
                                                        if "+" not in k))
        notes.append(f"- {name}: tinylang (as `tinylang train` runs it: {res['train']['trained_as']}) / reference = "
                     f"x{res['train']['speedup']:.2f} training (x{res['train']['speedup_paired']:.2f} "
                     "paired round by round), "
                     f"x{res['generation']['speedup']:.1f} generation ({res['generation']['new_bytes']} bytes; "
                     f"x{res['generation']['speedup_paired']:.1f} paired)")
        gen = res["generation"]["bytes_per_s"]
        if PYTORCH_STEPS in gen:
            notes.append(f"- {name}: generation with tinylang's PyTorch decode steps only (no C steps): "
                         f"{gen[PYTORCH_STEPS]:,.0f} bytes/s, x{gen[PYTORCH_STEPS] / gen['reference']:.1f} the reference; "
                         f"the C steps x{gen['tinylang'] / gen[PYTORCH_STEPS]:.2f} faster")
        rows = res["train"]["rows"]
        if "tinylang+threads" in rows and "reference+threads" in rows:
            notes.append(f"- {name}: plain steps on both, tinylang / reference = x{res['train']['speedup_plain']:.2f}; "
                         "over CPU threads on both, x"
                         f"{rows['tinylang+threads']['bytes_per_s'] / rows['reference+threads']['bytes_per_s']:.2f}")
        if "tinylang+compile" in rows and "reference+compile" in rows:
            notes.append(f"- {name}: with torch.compile on both, tinylang / reference = x"
                         f"{rows['tinylang+compile']['bytes_per_s'] / rows['reference+compile']['bytes_per_s']:.2f} "
                         "training")
        notes += [f"- {name}: torch.compile of {k} failed: {e.splitlines()[0]}"
                  for k, e in res["train"]["compile_errors"].items()]
        notes += [f"- {name}: WARNING {k}: {r['nonfinite_grad_norm_steps']} of {r['steps']} bpb steps had a non-finite "
                  "gradient norm, so clipping zeroed their updates" for k, r in res.get("bpb", {}).items()
                  if r["nonfinite_grad_norm_steps"]]
    if any("bpb" in r for r in report["configs"].values()):
        o = m["options"]
        text = f"{o['bpb_stories']:,} Finnish grammar stories" if o["text"] == "grammar" else o["text"]
        notes.append(f"- bpb: {m['budget_s']:.0f} s of training each on {text}, one after the other (reference first), "
                     f"batch {BPB_BATCH} x {BPB_CONTEXT}, lr {BPB_LR}, clip {o['grad_clip']}; "
                     "same validation windows")
    return "\n".join(lines + [""] + notes)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--configs", default="small,medium", help="CPU configs to run: " + ",".join(CPU_SPECS))
    p.add_argument("--recipe", default="recipes/fi-40m.yaml", help="model config benchmarked with --device cuda")
    p.add_argument("--quick", action="store_true", help="tiny step counts and a 10 s budget, for smoke tests")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--batch", type=int, help="training batch (default 8 on CPU, 16 on CUDA)")
    p.add_argument("--context", type=int, help="training context bytes (default 1024 on CPU, recipe's on CUDA)")
    p.add_argument("--warmup", type=int, help="untimed training steps per model (2; quick 1)")
    p.add_argument("--steps", type=int, help="timed training steps per model (8; quick 2)")
    p.add_argument("--gen-bytes", type=int, help="bytes to generate after the prompt (512; quick 64)")
    p.add_argument("--budget-s", type=float, help="training seconds per model for bpb (120; quick 10)")
    p.add_argument("--text", default="grammar",
                   help="corpus for bits per byte: any data.path tinylang train accepts, or 'grammar' (default): "
                        "Finnish stories from the offline story grammar, built into a temporary folder")
    p.add_argument("--grad-clip", type=float, default=1.0, help="bpb training's clip norm (as the recipes); 0: off")
    p.add_argument("--skip-bpb", action="store_true", help="skip the equal-time bits-per-byte comparison")
    p.add_argument("--compile", action="store_true", help="also time torch.compile'd twins on CPU (always on CUDA)")
    p.add_argument("--out", help="write every figure as JSON here")
    p.add_argument("--memory-child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if set(args.configs.split(",")) - set(CPU_SPECS):
        p.error(f"--configs takes a comma-separated subset of {','.join(CPU_SPECS)}")
    for key, value in (QUICK if args.quick else FULL).items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    return args


def bench_config(name: str, spec: Spec, args, device, ceilings: dict[str, float], data) -> dict:
    """Every measurement of one configuration, in an order that frees each phase's models first."""
    say = lambda what: print(f"[{name}] {what} ...", file=sys.stderr, flush=True)  # noqa: E731
    say("training throughput")
    res = {"spec": asdict(spec), "train": bench_training(spec, args, device, ceilings)}
    say("generation")
    res["generation"] = bench_generation(spec, args, device)
    say("peak memory")
    res["memory"] = {k: bench_memory(k, spec, args, device) for k in KINDS}
    if data is not None:
        say(f"bits per byte, {args.budget_s:.0f} s per model")
        res["bpb"] = {k: bench_bpb(k, spec, data, args, device) for k in ("reference", "tinylang")}
    return res


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.memory_child:
        print(json.dumps(memory_child(json.loads(args.memory_child))))
        return
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    loadavg_before, started, cpu_started = os.getloadavg(), time.time(), time.process_time()
    if device.type == "cuda":
        c = load_recipe(args.recipe).model
        specs = {Path(args.recipe).stem: Spec(c.patch_size, c.global_dim, c.global_layers, c.local_dim,
                                              c.local_layers, c.global_dim // c.global_heads)}
        args.batch, args.context = args.batch or 16, args.context or c.context_bytes
        args.skip_bpb = True  # a 40M model needs far more text and time than this comparison gives
        size, name = 8192, torch.cuda.get_device_name()
    else:
        specs = {n: CPU_SPECS[n] for n in args.configs.split(",")}
        args.batch, args.context = args.batch or 8, args.context or 1024
        size, name = 2048, proc_field("/proc/cpuinfo", "model name")
    # MFU is against the matmul ceiling of the precision each model trains in
    ceilings = {precision_name(d): matmul_ceiling(size, d or torch.float32, device, args.matmul_repeats)
                for d in {precision(k, device) for k in KINDS}}
    with tempfile.TemporaryDirectory() as cache:
        data = None if args.skip_bpb else ByteData.from_config(
            DataConfig(path=bpb_text(args.text, args.bpb_stories, Path(cache)), cache_dir=cache))
        configs = {n: bench_config(n, spec, args, device, ceilings, data) for n, spec in specs.items()}
    meta = {"torch": torch.__version__, "device": device.type, "device_name": name, "threads": args.threads,
            "cpu_model": proc_field("/proc/cpuinfo", "model name"), "loadavg_before": loadavg_before,
            "loadavg_after": os.getloadavg(), "seconds": time.time() - started,
            # CPU seconds / wall seconds well under the thread count: something else had the cores
            "process_cpu_seconds": time.process_time() - cpu_started, "quick": args.quick,
            "batch": args.batch, "context": args.context, "matmul_ceilings_gflops": ceilings,
            "matmul_size": size, "budget_s": args.budget_s,
            "options": {k: v for k, v in vars(args).items() if k != "memory_child"}}
    report = {"meta": meta, "configs": configs}
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(markdown(report))


if __name__ == "__main__":
    main()
