"""A graph in compressed sparse row form keyed by the *target* node (in-neighbour lists).

Row ``u`` lists the sources of the edges ``v -> u`` (PyG's ``edge_index[0] -> edge_index[1]``
direction of messages), sorted ascending:

.. math::
    \\mathcal{N}(u) = \\{\\, \\mathrm{indices}[j] : \\mathrm{indptr}[u] \\le j < \\mathrm{indptr}[u+1] \\,\\},
    \\qquad \\deg(u) = \\mathrm{indptr}[u+1] - \\mathrm{indptr}[u].

Memory is ``8 (N + 1) + 8 E`` bytes (``indices`` int64), the smallest form that still answers
"neighbours of a batch of nodes" and "is (v, u) an edge" in time independent of ``N``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from distillcore.checks import check_tensor


@dataclass
class CSRGraph:
    """In-neighbour lists of ``num_nodes`` nodes (module docstring).

    Shapes:
        indptr [N + 1] int64, nondecreasing from 0 to E; indices [E] int64 in [0, N), sorted within each row.
    """

    indptr: Tensor
    indices: Tensor

    def __post_init__(self):
        check_tensor(self.indptr, "indptr", ndim=1, dtype=torch.long)
        check_tensor(self.indices, "indices", ndim=1, dtype=torch.long, nonempty=False)
        if int(self.indptr[0]) != 0 or int(self.indptr[-1]) != self.indices.numel():
            raise ValueError(f"indptr must run from 0 to len(indices) = {self.indices.numel()}, "
                             f"got {int(self.indptr[0])} .. {int(self.indptr[-1])}")

    @property
    def num_nodes(self) -> int:
        return self.indptr.numel() - 1

    @property
    def num_edges(self) -> int:
        return self.indices.numel()

    def degree(self, nodes: Tensor | None = None) -> Tensor:  # [n] int64 in-degree
        """In-degree of ``nodes`` (all nodes when ``None``)."""
        if nodes is None:
            return self.indptr[1:] - self.indptr[:-1]
        return self.indptr[nodes + 1] - self.indptr[nodes]

    @classmethod
    def from_edge_index(cls, edge_index: Tensor, num_nodes: int, *, undirected: bool = False) -> "CSRGraph":
        """CSR of ``edge_index`` [2, E] (``edge_index[1]`` the targets).

        ``undirected=True`` adds the reverse of every edge and drops duplicates and self loops (for
        edge lists that store each undirected edge once, as OGB's); otherwise edges are kept as given.
        """
        check_tensor(edge_index, "edge_index", shape=[2, None], dtype=torch.long, nonempty=False)
        if undirected:
            key = torch.cat([edge_index[1] * num_nodes + edge_index[0], edge_index[0] * num_nodes + edge_index[1]])
            key = torch.unique(key[key // num_nodes != key % num_nodes])  # sorted by target, then source
            counts = torch.bincount(key // num_nodes, minlength=num_nodes)
            sources = key % num_nodes
        else:
            order = torch.argsort(edge_index[1] * num_nodes + edge_index[0])  # by target, then source
            counts = torch.bincount(edge_index[1], minlength=num_nodes)
            sources = edge_index[0][order].contiguous()
        indptr = torch.zeros(num_nodes + 1, dtype=torch.long)
        torch.cumsum(counts, 0, out=indptr[1:])
        return cls(indptr, sources)

    def to_edge_index(self) -> Tensor:  # [2, E]
        """``edge_index`` [2, E] (sources, targets), targets ascending."""
        targets = torch.repeat_interleave(torch.arange(self.num_nodes), self.degree())
        return torch.stack([self.indices, targets])

    def has_edges(self, sources: Tensor, targets: Tensor) -> Tensor:  # [n] bool
        """Whether each ``sources[i] -> targets[i]`` is an edge: a binary search in each target's sorted
        row, run for all queries at once (``ceil(log2(max degree)) + 1`` vectorised steps)."""
        lo = self.indptr[targets].clone()
        hi = self.indptr[targets + 1].clone()
        if self.num_edges == 0:
            return torch.zeros_like(sources, dtype=torch.bool)
        while bool((lo < hi).any()):
            mid = (lo + hi) // 2
            active = lo < hi
            value = self.indices[mid.clamp_max(self.num_edges - 1)]
            go_right = active & (value < sources)
            lo = torch.where(go_right, mid + 1, lo)
            hi = torch.where(active & ~go_right, mid, hi)
        found = lo < self.indptr[targets + 1]
        return found & (self.indices[lo.clamp_max(self.num_edges - 1)] == sources)


__all__ = ["CSRGraph"]
