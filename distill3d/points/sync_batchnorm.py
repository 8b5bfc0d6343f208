"""BatchNorm whose batch statistics span every rank, on collectives that gloo runs (CPU ranks).

Data-parallel training splits a batch over ranks; a plain ``BatchNorm`` then normalises each rank's
share with its own statistics, so 2 ranks x 2 scans do not train like 1 rank x 4 (and a detector whose
batch is a few scans gets noisier statistics). ``torch.nn.SyncBatchNorm`` fixes that on CUDA only
(its kernels do not run on CPU). :class:`RankSyncBatchNorm` computes the statistics of the global batch
from two all-reduces of per-channel sums:

.. math::
    n = \\sum_r n_r, \\quad \\mu = \\frac1n \\sum_r \\sum_{i \\in r} x_i, \\quad
    \\sigma^2 = \\frac1n \\sum_r \\sum_{i \\in r} (x_i - \\mu)^2, \\quad
    y = \\gamma \\frac{x - \\mu}{\\sqrt{\\sigma^2 + \\epsilon}} + \\beta

(two passes rather than :math:`E[x^2] - \\mu^2`, which cancels catastrophically in float32). The
all-reduce's backward all-reduces the gradient (:class:`_AllReduceSum`; the same as the deprecated
``torch.distributed.nn.functional.all_reduce``), so autograd gives exactly the gradient of
single-process BatchNorm over the global batch.
Running statistics use the unbiased :math:`\\sigma^2 n / (n - 1)`, as ``BatchNorm`` does. Outside
training, or without a process group, it is a plain ``BatchNorm`` (running statistics).
"""
from __future__ import annotations

import torch
import torch.distributed as tdist
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from distillcore import dist


class _AllReduceSum(torch.autograd.Function):
    """:math:`y = \\sum_r x_r` on every rank; :math:`\\partial L / \\partial x_r = \\sum_s \\partial L_s / \\partial y`."""

    @staticmethod
    def forward(ctx, t: Tensor) -> Tensor:
        out = t.clone()
        tdist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        grad = grad.clone()
        tdist.all_reduce(grad)
        return grad


class RankSyncBatchNorm(_BatchNorm):
    """BatchNorm over ``[N, C]``, ``[N, C, L]`` or ``[N, C, H, W]`` inputs with statistics of all ranks
    (see the module docstring); a drop-in for ``nn.BatchNorm1d`` / ``nn.BatchNorm2d``.

    Shapes:
        input ``[N, C, *]`` -> output of the same shape.
    """

    plain_class: type[_BatchNorm] = nn.BatchNorm2d

    def _check_input_dim(self, input: Tensor) -> None:
        if input.dim() not in (2, 3, 4):
            raise ValueError(f"expected a 2D, 3D or 4D input [N, C, *], got {input.dim()}D")

    def forward(self, input: Tensor) -> Tensor:
        if not (self.training and dist.context().distributed):
            return super().forward(input)
        self._check_input_dim(input)
        dims = [0, *range(2, input.dim())]
        shape = [1, -1] + [1] * (input.dim() - 2)
        count = input.new_full((1,), input.numel() // input.shape[1])
        totals = _AllReduceSum.apply(torch.cat([input.sum(dims), count]))
        n = totals[-1]
        mean = totals[:-1] / n
        centred = input - mean.view(shape)
        var = _AllReduceSum.apply(centred.pow(2).sum(dims)) / n
        out = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                self.running_mean.mul_(1 - factor).add_(mean.detach(), alpha=factor)
                unbiased = var.detach() * (n / (n - 1).clamp(min=1))
                self.running_var.mul_(1 - factor).add_(unbiased, alpha=factor)
        return out


def _placement(norm: _BatchNorm) -> dict:
    """The device and dtype of a norm layer's tensors (its replacement must keep them: ``load_state_dict``
    copies values into the new layer's own dtype)."""
    tensor = next(iter([*norm.parameters(), *norm.buffers()]), None)
    return {} if tensor is None else {"device": tensor.device, "dtype": tensor.dtype if tensor.is_floating_point() else None}


def convert_rank_sync_batchnorm(module: nn.Module) -> nn.Module:
    """Replaces every ``BatchNorm1d`` / ``BatchNorm2d`` of ``module`` (in place, parameters and running
    statistics kept, same ``state_dict`` keys) with :class:`RankSyncBatchNorm`; returns ``module``."""
    for name, child in module.named_children():
        if type(child) in (nn.BatchNorm1d, nn.BatchNorm2d):
            synced = RankSyncBatchNorm(child.num_features, child.eps, child.momentum, child.affine,
                                       child.track_running_stats, **_placement(child))
            synced.load_state_dict(child.state_dict())
            synced.train(child.training)
            synced.plain_class = type(child)  # what revert_rank_sync_batchnorm restores
            setattr(module, name, synced)
        else:
            convert_rank_sync_batchnorm(child)
    return module


def revert_rank_sync_batchnorm(module: nn.Module) -> nn.Module:
    """The inverse of :func:`convert_rank_sync_batchnorm` (in place): the plain BatchNorm class each
    layer had, so a trained model is again the architecture its config builds; returns ``module``."""
    for name, child in module.named_children():
        if isinstance(child, RankSyncBatchNorm):
            plain = child.plain_class(child.num_features, child.eps, child.momentum, child.affine,
                                      child.track_running_stats, **_placement(child))
            plain.load_state_dict(child.state_dict())
            plain.train(child.training)
            setattr(module, name, plain)
        else:
            revert_rank_sync_batchnorm(child)
    return module


__all__ = ["RankSyncBatchNorm", "convert_rank_sync_batchnorm", "revert_rank_sync_batchnorm"]
