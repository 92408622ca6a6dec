"""Several processes, one run: what ``torchrun`` launches ``tinylang train`` into.

torchrun sets RANK, LOCAL_RANK and WORLD_SIZE; without them this is a world of one and every call
here is free. On CUDA each process takes the GPU of its local rank and talks over NCCL; on CPU the
processes use gloo (that is how CI tests data parallelism without a GPU).

    dist = Distributed.from_environment("auto")
    loss = dist.mean(loss)          # the same value on every rank
    if dist.is_main: print(loss)    # only rank 0 logs and writes checkpoints
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as torch_dist

from .runtime import pick_device


@dataclass(frozen=True)
class Distributed:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @classmethod
    def from_environment(cls, device_name: str = "auto") -> "Distributed":
        """Join the process group torchrun set up (or a world of one), and pick this rank's device."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls(device=pick_device(device_name))
        rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
        device = pick_device(device_name)
        if device.type == "mps":
            raise RuntimeError("several processes on Apple MPS are not supported; run one process (no torchrun)")
        if device.type == "cuda":
            if local_rank >= torch.cuda.device_count():
                raise RuntimeError(
                    f"local rank {local_rank} has no GPU of its own ({torch.cuda.device_count()} visible); "
                    "use --nproc_per_node <= the number of GPUs"
                )
            device = torch.device("cuda", local_rank)
            torch.cuda.set_device(device)
        if not torch_dist.is_initialized():
            torch_dist.init_process_group(
                backend="nccl" if device.type == "cuda" else "gloo",
                timeout=datetime.timedelta(minutes=30),
                **({"device_id": device} if device.type == "cuda" else {}),
            )
        return cls(rank, local_rank, world, device)

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def mean(self, value: float) -> float:
        """The mean of ``value`` over all ranks."""
        if not self.enabled:
            return value
        tensor = torch.tensor([value], dtype=torch.float64, device=self._collective_device)
        torch_dist.all_reduce(tensor)
        return float(tensor) / self.world_size

    def sum(self, values: list[float]) -> list[float]:
        """Element-wise sums of ``values`` over all ranks."""
        if not self.enabled:
            return values
        tensor = torch.tensor(values, dtype=torch.float64, device=self._collective_device)
        torch_dist.all_reduce(tensor)
        return tensor.tolist()

    def any(self, flag: bool) -> bool:
        """True on every rank when it is true on one (e.g. a time budget spent or Ctrl-C seen)."""
        if not self.enabled:
            return flag
        tensor = torch.tensor([1.0 if flag else 0.0], device=self._collective_device)
        torch_dist.all_reduce(tensor, op=torch_dist.ReduceOp.MAX)
        return bool(tensor.item() > 0)

    def gather(self, value):
        """Every rank's ``value`` (any picklable object), as a list indexed by rank, on every rank."""
        if not self.enabled:
            return [value]
        values = [None] * self.world_size
        torch_dist.all_gather_object(values, value)
        return values

    def close(self) -> None:
        if self.enabled and torch_dist.is_initialized():
            torch_dist.destroy_process_group()

    @property
    def _collective_device(self) -> torch.device:
        # NCCL reduces GPU tensors only; gloo CPU tensors.
        return self.device if self.device.type == "cuda" else torch.device("cpu")
