"""RMSNorm, written out because PyTorch's costs more than it should on a CPU.

``F.rms_norm`` on a CPU is a composite of about a dozen operations whose backward autograd derives
op by op: 10.9 ms forward and backward for one (8256, 160) activation of the small benchmark model
on 2 threads, where the closed-form backward below takes 6.1 ms (18.0 against 9.2 on one thread;
docs/benchmarks.md). At one row, the decode
step's case, its wrappers and dtype round trips make it 20 µs where the same arithmetic written
out takes about half. The forward here is ``F.rms_norm``'s, operation for operation, so the two
agree bit for bit (tests/model/test_megabyte.py); on a GPU the module keeps PyTorch's fused kernel.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class FrozenRMSNorm:
    """``F.rms_norm`` over the last dimension with a fixed weight and no autograd, prepared for many
    calls on one row (decode steps): the divisor and eps are 0-dim tensors made once. A Python number
    passed to an op is converted to a tensor on every call, 4 to 5 µs on a CPU, three times what the
    op itself costs on one row; the arithmetic is the same (the divisor and float32(eps) either way).
    Off the CPU, or in other precisions (whose statistics it computes in fp32), ``F.rms_norm`` itself."""

    def __init__(self, weight: torch.Tensor, eps: float):
        self.weight, self.eps = weight.detach(), eps
        self.written_out = _written_out(self.weight, self.weight)  # for inputs of the weight's dtype
        self._n = torch.tensor(weight.shape[-1], dtype=weight.dtype, device=weight.device)
        self._eps = torch.tensor(eps, dtype=weight.dtype, device=weight.device)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.written_out and x.dtype is self.weight.dtype):
            return F.rms_norm(x, self.weight.shape, self.weight, self.eps)
        return x * _inverse_rms(x, self._n, self._eps) * self.weight


def _written_out(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """fp32 on a CPU: where the written-out norm was measured faster and agrees bit for bit."""
    return x.device.type == "cpu" and x.dtype == torch.float32 and weight.dtype == torch.float32


def _inverse_rms(x: torch.Tensor, n: int | torch.Tensor, eps: float | torch.Tensor) -> torch.Tensor:
    # x * x and sum / n are how PyTorch computes pow(x, 2) and mean, bit for bit, with fewer wrappers
    return torch.rsqrt((x * x).sum(dim=-1, keepdim=True).div_(n).add_(eps))


class _RMSNormFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
        scale = _inverse_rms(x, x.shape[-1], eps)
        normed = x * scale
        ctx.save_for_backward(normed, scale, weight)
        return normed * weight

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        normed, scale, weight = ctx.saved_tensors
        # normed = x * scale with scale = mean(x^2)^-1/2: the Jacobian removes the component of
        # grad_normed = grad * weight along normed. Both that component and grad_weight come from one
        # product, grad * normed (its row dot with weight, its column sum): six passes over the
        # activation where the textbook order takes ten, half the time of the backward (session 9).
        grad_times_normed = grad * normed
        dim = normed.shape[-1]
        grad_weight = grad_times_normed.reshape(-1, dim).sum(dim=0) if ctx.needs_input_grad[1] else None
        # mean(grad_normed * normed) per row; mv, not @, which autocast would run in bf16 if backward()
        # is called inside an autocast region
        along = torch.mv(grad_times_normed.reshape(-1, dim), weight).view(*normed.shape[:-1], 1).div_(dim)
        grad_x = (grad * weight).addcmul_(normed, along, value=-1).mul_(scale)
        return grad_x, grad_weight, None


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps, self.shape = eps, (dim,)
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not _written_out(x, self.weight):
            return F.rms_norm(x, self.shape, self.weight, self.eps)
        return _RMSNormFunction.apply(x, self.weight, self.eps)
