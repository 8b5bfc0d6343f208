"""Farthest point sampling and grouping in plain PyTorch (the kNN is :func:`distillcore.knn.knn`).

PyTorch Geometric's ``fps``, ``knn`` and ``knn_graph`` dispatch to ``torch-cluster`` / ``pyg-lib``
kernels, and pyg-lib is not installable here (no wheel for this torch), so these are written over
dense batched tensors: fine for the few thousand points per scan of our detectors.

Farthest point sampling picks :math:`c_0 = p_0` and then
:math:`c_{i} = \\arg\\max_{p} \\min_{j < i} \\lVert p - c_j \\rVert`; it is deterministic (starts at
index 0), so a teacher and a student fed the same points sample the same centres.

Each sample depends on the previous one, so in torch it is a Python loop of ``S`` steps of small
batched ops (:func:`farthest_point_sample_reference`); their dispatch cost does not shrink with the
detector's width: about 30 ms of a point detector's 93 ms (teacher) or 73 ms (4x smaller student)
CPU time per scan. On CPU tensors :func:`farthest_point_sample` runs the C++ kernel beside the
rasterizer's (``distill3d/csrc/cpu/sampling_cpu.cpp``: one pass over the points per sample), which
computes the distances with the same float arithmetic and returns the same indices; the torch loop is
the reference it is tested against and the fallback where the native extension cannot be built.
"""
from __future__ import annotations

import torch
from torch import Tensor

from distillcore.checks import check_tensor
from distillcore.knn import knn
from distill3d.render import native


def _check_fps(xyz: Tensor, num_samples: int) -> None:
    check_tensor(xyz, "xyz", ndim=3, floating=True)
    if xyz.shape[-1] != 3:
        raise ValueError(f"xyz must be [B, N, 3], got {list(xyz.shape)}")
    n = xyz.shape[1]
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or not 0 < num_samples <= n:
        raise ValueError(f"num_samples must be in [1, {n}] (the number of points), got {num_samples}")


def farthest_point_sample(xyz: Tensor, num_samples: int) -> Tensor:  # [B, S] long
    """Indices of ``num_samples`` farthest points of ``xyz`` (see the module docstring).

    Args:
        xyz: point clouds, float32 or float64.
        num_samples: ``S``, at most ``N``.

    Shapes:
        xyz ``[B, N, 3]`` -> ``[B, S]`` int64 indices into ``N``, the first always 0.
    """
    _check_fps(xyz, num_samples)
    if xyz.device.type == "cpu" and xyz.dtype in native.FLOAT_DTYPES and native.native_available("cpu"):
        return native._extension(xyz.device).farthest_point_sample(xyz.detach(), num_samples)
    return farthest_point_sample_reference(xyz, num_samples)


def farthest_point_sample_reference(xyz: Tensor, num_samples: int) -> Tensor:  # [B, S] long
    """:func:`farthest_point_sample` as a torch loop over the samples (batched over the clouds)."""
    _check_fps(xyz, num_samples)
    b, n, _ = xyz.shape
    idx = torch.zeros(b, num_samples, dtype=torch.long, device=xyz.device)
    nearest = torch.full((b, n), float("inf"), device=xyz.device, dtype=xyz.dtype)
    farthest = torch.zeros(b, dtype=torch.long, device=xyz.device)
    rows = torch.arange(b, device=xyz.device)
    for i in range(num_samples):
        idx[:, i] = farthest
        d = (xyz - xyz[rows, farthest][:, None, :]).pow(2).sum(-1)
        nearest = torch.minimum(nearest, d)
        farthest = nearest.argmax(dim=1)
    return idx


def ball_group(query: Tensor, reference: Tensor, k: int, radius: float) -> Tensor:  # [B, M, k]
    """PointNet++ ball query: up to ``k`` neighbours within ``radius``; slots beyond the radius
    repeat the nearest neighbour (as PointNet++ pads with its first hit)."""
    dist, idx = knn(query, reference, k)
    return torch.where(dist <= radius * radius, idx, idx[..., :1])


def gather_rows(x: Tensor, idx: Tensor) -> Tensor:
    """``x`` ``[B, N, C]`` indexed per batch by ``idx`` ``[B, ...]`` -> ``[B, ..., C]``."""
    b = x.shape[0]
    flat = idx.reshape(b, -1)
    out = torch.gather(x, 1, flat[..., None].expand(-1, -1, x.shape[-1]))
    return out.reshape(*idx.shape, x.shape[-1])


__all__ = ["farthest_point_sample", "farthest_point_sample_reference", "knn", "ball_group", "gather_rows"]
