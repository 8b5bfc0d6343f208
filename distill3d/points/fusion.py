"""An inference-only copy of a detector with every BatchNorm folded into the layer before it.

In eval mode a BatchNorm is a fixed per-channel affine map, so a convolution (or linear layer) with
weight :math:`W` and bias :math:`b` followed by it is one convolution with

.. math::

    W' = W \\cdot \\frac{\\gamma}{\\sqrt{\\sigma^2 + \\epsilon}}, \\qquad
    b' = (b - \\mu) \\frac{\\gamma}{\\sqrt{\\sigma^2 + \\epsilon}} + \\beta

(per output channel; a transposed convolution's output channels are its weight's second axis). This
removes one full pass over every feature map per layer, which on a CPU costs about as much as a
narrow convolution itself: the detectors' students are narrow, so BatchNorm is a larger share of
their time than of their teacher's.

``channels_last`` additionally stores 4D convolution weights as NHWC; the pillar detector then builds
its BEV canvas in that layout (it is an NHWC scatter already), and oneDNN runs the 2D backbone without
converting layouts around each convolution (measured on the PointPillars-channel teacher and its
student: 2.4x -> 3.0x, ``benchmarks/pointdistiller.py --speed-only``). The point detector's grouped
MLPs are linear layers over rows, with no 4D maps to lay out, so :func:`fuse_for_inference` applies
it to the pillar family only by default.
"""
from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def _fold_sequential(seq: nn.Sequential) -> int:
    """Folds each ``(conv or linear, BatchNorm)`` pair of ``seq`` in place; returns the number folded."""
    folded = 0
    names = list(seq._modules)
    for first, second in zip(names[:-1], names[1:]):
        layer, norm = seq._modules[first], seq._modules[second]
        if not isinstance(norm, _NORMS) or not norm.track_running_stats or norm.running_mean is None:
            continue
        if isinstance(layer, _CONVS):
            fused = fuse_conv_bn_eval(layer, norm, transpose=isinstance(layer, nn.modules.conv._ConvTransposeNd))
        elif isinstance(layer, nn.Linear):
            fused = fuse_linear_bn_eval(layer, norm)
        else:
            continue
        seq._modules[first], seq._modules[second] = fused, nn.Identity()
        folded += 1
    return folded


def fuse_for_inference(model: nn.Module, channels_last: bool | None = None) -> nn.Module:
    """An eval-mode deep copy of ``model`` with every BatchNorm that directly follows a convolution or
    linear layer inside an ``nn.Sequential`` folded into it (see the module docstring); ``model`` is
    left untouched. The copy computes the same outputs as ``model.eval()`` up to float rounding and is
    for inference only: its folded layers no longer normalise with batch statistics.

    Args:
        model: a detector (or any module).
        channels_last: store 4D convolution weights channels-last; ``None`` chooses it for models that
            declare ``prefers_channels_last`` (the pillar detector).

    Returns:
        the fused copy, in eval mode, with ``requires_grad`` off.
    """
    fused = copy.deepcopy(model).eval()
    for module in list(fused.modules()):
        if isinstance(module, nn.Sequential):
            _fold_sequential(module)
    if channels_last is None:
        channels_last = bool(getattr(model, "prefers_channels_last", False))
    if channels_last:
        for module in fused.modules():
            if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
                module.weight.data = module.weight.data.contiguous(memory_format=torch.channels_last)
    fused.inference_channels_last = channels_last
    return fused.requires_grad_(False)


__all__ = ["fuse_for_inference"]
