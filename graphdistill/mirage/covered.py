r"""Readout over the covered roots: evaluate a GNN trained on a distilled set on the nodes whose tree it holds.

A GNN trained on a Mirage set learns the readout contribution of the trees the set stores. On a new
graph, the nodes whose depth-:math:`L` computation tree is *not* in the set (on solubility at 50x,
46% of the test atoms) contribute an embedding the model never saw a label for. The Mirage reference
code therefore reads a graph out over the nodes whose tree is one of the mined ones,

.. math:: \hat y_G = \mathrm{head}\Bigl(\tfrac{1}{|R_G|}\textstyle\sum_{v \in R_G} h_v^{(L)}\Bigr),
    \qquad R_G = \{v \in G : T_L(v) \in \mathcal{T}_{\text{set}}\},

falling back to every node when :math:`R_G` is empty. Membership is decided from the distilled file
alone: a node's label is the index of its feature row in the set's label rows (exact match: categorical
features; continuous features are binned at distillation and the bins are not stored, so their nodes
never match and the readout falls back to all nodes), and level by level its tuple (label, sorted
(edge label, child id)) is looked up among the set's decoding tables (:func:`~graphdistill.mirage.trees.intern_rows`
on the union of both, exact). A child or label outside the set makes the node unknown at every level above.
"""
from __future__ import annotations

import copy

import torch
from torch_geometric.data import Batch, Data

from .distilled import DistilledDataset
from .trees import children_csr, intern_rows, level_rows


def _row_index(table: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """[M] index of every row of ``rows`` [M, F] in ``table`` [K, F] (distinct rows), ``K`` where absent."""
    if rows.shape[0] == 0:
        return torch.zeros(0, dtype=torch.long)
    if table.dtype != rows.dtype:
        return torch.full((rows.shape[0],), table.shape[0], dtype=torch.long)
    inverse = torch.unique(torch.cat([table, rows]), dim=0, return_inverse=True)[1]
    lookup = torch.full((int(inverse.max()) + 1,), table.shape[0], dtype=torch.long)
    lookup[inverse[: table.shape[0]]] = torch.arange(table.shape[0])
    return lookup[inverse[table.shape[0]:]]


def covered_roots(distilled: DistilledDataset, graphs: list[Data]) -> list[torch.Tensor]:
    """Per graph, [n_i] bool: the node's depth-``distilled.depth`` tree is one of the set's trees.

    Args:
        distilled: the distilled set (its decoding tables and label rows).
        graphs: PyG graphs with the features the set was distilled from (``x``, ``edge_index``, and
            ``edge_attr`` when the set has edge features).
    """
    if not graphs:  # an empty split (a set without test graphs): Batch cannot be built from no graphs
        return []
    batch = Batch.from_data_list(graphs)
    num_labels = distilled.node_features.shape[0]
    labels = _row_index(distilled.node_features, batch.x)  # num_labels: unknown
    edge_index = batch.edge_index
    if distilled.edge_features is None:
        edge_labels = torch.zeros(edge_index.shape[1], dtype=torch.long)
    else:
        edge_labels = _row_index(distilled.edge_features, batch.edge_attr)
    src, edge_sorted, ptr = children_csr(edge_index, edge_labels, batch.num_nodes)
    ids, num_prev = labels, num_labels  # previous level's ids; num_prev means unknown
    for table in distilled.levels:
        radix = num_prev + 1  # one more id: the unknown child
        distinct, rows = level_rows(labels, src, edge_sorted, ptr, ids, radix)
        stored_keys = table.child_edge_label.long() * radix + table.child.long()
        query_keys = distinct.child_edge_label * radix + distinct.child
        first = torch.cat([table.label.long(), distinct.label])
        lengths = torch.cat([table.ptr[1:].long() - table.ptr[:-1].long(), distinct.ptr[1:] - distinct.ptr[:-1]])
        offsets = torch.zeros(first.numel() + 1, dtype=torch.long)
        offsets[1:] = torch.cumsum(lengths, 0)
        interned = intern_rows(first, offsets, torch.cat([stored_keys, query_keys]))
        lookup = torch.full((int(interned.max()) + 1,), table.num_trees, dtype=torch.long)
        lookup[interned[: table.num_trees]] = torch.arange(table.num_trees)
        ids, num_prev = lookup[interned[table.num_trees:]][rows], table.num_trees
    covered = ids < num_prev
    return list(torch.split(covered, torch.diff(batch.ptr).tolist()))


def with_covered_readout(distilled: DistilledDataset, graphs: list[Data]) -> list[Data]:
    """Shallow copies of ``graphs`` whose ``root_mask`` is :func:`covered_roots` (every node where none is
    covered); the GNN's readout (:class:`~graphdistill.mirage.models.GraphClassifier`) pools those roots.

    Args:
        distilled, graphs: as :func:`covered_roots` (an empty list gives an empty list).
    """
    out = []
    for g, mask in zip(graphs, covered_roots(distilled, graphs)):
        g = copy.copy(g)
        g.root_mask = mask if bool(mask.any()) else torch.ones_like(mask)
        out.append(g)
    return out
