"""Data parallelism over the cores of one CPU, inside one process: each micro-batch is cut into row
slices, and each slice runs forward and backward on its own thread, single-threaded.

Why: PyTorch parallelises every CPU operation over its threads, one operation at a time. For the
small activations of a byte-level model that costs a barrier per operation and leaves cores idle in
the parts that split badly (attention over 8-byte patches, reductions, short matmuls). Giving each
core whole slices of the batch instead keeps every core busy on its own work from the first
operation to the last: on 2 cores `tinylang train` ran 1.03x faster for the small benchmark model
and 1.06x for the medium one (docs/benchmarks.md, session 9). It is the same idea as
DistributedDataParallel's ranks, without processes: the threads share the model, and PyTorch ops
release the GIL. Python-level work (module calls, dispatch) still takes the GIL in turn, a cost that
grows with the number of threads, which is why the trainer's ``auto`` stops at MAX_AUTO_WORKERS.

Gradients are exact and deterministic: each slice's loss is weighted by its share of the targets,
each thread returns its own gradients (``torch.autograd.grad``, no shared accumulation), and the
main thread adds them up in slice order. Dropout draws from one process-wide generator whose order
threads would race for, so the trainer uses this only without dropout (``cpu_workers_problem``).
Memory: while the slices' gradients are added, up to one gradient set per thread exists at once.

    with CpuDataParallel(model, workers=2) as parallel:
        loss = parallel.forward_backward(ids, targets)   # gradients added into p.grad
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import torch
from torch import nn

from .model import PAD_ID
from .runtime import autocast_context


# ``auto`` uses at most this many threads: measured at 2 (docs/benchmarks.md); with many more, the
# GIL-bound Python part of each slice's step would queue up, so larger machines keep plain steps.
MAX_AUTO_WORKERS = 4


def cpu_workers_problem(device: torch.device, distributed: bool, compiled: bool, dropout: float) -> str | None:
    """Why training cannot cut its batches over CPU threads here (None: it can)."""
    if device.type != "cpu":
        return f"it trains on {device.type}, and CPU data parallelism is for CPU training"
    if distributed:
        return "it runs under torchrun, whose processes already divide the cores"
    if compiled:
        return "train.compile is on, and a compiled model is not called from several threads"
    if dropout:
        return (f"model.dropout is {dropout}: dropout draws from one process-wide random generator, which "
                "threads would race for, so runs would not repeat exactly")
    return None


def auto_workers(device: torch.device, distributed: bool, compiled: bool, dropout: float, batch_size: int) -> int:
    """What ``train.cpu_workers: auto`` chooses: one slice per torch thread on a CPU with 2 to
    MAX_AUTO_WORKERS threads where nothing stands in the way, else 1 (plain steps)."""
    threads = torch.get_num_threads()
    if threads > MAX_AUTO_WORKERS or cpu_workers_problem(device, distributed, compiled, dropout):
        return 1
    return min(threads, batch_size)


class CpuDataParallel:
    """Forward and backward of each micro-batch as ``workers`` row slices on as many threads.

    Inside the ``with`` block torch runs single-threaded in every thread (the cores are shared out by
    slices instead); on leaving it, torch's thread count is restored. ``model(ids, targets)`` must
    return ``(logits, mean loss over targets that are not PAD_ID)``, as Megabyte does.
    """

    def __init__(self, model: nn.Module, workers: int, dtype: torch.dtype | None = None):
        if workers < 2:
            raise ValueError(f"CpuDataParallel needs 2 or more workers, got {workers}")
        self.model, self.workers, self.dtype = model, workers, dtype
        self.params = [p for p in model.parameters() if p.requires_grad]
        self._pool: ThreadPoolExecutor | None = None
        self._threads_before = 0

    def __enter__(self) -> "CpuDataParallel":
        self._threads_before = torch.get_num_threads()
        torch.set_num_threads(1)
        # each worker sets its own OpenMP/MKL thread count once, before its first operation
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="tinylang-cpu",
                                        initializer=torch.set_num_threads, initargs=(1,))
        return self

    def __exit__(self, *exc) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        torch.set_num_threads(self._threads_before)

    def _slices(self, ids: torch.Tensor, targets: torch.Tensor) -> tuple[list[tuple[torch.Tensor, torch.Tensor, int]], int]:
        """Row slices with the number of targets each one scores, and the batch's total; slices that
        score none are left out (their mean loss is 0/0, and they add nothing to the gradient)."""
        out = []
        for rows_ids, rows_targets in zip(ids.tensor_split(self.workers), targets.tensor_split(self.workers)):
            scored = int((rows_targets != PAD_ID).sum())
            if scored:
                out.append((rows_ids, rows_targets, scored))
        return out, sum(scored for *_, scored in out)

    def _map(self, fn, slices):
        """Results in slice order, each as soon as it and those before it are done."""
        if self._pool is None:
            raise RuntimeError("use CpuDataParallel inside a `with` block")
        return self._pool.map(fn, slices)

    def forward_backward(self, ids: torch.Tensor, targets: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        """The mean loss over the micro-batch's targets (detached), with the gradient of ``scale`` times
        that loss added into each parameter's ``.grad``, as ``(loss * scale).backward()`` would."""
        slices, total = self._slices(ids, targets)
        if not total:
            raise ValueError("the batch has no targets to score (every target is PAD_ID)")

        def run(piece):
            rows_ids, rows_targets, scored = piece
            with torch.enable_grad(), autocast_context(rows_ids.device, self.dtype):
                _, loss = self.model(rows_ids, rows_targets)
            grads = torch.autograd.grad(loss * (scale * scored / total), self.params, allow_unused=True)
            return loss.detach(), grads

        mean = torch.zeros(())
        for (loss, grads), (*_, scored) in zip(self._map(run, slices), slices):  # in slice order: same sums
            mean += loss.float() * (scored / total)
            for param, grad in zip(self.params, grads):
                if grad is None:
                    continue
                if param.grad is None:
                    param.grad = grad
                else:
                    param.grad += grad
        return mean

    def loss(self, ids: torch.Tensor, targets: torch.Tensor) -> float:
        """The mean loss over the targets that are not PAD_ID, without gradients (validation)."""
        slices, total = self._slices(ids, targets)

        def run(piece):
            rows_ids, rows_targets, scored = piece
            with torch.no_grad(), autocast_context(rows_ids.device, self.dtype):
                _, loss = self.model(rows_ids, rows_targets)
            return float(loss) * scored

        return sum(self._map(run, slices)) / total if total else float("nan")


__all__ = ["MAX_AUTO_WORKERS", "CpuDataParallel", "auto_workers", "cpu_workers_problem"]
