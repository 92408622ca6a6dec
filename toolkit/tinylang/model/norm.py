"""RMSNorm, written out because PyTorch's costs more than it should on a CPU.

``F.rms_norm`` on a CPU is a composite of about a dozen operations whose backward autograd derives
op by op: 13.7 ms forward and backward for one (8256, 160) activation of the small benchmark model,
where the closed-form backward below takes 9.9 ms (docs/benchmarks.md). At one row, the decode
step's case, its wrappers and dtype round trips make it 20 µs where the same arithmetic written
out takes about half. The forward here is ``F.rms_norm``'s, operation for operation, so the two
agree bit for bit (tests/model/test_megabyte.py); on a GPU the module keeps PyTorch's fused kernel.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """``F.rms_norm`` over the last dimension, without autograd's bookkeeping of its parts. Off the
    CPU, or in other precisions (whose statistics it computes in fp32), ``F.rms_norm`` itself."""
    if not _written_out(x, weight):
        return F.rms_norm(x, x.shape[-1:], weight, eps)
    return x * _inverse_rms(x, eps) * weight


def _written_out(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """fp32 on a CPU: where the written-out norm was measured faster and agrees bit for bit."""
    return x.device.type == "cpu" and x.dtype == torch.float32 and weight.dtype == torch.float32


def _inverse_rms(x: torch.Tensor, eps: float) -> torch.Tensor:
    # x * x and sum / n are how PyTorch computes pow(x, 2) and mean, bit for bit, with fewer wrappers
    return torch.rsqrt((x * x).sum(dim=-1, keepdim=True).div_(x.shape[-1]).add_(eps))


class _RMSNormFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
        scale = _inverse_rms(x, eps)
        normed = x * scale
        ctx.save_for_backward(normed, scale, weight)
        return normed * weight

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        normed, scale, weight = ctx.saved_tensors
        grad_weight = (grad * normed).reshape(-1, normed.shape[-1]).sum(dim=0) if ctx.needs_input_grad[1] else None
        grad_normed = grad * weight
        # normed = x * scale with scale = mean(x^2)^-1/2: the Jacobian removes grad's component along normed.
        grad_x = (grad_normed - normed * (grad_normed * normed).mean(dim=-1, keepdim=True)) * scale
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
