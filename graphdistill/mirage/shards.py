r"""Mirage's hashing and support counting as map-reduce over shards of graphs.

The graphs are cut into contiguous shards (whole graphs: a computation tree never leaves its graph).
A :class:`ShardWorker` holds one shard as arrays and answers the map steps; the driver runs the
reduce steps on arrays and ships arrays back (no Python sets or dicts cross a process boundary:
pickling them made Ray / Dask 5-20x slower than one process). An *executor* runs a method on every
worker (:class:`LocalExecutor` in this process; ``graphdistill.mirage.cluster.RayExecutor`` on Ray
actors); the serial path is the same code with one in-process shard.

Per tree level :math:`l = 1..L` (:mod:`graphdistill.mirage.trees`):

- map: every worker emits the distinct tuples :math:`(x_v, \mathrm{sort}\{(e_{uv}, \mathrm{id}_{l-1}(u))\})`
  of its nodes (``level_rows``), with each node's row kept locally;
- reduce: the tuples of all shards are ranked by a rule over the set of distinct tuples only
  (:func:`~graphdistill.mirage.trees.merge_level_rows`), so the global ids do not depend on the
  sharding; every worker gets the global id of each of its rows back (``assign_level``).

Support counting: a transaction item is a tree id (set mode) or :math:`(k-1)\,T + t` for the
:math:`k`-th copy of tree :math:`t` among :math:`T` trees (multiset mode). Graphs fall in *groups*
:math:`g = \text{task} \cdot C + \text{class}` (one task: the classes; molpcba-style sets: two
classes per task, graphs whose label is missing in a task belong to none of its groups). Each worker
returns the sparse counts :math:`n_{g,i} = |\{G \in \text{shard} \cap g : i \in G\}|` as (group,
item, count) arrays (a sparse product membership x incidence); the reduce sums them
(``np.unique`` + ``np.bincount``). Then per group the workers return their graphs' rows restricted
to the group's frequent items (CSR arrays), concatenated in shard order, and FP-growth runs once per
group as an independent task.
"""
from __future__ import annotations

import math
import time
from typing import Any, Callable

import numpy as np
import scipy.sparse as sp
import torch

from .trees import LevelTable, children_csr, level_rows, merge_level_rows

SPLIT_TRAIN, SPLIT_VAL, SPLIT_TEST = 0, 1, 2


def _tensor(array: np.ndarray) -> torch.Tensor:
    """A torch view of an int array; arrays read from Ray's object store are read-only, so those are copied."""
    array = np.asarray(array)
    return torch.from_numpy(array if array.flags.writeable else array.copy())


class ShardWorker:
    """One shard of graphs as arrays, with the map steps of hashing and support counting.

    Args:
        node_labels: [N] dense node labels of the shard's nodes.
        edge_index: [2, E] edges between them (shard-local node ids), messages flow row 0 -> row 1.
        edge_labels: [E] dense edge labels.
        graph_ptr: [G + 1] node offsets of the shard's graphs (None: hashing only).
        y: [G, T] float labels, NaN where missing (None: hashing only).
        split: [G] ``SPLIT_TRAIN`` / ``SPLIT_VAL`` / ``SPLIT_TEST`` of every graph.
        threads: torch threads of this process (set in a worker process; None: left as they are).
    """

    def __init__(self, node_labels: np.ndarray, edge_index: np.ndarray | None = None, edge_labels: np.ndarray | None = None,
                 graph_ptr: np.ndarray | None = None, y: np.ndarray | None = None, split: np.ndarray | None = None,
                 threads: int | None = None):
        if threads is not None:  # a worker process of its own (Ray actor): use only its CPU share
            torch.set_num_threads(threads)
        self.cpu_seconds = 0.0  # process CPU time spent in map steps (this process: the worker's own in Ray)
        self.node_labels = _tensor(node_labels).long()
        num_nodes = self.node_labels.numel()
        if edge_index is None:
            edge_index = np.zeros((2, 0), dtype=np.int64)
        edge_labels = np.zeros(edge_index.shape[1], dtype=np.int64) if edge_labels is None else edge_labels
        self.children = children_csr(_tensor(edge_index).long(), _tensor(edge_labels).long(), num_nodes)
        self.ids: list[torch.Tensor] = [self.node_labels]
        self._rows: torch.Tensor | None = None
        self.graph_ptr = None if graph_ptr is None else np.asarray(graph_ptr, dtype=np.int64)
        self.y = None if y is None else np.asarray(y, dtype=np.float64).reshape(len(self.graph_ptr) - 1, -1)
        self.split = None if split is None else np.asarray(split)
        self._items: tuple | None = None

    def run_task(self, fn: Callable, *args) -> Any:
        """An independent task (FP-growth of one (task, class)) run where this shard lives."""
        return fn(*args)

    def call(self, method: str, *args) -> Any:
        """Runs map step ``method`` and adds its process CPU time to :attr:`cpu_seconds`."""
        start = time.process_time()
        try:
            return getattr(self, method)(*args)
        finally:
            self.cpu_seconds += time.process_time() - start

    # --- hashing -------------------------------------------------------------------------------
    def level_rows(self, num_prev: int) -> tuple[np.ndarray, ...]:
        """The shard's distinct tuples of the next level (label, ptr, child edge label, child) as arrays."""
        table, self._rows = level_rows(self.node_labels, *self.children, self.ids[-1], num_prev)
        return tuple(v.numpy() for v in (table.label, table.ptr, table.child_edge_label, table.child))

    def assign_level(self, row_ids: np.ndarray) -> None:
        """Stores every node's global id of the level just reduced: ``row_ids`` [k] maps the shard's rows."""
        self.ids.append(_tensor(row_ids)[self._rows])
        self._rows = None

    def level_ids(self) -> list[np.ndarray]:
        return [i.numpy() for i in self.ids]

    def get_cpu_seconds(self) -> float:
        return self.cpu_seconds

    # --- support counting ------------------------------------------------------------------------
    def _graph_items(self, level: int, num_trees: int, multiset: bool) -> tuple[np.ndarray, np.ndarray]:
        """Distinct (graph, item) pairs of the shard's graphs, sorted by graph then item."""
        if self._items is not None and self._items[0] == (level, num_trees, multiset):
            return self._items[1]
        trees = self.ids[level].numpy().astype(np.int64)
        counts = np.diff(self.graph_ptr)
        graph = np.repeat(np.arange(len(counts), dtype=np.int64), counts)
        key = np.sort(graph * num_trees + trees)
        if multiset:  # the k-th copy of tree t in a graph is item (k - 1) * T + t
            starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
            copy = np.arange(key.size) - np.repeat(starts, np.diff(np.r_[starts, key.size]))
            graph, item = key // num_trees, copy * num_trees + key % num_trees
        else:
            key = np.unique(key)
            graph, item = key // num_trees, key % num_trees
        self._items = ((level, num_trees, multiset), (graph, item))
        return graph, item

    def _membership(self, num_classes: int, graphs_split: int) -> sp.csr_matrix:
        """[groups, graphs] 0/1: graph in group task * C + class (its label there is not missing)."""
        rows, cols = [], []
        keep = self.split == graphs_split
        for t in range(self.y.shape[1]):
            label = self.y[:, t]
            ok = keep & ~np.isnan(label)
            graphs = np.flatnonzero(ok)
            rows.append(t * num_classes + label[graphs].astype(np.int64))
            cols.append(graphs)
        rows, cols = np.concatenate(rows), np.concatenate(cols)
        return sp.csr_matrix((np.ones(rows.size, dtype=np.int64), (rows, cols)),
                             shape=(self.y.shape[1] * num_classes, self.y.shape[0]))

    def item_counts(self, level: int, num_trees: int, multiset: bool, num_classes: int) -> tuple[np.ndarray, ...]:
        """Sparse per-group support counts of the shard's training graphs: (group, item, count) arrays."""
        graph, item = self._graph_items(level, num_trees, multiset)
        items, column = np.unique(item, return_inverse=True)
        incidence = sp.csr_matrix((np.ones(item.size, dtype=np.int64), (graph, column)),
                                  shape=(len(self.graph_ptr) - 1, items.size))
        counts = (self._membership(num_classes, SPLIT_TRAIN) @ incidence).tocoo()
        return counts.row.astype(np.int64), items[counts.col], counts.data.astype(np.int64)

    def group_rows(self, level: int, num_trees: int, multiset: bool, num_classes: int, frequent_ptr: np.ndarray,
                   frequent_items: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per group, the CSR rows (indptr, column indices) of the shard's training graphs in that group over
        the group's frequent items ``frequent_items[frequent_ptr[g]:frequent_ptr[g + 1]]`` (sorted)."""
        graph, item = self._graph_items(level, num_trees, multiset)
        membership = self._membership(num_classes, SPLIT_TRAIN)
        out = []
        for g in range(len(frequent_ptr) - 1):
            members = membership.indices[membership.indptr[g] : membership.indptr[g + 1]]  # sorted graphs
            row, in_group = _lookup(members, graph)
            col, frequent = _lookup(frequent_items[frequent_ptr[g] : frequent_ptr[g + 1]], item)
            keep = in_group & frequent
            indptr = np.zeros(members.size + 1, dtype=np.int64)
            indptr[1:] = np.cumsum(np.bincount(row[keep], minlength=members.size))
            out.append((indptr, col[keep].astype(np.int64)))  # pairs are sorted by graph: rows stay in order
        return out

    def graph_trees(self, level: int, graphs_split: int) -> tuple[np.ndarray, np.ndarray]:
        """Tree ids of the nodes of the shard's graphs of one split, and their node offsets [G_s + 1]."""
        graphs = np.flatnonzero(self.split == graphs_split)
        counts = np.diff(self.graph_ptr)[graphs]
        starts = self.graph_ptr[graphs]
        index = np.repeat(starts - np.r_[0, np.cumsum(counts)[:-1]], counts) + np.arange(counts.sum())
        return self.ids[level].numpy()[index], np.r_[0, np.cumsum(counts)].astype(np.int64)


def _lookup(table: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Position of every value in the sorted array ``table`` and whether it is there."""
    pos = np.searchsorted(table, values)
    found = pos < table.size
    found[found] = table[pos[found]] == values[found]
    return pos, found


class LocalExecutor:
    """Runs the workers' map steps and independent tasks one after the other in this process."""

    remote = False  # the workers' CPU time is this process's

    def __init__(self, workers: list[ShardWorker]):
        self.workers = workers

    @property
    def num_shards(self) -> int:
        return len(self.workers)

    def map(self, method: str, args: list[tuple] | None = None) -> list:
        """``worker.method(*args[i])`` on every worker ``i`` (the same args for all when one tuple)."""
        args = args if args is not None else [()] * len(self.workers)
        return [w.call(method, *a) for w, a in zip(self.workers, args, strict=True)]

    def tasks(self, fn: Callable, args: list[tuple]) -> list:
        return [fn(*a) for a in args]

    def close(self) -> None:
        pass


def hash_shards(executor, depth: int, num_node_labels: int) -> list[LevelTable]:
    """Level-by-level tree hashing over the executor's shards; returns the global decoding tables
    (each worker keeps its nodes' global ids of every level)."""
    num_prev, levels = num_node_labels, []
    for _ in range(depth):
        tables = [LevelTable(*map(_tensor, rows)) for rows in executor.map("level_rows", [(num_prev,)] * executor.num_shards)]
        table, ids = merge_level_rows(tables, num_prev)
        executor.map("assign_level", [(i.numpy(),) for i in ids])
        levels.append(table)
        num_prev = table.num_trees
    return levels


def count_supports(executor, level: int, num_trees: int, multiset: bool, num_groups: int, num_classes: int
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Global per-group item support counts (reduce of the workers' sparse counts), as CSR over groups:
    (ptr [num_groups + 1], items sorted within each group, counts)."""
    parts = executor.map("item_counts", [(level, num_trees, multiset, num_classes)] * executor.num_shards)
    group = np.concatenate([p[0] for p in parts])
    item = np.concatenate([p[1] for p in parts])
    count = np.concatenate([p[2] for p in parts])
    space = int(item.max()) + 1 if item.size else 1
    keys, inverse = np.unique(group * space + item, return_inverse=True)
    total = np.bincount(inverse.reshape(-1), weights=count, minlength=keys.size).astype(np.int64)
    ptr = np.zeros(num_groups + 1, dtype=np.int64)
    ptr[1:] = np.cumsum(np.bincount(keys // space, minlength=num_groups))
    return ptr, keys % space, total


def group_transactions(executor, level: int, num_trees: int, multiset: bool, num_classes: int,
                       frequent: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per group, the CSR rows of all its training graphs (shard order) over its frequent items."""
    frequent_ptr = np.zeros(len(frequent) + 1, dtype=np.int64)
    frequent_ptr[1:] = np.cumsum([f.size for f in frequent])
    flat = np.concatenate(frequent) if frequent else np.zeros(0, dtype=np.int64)
    parts = executor.map("group_rows", [(level, num_trees, multiset, num_classes, frequent_ptr, flat)] * executor.num_shards)
    out = []
    for g in range(len(frequent)):
        indptrs, indices = [p[g][0] for p in parts], [p[g][1] for p in parts]
        offsets = np.cumsum([0] + [i[-1] for i in indptrs[:-1]])
        indptr = np.concatenate([[0]] + [i[1:] + o for i, o in zip(indptrs, offsets)])
        out.append((indptr.astype(np.int64), np.concatenate(indices)))
    return out


def gather_graph_trees(executor, level: int, graphs_split: int) -> list[np.ndarray]:
    """Tree ids of every graph of one split (shard order = data-set order), one array per graph."""
    out = []
    for trees, ptr in executor.map("graph_trees", [(level, graphs_split)] * executor.num_shards):
        out.extend(trees[ptr[i] : ptr[i + 1]] for i in range(len(ptr) - 1))
    return out


def shard_bounds(node_ptr: np.ndarray, num_shards: int) -> np.ndarray:
    """Graph offsets [S + 1] of ``num_shards`` contiguous shards with about equal node counts (each non-empty)."""
    num_graphs = len(node_ptr) - 1
    if num_shards < 1:
        raise ValueError(f"the number of shards must be >= 1, got {num_shards}")
    num_shards = min(num_shards, num_graphs)
    targets = node_ptr[-1] * np.arange(1, num_shards) / num_shards
    inner = np.searchsorted(node_ptr, targets, side="left")
    bounds = np.concatenate([[0], inner, [num_graphs]]).astype(np.int64)
    # keep every shard non-empty (tiny sets, very uneven graph sizes)
    for i in range(1, num_shards):
        bounds[i] = min(max(bounds[i], bounds[i - 1] + 1), num_graphs - (num_shards - i))
    return bounds


def shard_arrays(node_labels: np.ndarray, edge_index: np.ndarray, edge_labels: np.ndarray, node_ptr: np.ndarray,
                 edge_ptr: np.ndarray, y: np.ndarray, split: np.ndarray, num_shards: int) -> list[dict[str, np.ndarray]]:
    """The keyword arrays of :class:`ShardWorker` for contiguous shards of a set stored as one disjoint union
    (graph ``g``'s nodes ``node_ptr[g]:node_ptr[g+1]``, its edges ``edge_ptr[g]:edge_ptr[g+1]``)."""
    bounds = shard_bounds(node_ptr, num_shards)
    shards = []
    for g0, g1 in zip(bounds[:-1], bounds[1:]):
        n0, n1, e0, e1 = node_ptr[g0], node_ptr[g1], edge_ptr[g0], edge_ptr[g1]
        shards.append({
            "node_labels": node_labels[n0:n1],
            "edge_index": edge_index[:, e0:e1] - n0,
            "edge_labels": edge_labels[e0:e1],
            "graph_ptr": node_ptr[g0 : g1 + 1] - n0,
            "y": y[g0:g1],
            "split": split[g0:g1],
        })
    return shards


def min_count(support: float, size: int) -> int:
    """Absolute threshold :math:`\\lceil s\\,n \\rceil` (at least 1); supports exactly at it are kept."""
    return max(1, math.ceil(support * size - 1e-9))
