"""Uniform neighbour sampling (GraphSAGE, Hamilton et al. 2017) into per-layer bipartite blocks.

From a batch of seed nodes :math:`V_0`, hop :math:`h` draws for every node :math:`u \\in V_{h-1}`
a uniform subset of its in-neighbours without replacement,

.. math::
    S_h(u) \\subseteq \\mathcal{N}(u), \\quad |S_h(u)| = \\min(k_h, \\deg u), \\quad
    P\\big(S_h(u) = S\\big) = \\binom{\\deg u}{|S|}^{-1},

and :math:`V_h = V_{h-1} \\cup \\bigcup_u S_h(u)`. Nodes are relabelled so that every :math:`V_h` is
a prefix of ``n_id`` (seeds first, as in PyG's ``NeighborLoader``). The message-passing layer that
produces :math:`V_{h-1}` from :math:`V_h` reads the block of hop :math:`h`: sources are the first
``num_src = |V_h|`` rows of its input, targets the first ``num_dst = |V_{h-1}|`` rows; a model with
``L`` layers runs ``blocks[0]`` (hop ``L``, widest) first and ``blocks[-1]`` (hop 1, into the seeds) last.

Why our own sampler: PyG's ``NeighborLoader`` needs ``pyg-lib`` (not on PyPI) or ``torch-sparse`` (a
40-minute source build on this machine). This one is torch only and vectorised over all nodes of a
hop: the only Python loops run over hops and over the ``k`` draws of Floyd's algorithm, never over
nodes.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from distillcore.checks import check_tensor
from graphdistill.sampling.csr import CSRGraph


@dataclass
class Block:
    """The bipartite graph one message-passing layer runs on (module docstring).

    Shapes:
        edge_index [2, E]: row 0 sources in ``[0, num_src)``, row 1 targets in ``[0, num_dst)``; both index
        ``n_id`` of the owning :class:`SampledSubgraph` (targets are the first ``num_dst`` sources).
    """

    edge_index: Tensor
    num_src: int
    num_dst: int


@dataclass
class SampledSubgraph:
    """Seeds and their sampled multi-hop neighbourhood, relabelled.

    Shapes:
        n_id [num_nodes] global ids; ``n_id[:batch_size]`` are the seeds in the order given.
        blocks: one per layer, input layer first (``blocks[l].num_dst == blocks[l + 1].num_src``).
    """

    n_id: Tensor
    blocks: list[Block]
    batch_size: int


def check_fanouts(fanouts, name: str = "fanouts") -> tuple[int, ...]:
    """Fan-outs as a tuple of positive ints (``-1`` is allowed: all neighbours), else ``ValueError``."""
    values = tuple(fanouts)
    if not values or any(isinstance(k, bool) or not isinstance(k, int) or (k < 1 and k != -1) for k in values):
        raise ValueError(f"{name} must be positive integers (or -1 for all neighbours), one per layer, got {list(values)}")
    return values


def sample_neighbors(
    csr: CSRGraph,
    nodes: Tensor,  # [n] targets
    fanout: int,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:  # sources [m], targets' positions in `nodes` [m]
    """``min(fanout, deg u)`` distinct uniform in-neighbours of every ``u`` in ``nodes`` (``-1``: all).

    Nodes with ``deg u <= fanout`` keep every neighbour. The others run Floyd's algorithm (uniform
    ``k``-subsets of ``{0..d-1}`` from exactly ``k`` draws: for ``j = d-k .. d-1`` draw ``t`` in
    ``[0, j]`` and keep ``t``, or ``j`` when ``t`` was kept already), vectorised over the nodes: a
    ``[n, k]`` table of kept offsets, one column per draw.

    Returns:
        ``(sources, dst)``: global ids of the sampled neighbours and, for each, the row in ``nodes`` it
        was drawn for, grouped by ``dst`` ascending.
    """
    deg = csr.degree(nodes)
    start = csr.indptr[nodes]
    full = deg if fanout == -1 else torch.where(deg <= fanout, deg, 0)
    # every neighbour of the low-degree nodes
    full_dst = torch.repeat_interleave(torch.arange(nodes.numel()), full)
    full_offset = torch.arange(full_dst.numel()) - torch.repeat_interleave(torch.cumsum(full, 0) - full, full)
    if fanout == -1 or not bool((deg > fanout).any()):
        return csr.indices[start[full_dst] + full_offset], full_dst
    many = torch.nonzero(deg > fanout).view(-1)
    d = deg[many].to(torch.float64)
    kept = torch.empty(many.numel(), fanout, dtype=torch.long)
    for step in range(fanout):  # Floyd: j = d - k + step
        j = deg[many] - fanout + step
        t = (torch.rand(many.numel(), dtype=torch.float64, generator=generator) * (d - fanout + step + 1)).long()
        t = torch.minimum(t, j)  # guards the float rounding at the top of [0, j]
        taken = (kept[:, :step] == t[:, None]).any(1)
        kept[:, step] = torch.where(taken, j, t)
    dst = torch.cat([full_dst, many.repeat_interleave(fanout)])
    offset = torch.cat([full_offset, kept.view(-1)])
    order = torch.argsort(dst, stable=True)
    dst, offset = dst[order], offset[order]
    return csr.indices[start[dst] + offset], dst


class NeighborSampler:
    """Samples :class:`SampledSubgraph` s of a :class:`CSRGraph` for batches of seed nodes.

    Args:
        csr: the graph (in-neighbour lists).
        fanouts: neighbours per node per hop, PyG's order: ``fanouts[0]`` for the seeds' neighbours (the
            last layer), ``fanouts[-1]`` for the widest hop (the first layer); ``-1`` takes all.
    """

    def __init__(self, csr: CSRGraph, fanouts):
        self.csr = csr
        self.fanouts = check_fanouts(fanouts)
        # global id -> local id of the batch being relabelled; -1 elsewhere (reset after each batch, so
        # relabelling costs O(batch), not O(N))
        self._local = torch.full((csr.num_nodes,), -1, dtype=torch.long)

    def sample(self, seeds: Tensor, generator: torch.Generator | None = None) -> SampledSubgraph:
        """Samples the neighbourhood of ``seeds`` (distinct global ids) hop by hop (module docstring)."""
        check_tensor(seeds, "seeds", ndim=1, dtype=torch.long)
        if int(seeds.min()) < 0 or int(seeds.max()) >= self.csr.num_nodes:
            raise ValueError(f"seeds must lie in [0, {self.csr.num_nodes}), got {int(seeds.min())} .. {int(seeds.max())}")
        local = self._local
        local[seeds] = torch.arange(seeds.numel())
        if int((local[seeds] == torch.arange(seeds.numel())).sum()) != seeds.numel():
            local[seeds] = -1
            raise ValueError("seeds must be distinct")
        n_id, blocks = seeds, []
        try:
            for fanout in self.fanouts:
                num_dst = n_id.numel()
                sources, dst = sample_neighbors(self.csr, n_id, fanout, generator)
                new = torch.unique(sources[local[sources] < 0])  # sorted: deterministic relabelling
                local[new] = torch.arange(num_dst, num_dst + new.numel())
                n_id = torch.cat([n_id, new])
                blocks.append(Block(torch.stack([local[sources], dst]), n_id.numel(), num_dst))
        finally:
            local[n_id] = -1
        return SampledSubgraph(n_id, blocks[::-1], seeds.numel())


__all__ = ["Block", "NeighborSampler", "SampledSubgraph", "check_fanouts", "sample_neighbors"]
