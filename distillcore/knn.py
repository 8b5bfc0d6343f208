"""Exact k nearest neighbours on plain torch: the one kNN both domains use.

PyG's ``knn`` / ``knn_graph`` need ``pyg-lib`` or ``torch-cluster``, neither of which installs beside
a CPU torch here (no wheels; source builds pull a CUDA torch), so distances are computed block by block
with ``torch.cdist`` and the ``k`` smallest per row taken with ``torch.topk``. Memory is
``O(chunk_size * N)`` instead of ``O(M * N)``; results are exact (no approximate index) and
differentiable in the distances, so the same function serves point coordinates and feature spaces.
(Initial Gaussian scales use a KD-tree instead, :func:`distill3d.gaussians.knn_squared_distances`:
no gradient, 3D only, and O(N log N) for millions of points.)
"""
from __future__ import annotations

import torch
from torch import Tensor

from distillcore.checks import check_positive, check_tensor


def knn(
    query: Tensor,  # [B, M, D]
    reference: Tensor,  # [B, N, D]
    k: int,
    *,
    exclude_self: bool = False,
    chunk_size: int = 2048,
) -> tuple[Tensor, Tensor]:  # [B, M, k], [B, M, k]
    r"""Squared distances and indices of the ``k`` nearest ``reference`` rows of each ``query`` row,
    nearest first:

    .. math::

        \mathcal{N}_k(q) = \operatorname{argmin}^{(k)}_{j} \lVert q - r_j \rVert_2^2 .

    Args:
        query: rows to find neighbours for, any width ``D``.
        reference: candidate neighbours (same ``B`` and ``D`` as ``query``).
        k: neighbours per row, ``1 <= k <= N`` (``N - 1`` with ``exclude_self``).
        exclude_self: ``query`` is ``reference`` (``M == N``): row ``i`` is not its own neighbour. The
            diagonal is masked rather than the first hit dropped, so exact duplicates stay neighbours.
        chunk_size: query rows whose distances are computed at once.

    Shapes:
        query ``[B, M, D]``, reference ``[B, N, D]`` -> squared distances ``[B, M, k]``, indices
        ``[B, M, k]`` (int64, into ``reference``).
    """
    check_tensor(query, "query", ndim=3, floating=True)
    check_tensor(reference, "reference", ndim=3, floating=True)
    check_positive(chunk_size, "chunk_size")
    if query.shape[0] != reference.shape[0] or query.shape[2] != reference.shape[2]:
        raise ValueError(f"query {list(query.shape)} and reference {list(reference.shape)} must agree on B and D")
    if exclude_self and query.shape[1] != reference.shape[1]:
        raise ValueError(f"exclude_self needs query and reference of the same rows, got {query.shape[1]} and "
                         f"{reference.shape[1]}")
    max_k = reference.shape[1] - int(exclude_self)
    if isinstance(k, bool) or not isinstance(k, int) or not 0 < k <= max_k:
        raise ValueError(f"k must be in [1, {max_k}] (reference rows{' minus the row itself' if exclude_self else ''}), "
                         f"got {k}")
    dists, idxs = [], []
    for start in range(0, query.shape[1], chunk_size):
        d = torch.cdist(query[:, start : start + chunk_size], reference).pow(2)  # [B, chunk, N]
        if exclude_self:
            rows = torch.arange(d.shape[1], device=d.device)
            d = d.clone()
            d[:, rows, rows + start] = float("inf")
        top = d.topk(k, dim=-1, largest=False)
        dists.append(top.values)
        idxs.append(top.indices)
    return torch.cat(dists, 1), torch.cat(idxs, 1)
