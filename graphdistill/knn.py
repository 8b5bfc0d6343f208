"""k-nearest-neighbour graph construction on :func:`distillcore.knn.knn`.

PyG's ``torch_geometric.nn.knn_graph`` needs ``pyg-lib`` or ``torch-cluster``, neither of which
installs here (no wheels for this torch, and source builds pull a CUDA torch); the exact chunked kNN of
``distillcore`` gives the same graph, which is what small and medium node-classification graphs need.
"""
from __future__ import annotations

import torch
from torch import Tensor

from distillcore.checks import check_positive, check_tensor
from distillcore.knn import knn


def knn_graph(
    x: Tensor,  # [N, D]
    k: int,
    *,
    loop: bool = False,
    chunk_size: int = 2048,
) -> Tensor:  # [2, N * k]
    r"""Directed k-NN graph in PyG's ``source_to_target`` convention.

    For every node :math:`i` the edges :math:`(j, i)` point from its :math:`k` nearest nodes
    :math:`j = \operatorname{argmin}^{(k)}_j \lVert x_i - x_j \rVert_2` to :math:`i`
    (``edge_index[1]`` is the centre node, as in ``torch_geometric.nn.knn_graph``).

    Args:
        x: node positions or features.
        k: neighbours per node; must be below ``N`` (or at most ``N`` with ``loop=True``).
        loop: count a node as its own neighbour. Without it, the node itself is excluded even when
            other nodes sit at exactly the same position (duplicates stay valid neighbours).
        chunk_size: rows of the distance matrix computed at once.
    """
    check_tensor(x, "x", ndim=2, floating=True)
    check_positive(k, "k")
    check_positive(chunk_size, "chunk_size")
    num_nodes = x.size(0)
    max_k = num_nodes if loop else num_nodes - 1
    if k > max_k:
        raise ValueError(f"k={k} is too large for {num_nodes} nodes (at most {max_k} with loop={loop})")
    _, neighbours = knn(x[None], x[None], k, exclude_self=not loop, chunk_size=chunk_size)  # [1, N, k]
    source = neighbours[0].reshape(-1)
    target = torch.arange(num_nodes, device=x.device).repeat_interleave(k)
    return torch.stack([source, target])
