"""Farthest point sampling, k nearest neighbours and grouping for the point detectors.

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
rasterizer's (``distill3d/csrc/cpu/sampling_cpu.cpp``: one vectorised pass over a structure-of-arrays
copy of the points per sample, 0.36 ms for 256 of 2048 points against 1.2 ms for a scalar pass), which
computes the distances with the same float arithmetic and returns the same indices; the torch loop is
the reference it is tested against and the fallback where the native extension cannot be built.

The neighbour searches (ball query, the 3 nearest coarse points of feature propagation, the points
around each vote) go through :func:`nearest_neighbours`. :func:`distillcore.knn.knn` (``torch.cdist``
over the dense ``[M, N]`` distance matrix, then ``topk``) is exact and differentiable, but ``topk`` alone
was 14 ms of the 4x-smaller point student's 46 ms per scan (profiled, 1 thread), a cost that does not
shrink with width. On CPU tensors that need no gradient (the detectors search on coordinates, never
differentiated) :func:`nearest_neighbours` runs the C++ kernel ``distill3d/csrc/cpu/points_knn_cpu.cpp``
(per query one vectorised pass for the distances, then one scan keeping the ``k`` best points inside
the ball in a sorted buffer: no distance matrix, no top-k over all points): the detector's five
searches per scan take about 4.3 ms instead of 25 (1 thread, a loaded machine; 7.7 ms with a heap in
place of the buffer). Elsewhere it is :func:`distillcore.knn.knn`. Both return the ``k`` nearest,
nearest first; ties (equal distances) may be ordered differently.
"""
from __future__ import annotations

import math
from types import ModuleType

import torch
from torch import Tensor

from distillcore.checks import check_tensor
from distillcore.knn import knn
from distill3d.render import native


def native_cpu_kernels(*tensors: Tensor, differentiable: bool = False) -> ModuleType | None:
    """The native extension (``distill3d/csrc/cpu``) where its point kernels apply to ``tensors``: CPU
    tensors of one dtype, float32 or float64, and a built extension; ``None`` elsewhere (CUDA tensors,
    other dtypes, no compiler), where the callers run their torch reference instead.

    ``differentiable``: the caller's result is a function of ``tensors`` that gradients must flow through
    (not indices); the kernels have no backward, so it is ``None`` too while autograd needs one."""
    if differentiable and torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        return None
    dtype = tensors[0].dtype
    if all(t.device.type == "cpu" and t.dtype == dtype for t in tensors) and dtype in native.FLOAT_DTYPES \
            and native.native_available("cpu"):
        return native._extension(tensors[0].device)
    return None


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
    kernels = native_cpu_kernels(xyz)
    if kernels is not None:
        return kernels.farthest_point_sample(xyz.detach(), num_samples)
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


def _native_search(query: Tensor, reference: Tensor, k: int, max_dist2: float) -> tuple[Tensor, Tensor] | None:
    """The C++ kNN / ball query (``cpu/points_knn_cpu.h``) where it applies: CPU tensors of one float
    dtype that need no gradient and a built extension; ``None`` elsewhere."""
    kernels = native_cpu_kernels(query, reference, differentiable=True)
    if kernels is None:
        return None
    # shapes only: a finiteness scan per call cost more than the search on the detectors' small clouds
    # (their scans are checked once, check_point_batch); a NaN row just never counts as nearer
    if query.dim() != 3 or reference.dim() != 3 or query.shape[0] != reference.shape[0] or query.shape[2] != reference.shape[2]:
        raise ValueError(f"query {list(query.shape)} and reference {list(reference.shape)} must be [B, M, D] and [B, N, D]")
    if isinstance(k, bool) or not isinstance(k, int) or not 0 < k <= reference.shape[1]:
        raise ValueError(f"k must be in [1, {reference.shape[1]}] (reference rows), got {k}")
    return tuple(kernels.knn_points(query, reference, k, max_dist2))


def nearest_neighbours(query: Tensor, reference: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """:func:`distillcore.knn.knn` (squared distances and indices of the ``k`` nearest ``reference``
    rows, nearest first), on the native kernel for CPU tensors that need no gradient (module docstring).

    Args:
        query: rows to find neighbours for.
        reference: candidate neighbours, same ``B`` and ``D``.
        k: neighbours per row, ``1 <= k <= N``.

    Shapes:
        query ``[B, M, D]``, reference ``[B, N, D]`` -> ``[B, M, k]`` squared distances, ``[B, M, k]`` int64.
    """
    found = _native_search(query, reference, k, math.inf)
    return found if found is not None else knn(query, reference, k)


def ball_group(query: Tensor, reference: Tensor, k: int, radius: float) -> Tensor:  # [B, M, k]
    """PointNet++ ball query: the (up to) ``k`` nearest neighbours within ``radius``, nearest first;
    slots beyond the radius repeat the nearest neighbour (as PointNet++ pads with its first hit). The
    native kernel only ranks the points inside the ball.

    Shapes:
        query ``[B, M, 3]``, reference ``[B, N, 3]`` -> ``[B, M, k]`` int64 indices into ``N``.
    """
    found = _native_search(query, reference, k, radius * radius)
    if found is not None:
        return found[1]
    dist, idx = knn(query, reference, k)
    return torch.where(dist <= radius * radius, idx, idx[..., :1])


def gather_rows(x: Tensor, idx: Tensor) -> Tensor:
    """``x`` ``[B, N, C]`` indexed per batch by ``idx`` ``[B, ...]`` -> ``[B, ..., C]``:
    :math:`out[b, \\ldots] = x[b, idx[b, \\ldots]]`.

    One ``index_select`` of whole rows of the flattened ``[B N, C]`` (row ``b N + idx``): a copy of ``C``
    contiguous values per row, where ``torch.gather`` with the index expanded over the channels reads
    an index per value (on CPU 2-10x slower, e.g. 0.69 vs 0.06 ms for 4096 rows of 32 channels). An
    index outside ``[0, N)`` raises ``IndexError`` (in the flattened rows it would read another scan, so
    with ``B > 1`` the indices are range-checked first, about 10 us).
    """
    b, n, c = x.shape
    flat = idx.reshape(b, -1)
    if b > 1:
        if flat.numel():
            low, high = torch.aminmax(flat)
            if int(low) < 0 or int(high) >= n:
                raise IndexError(f"gather_rows indices must lie in [0, {n}) (the rows of each scan), got "
                                 f"{int(low)}..{int(high)}")
        flat = flat + (torch.arange(b, device=idx.device) * n)[:, None]
    return x.reshape(b * n, c).index_select(0, flat.reshape(-1)).view(*idx.shape, c)


__all__ = ["native_cpu_kernels", "farthest_point_sample", "farthest_point_sample_reference", "knn", "nearest_neighbours", "ball_group", "gather_rows"]
