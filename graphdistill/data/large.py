"""Node-classification graphs too large for a PyG ``Data`` with ``edge_index``: CSR + (memory-mapped) features.

A products-size graph stored as ``edge_index`` int64 in both directions is 16 bytes per directed
edge (2 GB for ogbn-products) before any copy ``to_undirected`` makes; the CSR in-neighbour lists
(``graphdistill.sampling.CSRGraph``) are 8 bytes per directed edge and are what the neighbour
sampler and the layer-wise inference read. :func:`large_sbm_graph` writes a planted-partition graph
of any size straight into CSR, chunk by chunk:

- edges: ``m = N d / 2`` undirected draws ``(u, v)``, ``u`` uniform; with probability ``h``
  (homophily) ``v`` is uniform in ``u``'s block, else uniform over all nodes; self loops dropped,
  duplicates removed (a fraction ~ ``d / block size`` of draws);
- features: ``x_i = mu_{y_i} + eps_i``, ``eps ~ N(0, I)``, class means of norm ``class_separation``
  in random directions (as ``SBMConfig``);
- blocks are consecutive id ranges; the split is random with ``train_fraction`` / ``val_fraction``
  (ogbn-products trains on 8 % of the nodes).

Memory: pass 1 counts degrees per chunk, pass 2 regenerates the same chunks (same seeds) and places
each edge at its row's next free slot, pass 3 sorts and de-duplicates rows block by block. The peak
is the CSR itself (8 bytes per directed edge) plus one chunk.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from distillcore.checks import check_positive
from graphdistill.sampling import CSRGraph


@dataclass
class LargeNodeGraph:
    """A node-classification graph as CSR in-neighbour lists and a feature array.

    Shapes:
        x [N, F] float32 numpy array (memory-mapped when read from or written to disk); y [N] int64, ``-1``
        where a node has no label; train / val / test [n] int64 node ids.
    """

    x: np.ndarray
    csr: CSRGraph
    y: Tensor
    num_classes: int
    train: Tensor
    val: Tensor
    test: Tensor

    @property
    def num_nodes(self) -> int:
        return self.csr.num_nodes


@dataclass
class LargeSBMConfig:
    """Planted-partition graph of the module docstring (defaults: ogbn-products' size and classes)."""

    num_nodes: int = 2_400_000
    num_blocks: int = 47
    avg_degree: float = 50.0  # directed entries per node: ~ num_nodes * avg_degree / 2 undirected edges
    homophily: float = 0.8
    feature_dim: int = 100
    class_separation: float = 2.0
    train_fraction: float = 0.08
    val_fraction: float = 0.02
    chunk_edges: int = 4_000_000  # undirected draws generated at once

    def validate(self) -> None:
        for name in ("num_nodes", "num_blocks", "avg_degree", "feature_dim", "chunk_edges"):
            check_positive(getattr(self, name), name)
        if self.num_nodes < 2 * self.num_blocks:
            raise ValueError(f"need at least 2 nodes per block, got {self.num_nodes} nodes in {self.num_blocks} blocks")
        if not 0.0 <= self.homophily <= 1.0:
            raise ValueError(f"homophily must lie in [0, 1], got {self.homophily}")
        if not (0 < self.train_fraction and 0 < self.val_fraction and self.train_fraction + self.val_fraction < 1):
            raise ValueError("train_fraction and val_fraction must be > 0 with a sum < 1")


def _block_bounds(config: LargeSBMConfig) -> np.ndarray:  # [B + 1] first id of each block
    base, extra = divmod(config.num_nodes, config.num_blocks)
    sizes = [base + (1 if b < extra else 0) for b in range(config.num_blocks)]
    return np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)


def _edge_chunk(config: LargeSBMConfig, bounds: np.ndarray, seed: int, index: int, count: int) -> tuple[Tensor, Tensor]:
    """Undirected draws of chunk ``index`` (module docstring), both directions, self loops dropped."""
    rng = np.random.default_rng([seed, 1, index])
    u = rng.integers(0, config.num_nodes, count)
    block = np.searchsorted(bounds, u, side="right") - 1
    inside = rng.random(count) < config.homophily
    lo, size = bounds[block], bounds[block + 1] - bounds[block]
    v = np.where(inside, lo + (rng.random(count) * size).astype(np.int64), rng.integers(0, config.num_nodes, count))
    keep = u != v
    u, v = torch.from_numpy(u[keep]), torch.from_numpy(v[keep])
    return torch.cat([u, v]), torch.cat([v, u])  # sources, targets


def large_sbm_graph(config: LargeSBMConfig = LargeSBMConfig(), seed: int = 0,
                    feature_file: str | os.PathLike | None = None) -> LargeNodeGraph:
    """Generates the graph of the module docstring.

    Args:
        feature_file: write the features there as a memory-mapped ``.npy`` (else they are kept in memory).
    """
    config.validate()
    n = config.num_nodes
    bounds = _block_bounds(config)
    draws = int(n * config.avg_degree / 2)
    chunks = [(i, min(config.chunk_edges, draws - start)) for i, start in enumerate(range(0, draws, config.chunk_edges))]
    # pass 1: degrees
    degree = torch.zeros(n, dtype=torch.long)
    for index, count in chunks:
        _, targets = _edge_chunk(config, bounds, seed, index, count)
        degree += torch.bincount(targets, minlength=n)
    indptr = torch.zeros(n + 1, dtype=torch.long)
    torch.cumsum(degree, 0, out=indptr[1:])
    # pass 2: each edge to its row's next free slot
    indices = torch.empty(int(indptr[-1]), dtype=torch.long)
    fill = indptr[:-1].clone()
    for index, count in chunks:
        sources, targets = _edge_chunk(config, bounds, seed, index, count)
        targets, order = torch.sort(targets, stable=True)
        counts = torch.bincount(targets, minlength=n)
        rank = torch.arange(targets.numel()) - (torch.cumsum(counts, 0) - counts)[targets]
        indices[fill[targets] + rank] = sources[order]
        fill += counts
    del fill
    # pass 3: sort and de-duplicate rows, block by block, compacting in place (writes never pass reads)
    new_degree = torch.zeros(n, dtype=torch.long)
    write, row = 0, 0
    step = max(1, int(config.chunk_edges * 2 / max(config.avg_degree, 1.0)))
    while row < n:
        stop = min(n, row + step)
        a, b = int(indptr[row]), int(indptr[stop])
        rows = torch.repeat_interleave(torch.arange(stop - row), degree[row:stop])
        keys = torch.unique(rows * n + indices[a:b])  # sorted, distinct
        local_rows = keys // n
        indices[write:write + keys.numel()] = keys % n
        new_degree[row:stop] = torch.bincount(local_rows, minlength=stop - row)
        write += keys.numel()
        row = stop
    torch.cumsum(new_degree, 0, out=indptr[1:])
    csr = CSRGraph(indptr, indices[:write])
    # labels, split, features
    y = torch.repeat_interleave(torch.arange(config.num_blocks), torch.from_numpy(np.diff(bounds)))
    rng = np.random.default_rng([seed, 2])
    order = torch.from_numpy(rng.permutation(n))
    n_train, n_val = max(1, int(config.train_fraction * n)), max(1, int(config.val_fraction * n))
    train, val, test = order[:n_train].sort().values, order[n_train:n_train + n_val].sort().values, order[n_train + n_val:].sort().values
    directions = rng.standard_normal((config.num_blocks, config.feature_dim)).astype(np.float32)
    means = config.class_separation * directions / np.linalg.norm(directions, axis=1, keepdims=True)
    if feature_file is not None:
        Path(feature_file).parent.mkdir(parents=True, exist_ok=True)
        x = np.lib.format.open_memmap(feature_file, mode="w+", dtype=np.float32, shape=(n, config.feature_dim))
    else:
        x = np.empty((n, config.feature_dim), dtype=np.float32)
    labels = y.numpy()
    for a in range(0, n, 1 << 18):
        b = min(n, a + (1 << 18))
        noise = np.random.default_rng([seed, 3, a]).standard_normal((b - a, config.feature_dim), dtype=np.float32)
        x[a:b] = means[labels[a:b]] + noise
    if feature_file is not None:
        x.flush()
    return LargeNodeGraph(x, csr, y, config.num_blocks, train, val, test)


__all__ = ["LargeNodeGraph", "LargeSBMConfig", "large_sbm_graph"]
