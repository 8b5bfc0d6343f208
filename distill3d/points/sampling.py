"""Farthest point sampling and grouping in plain PyTorch (the kNN is :func:`distillcore.knn.knn`).

PyTorch Geometric's ``fps``, ``knn`` and ``knn_graph`` dispatch to ``torch-cluster`` / ``pyg-lib``
kernels, and pyg-lib is not installable here (no wheel for this torch), so these are written over
dense batched tensors: fine for the few thousand points per scan of our detectors.

Farthest point sampling picks :math:`c_0 = p_0` and then
:math:`c_{i} = \\arg\\max_{p} \\min_{j < i} \\lVert p - c_j \\rVert`; it is deterministic (starts at
index 0), so a teacher and a student fed the same points sample the same centres.
"""
from __future__ import annotations

import torch
from torch import Tensor

from distillcore.checks import check_tensor
from distillcore.knn import knn


def farthest_point_sample(xyz: Tensor, num_samples: int) -> Tensor:  # [B, S] long
    """Indices of ``num_samples`` farthest points of ``xyz`` ``[B, N, 3]``."""
    check_tensor(xyz, "xyz", ndim=3, floating=True)
    b, n, _ = xyz.shape
    if not 0 < num_samples <= n:
        raise ValueError(f"num_samples must be in [1, {n}] (the number of points), got {num_samples}")
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


__all__ = ["farthest_point_sample", "knn", "ball_group", "gather_rows"]
