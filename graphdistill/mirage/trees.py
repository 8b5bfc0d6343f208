r"""Computation trees and their exact canonical ids, computed level by level.

The depth-:math:`L` computation tree of node :math:`v` is what an :math:`L`-layer message-passing GNN
sees from :math:`v`: :math:`v` with its label, whose children are *all* its in-neighbours :math:`u`
(the node it was reached from included: the edge back to the parent is kept), each unrolled to depth
:math:`L-1`, every child edge carrying its edge label:

.. math::
    T_0(v) = x_v, \qquad
    T_l(v) = \bigl(x_v,\ \{\!\{ (e_{uv},\ T_{l-1}(u)) : u \in \mathcal{N}(v) \}\!\}\bigr).

Two nodes have isomorphic depth-:math:`l` trees exactly when these nested forms are equal (the
children of a rooted unordered tree are a multiset). We never unroll the :math:`d^L` nodes: level by
level (as in WL refinement / AHU tree hashing) every node's tuple (own label, sorted multiset of
(edge label, child id at level :math:`l-1`)) is *interned*: equal tuples get the same dense integer
id, different tuples different ids. Interning is exact (no hash collisions), so
:math:`\mathrm{id}_l(v) = \mathrm{id}_l(w) \iff T_l(v) \cong T_l(w)` by induction on :math:`l`.

Interning is vectorised: a node's tuple is folded column by column,
``code <- rank(code * (max_col + 1) + col)``, where ``rank`` is ``torch.unique``'s inverse (dense ids
of the distinct values); every fold is injective, and nodes leave the fold once their (degree-long)
tuple is used up, so a level costs :math:`O(|E| \log |E|)` and the whole hashing
:math:`O(L\,|E| \log |E|)`.

Sharded (:mod:`graphdistill.mirage.shards`): a level is a map over shards of graphs
(:func:`level_rows`: each shard's distinct tuples) and a reduce (:func:`merge_level_rows`: a global
id per distinct tuple by a rule over the set of tuples only), so ids do not depend on the sharding.

Each level's ids are decodable: :class:`TreeTables` keeps, per level and id, the root label and the
sorted (edge label, child id) list, so any tree can be rebuilt (:func:`unroll_trees`) and stored
compactly (a tree shares its subtrees with every other tree of the set).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from distillcore.checks import check_same_size, check_tensor


@dataclass
class LevelTable:
    """Decoding table of the trees of one level :math:`l \\ge 1` (``n`` distinct trees).

    ``label[t]`` is tree ``t``'s root label; its children are
    ``(child_edge_label[k], child[k])`` for ``k`` in ``ptr[t] : ptr[t + 1]``, sorted, where ``child``
    indexes the trees of level :math:`l - 1` (node labels when :math:`l = 1`).
    """

    label: torch.Tensor  # [n] int64
    ptr: torch.Tensor  # [n + 1] int64
    child_edge_label: torch.Tensor  # [nnz] int64
    child: torch.Tensor  # [nnz] int64

    @property
    def num_trees(self) -> int:
        return self.label.numel()


@dataclass
class TreeTables:
    """Canonical ids of every node's computation trees at levels 0..depth, plus decoding tables.

    ``ids[l]`` [N] is the id of each node's depth-``l`` tree (``ids[0]`` are the node labels);
    ``levels[l - 1]`` decodes the ids of level ``l``.
    """

    ids: list[torch.Tensor]  # depth + 1 tensors [N] int64
    levels: list[LevelTable]
    num_node_labels: int
    num_edge_labels: int

    @property
    def depth(self) -> int:
        return len(self.levels)


def _dense_rank(values: torch.Tensor) -> torch.Tensor:
    """Dense ids (0..k-1, in sorted order) of the distinct entries of ``values`` [M]."""
    return torch.unique(values, sorted=True, return_inverse=True)[1]


def intern_rows(first: torch.Tensor, ptr: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    r"""Dense ids of variable-length integer rows: equal rows <=> equal ids (exact, no hashing).

    Row ``i`` is ``(first[i], cols[ptr[i]], ..., cols[ptr[i+1]-1])``, all entries >= 0. Columns are
    folded one at a time, ``code <- rank(code * (max(col) + 1) + col)``, over the rows still that
    long; each fold is injective, so rows of equal length end with equal codes iff they are equal,
    and the length is folded in last to separate rows of different lengths. Cost
    :math:`O((M + nnz) \log M)`.

    Args:
        first: [M] int64, the first entry of every row.
        ptr: [M + 1] int64, CSR offsets of the remaining entries in ``cols``.
        cols: [nnz] int64.
    Returns:
        [M] int64 ids in ``0..k-1`` for the ``k`` distinct rows.
    """
    num_rows = first.numel()
    length = ptr[1:] - ptr[:-1]
    code = _dense_rank(first)
    active = torch.arange(num_rows)
    for k in range(int(length.max()) if num_rows else 0):
        active = active[length[active] > k]
        col = cols[ptr[active] + k]
        radix = int(col.max()) + 1
        if num_rows * radix >= 2**63:  # code < num_rows: the fold must fit in int64 to stay exact
            raise OverflowError(f"intern_rows: {num_rows} rows x {radix} column values overflow int64")
        code[active] = _dense_rank(code[active] * radix + col)
    return _dense_rank(length * num_rows + code)


def csr_gather(ptr: torch.Tensor, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Positions of the CSR entries of ``rows`` [R] (concatenated) and the new offsets [R + 1]."""
    counts = ptr[rows + 1] - ptr[rows]
    new_ptr = torch.zeros(rows.numel() + 1, dtype=torch.long)
    new_ptr[1:] = torch.cumsum(counts, 0)
    within = torch.arange(int(new_ptr[-1])) - new_ptr[:-1].repeat_interleave(counts)
    return ptr[rows].repeat_interleave(counts) + within, new_ptr


def children_csr(edge_index: torch.Tensor, edge_labels: torch.Tensor, num_nodes: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every node's children as CSR: (source of each edge, its edge label, offsets [N + 1]), edges grouped by
    destination (messages flow ``edge_index[0] -> edge_index[1]``, so a node's children are its sources)."""
    src, dst = edge_index
    order = torch.sort(dst, stable=True)[1]
    ptr = torch.zeros(num_nodes + 1, dtype=torch.long)
    ptr[1:] = torch.cumsum(torch.bincount(dst, minlength=num_nodes), 0)
    return src[order], edge_labels[order], ptr


def level_rows(node_labels: torch.Tensor, src: torch.Tensor, edge_labels: torch.Tensor, ptr: torch.Tensor,
               prev_ids: torch.Tensor, num_prev: int) -> tuple[LevelTable, torch.Tensor]:
    r"""Map step of one level: the distinct tuples (label, sorted (edge label, child id)) of some nodes.

    Args:
        node_labels: [N] root label of every node.
        src, edge_labels, ptr: the nodes' children (:func:`children_csr`).
        prev_ids: [N] every node's (global) id at the previous level (its label at level 1).
        num_prev: number of distinct ids of the previous level (over all shards).
    Returns:
        the ``k`` distinct tuples as a :class:`LevelTable` (in :func:`intern_rows` order) and [N] the row
        of every node in it.
    """
    key = edge_labels * num_prev + prev_ids[src]  # (edge label, child id) as one integer
    # Sort keys inside each node's row: by key, then stably by destination row.
    dst = torch.arange(node_labels.numel()).repeat_interleave(ptr[1:] - ptr[:-1])
    by_key = torch.sort(key, stable=True)[1]
    by_node = torch.sort(dst[by_key], stable=True)[1]
    sorted_key = key[by_key[by_node]]
    rows = intern_rows(node_labels, ptr, sorted_key)
    return _decoding_table(node_labels, ptr, sorted_key, rows, num_prev), rows


def merge_level_rows(tables: list[LevelTable], num_prev: int) -> tuple[LevelTable, list[torch.Tensor]]:
    r"""Reduce step of one level: global dense ids of the distinct tuples of every shard.

    The id of a tuple is its rank among all distinct tuples sorted by (length, then lexicographically:
    :func:`intern_rows`), a rule over the *set* of tuples only, so ids do not depend on how the graphs
    were sharded nor on the order of the shards; one shard gives the ids of the unsharded set.

    Args:
        tables: per shard, the distinct tuples its nodes emitted (:func:`level_rows`).
        num_prev: number of ids of the previous level (the child ids' range).
    Returns:
        the global decoding table of the level and, per shard, the global id [k_s] of each of its rows.
    """
    sizes = [t.num_trees for t in tables]
    label = torch.cat([t.label for t in tables])
    lengths = torch.cat([t.ptr[1:] - t.ptr[:-1] for t in tables])
    ptr = torch.zeros(label.numel() + 1, dtype=torch.long)
    ptr[1:] = torch.cumsum(lengths, 0)
    key = torch.cat([t.child_edge_label * num_prev + t.child for t in tables])
    ids = intern_rows(label, ptr, key)
    return _decoding_table(label, ptr, key, ids, num_prev), list(torch.split(ids, sizes))


def _decoding_table(label: torch.Tensor, ptr: torch.Tensor, key: torch.Tensor, ids: torch.Tensor, num_prev: int) -> LevelTable:
    """Decoding table of interned rows (``key`` = edge label * ``num_prev`` + child id), one representative
    row per id (all rows of an id are equal)."""
    representative = torch.empty(int(ids.max()) + 1 if ids.numel() else 0, dtype=torch.long)
    representative[ids] = torch.arange(ids.numel())
    positions, table_ptr = csr_gather(ptr, representative)
    table_key = key[positions]
    return LevelTable(label[representative], table_ptr, table_key // num_prev, table_key % num_prev)


def hash_trees(
    node_labels: torch.Tensor,  # [N] int64, dense in 0..num_node_labels-1
    edge_index: torch.Tensor,  # [2, E] int64, messages flow edge_index[0] -> edge_index[1]
    edge_labels: torch.Tensor | None,  # [E] int64, dense in 0..num_edge_labels-1 (None: all 0)
    depth: int,
    num_node_labels: int | None = None,
    num_edge_labels: int | None = None,
) -> TreeTables:
    """Canonical ids of every node's depth-0..``depth`` computation tree (see the module docstring).

    The children of ``v`` are the sources ``u`` of the edges ``u -> v``: for an undirected graph
    stored with both directions (PyG's convention) these are all neighbours, the parent included.
    Pass all graphs of a data set as one disjoint union so their ids share one id space. This is the
    sharded hashing of :mod:`graphdistill.mirage.shards` with one in-process shard.
    """
    from .shards import LocalExecutor, ShardWorker, hash_shards  # shards builds on this module

    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise ValueError(f"depth must be an integer >= 1 (the number of message-passing layers), got {depth!r}")
    check_tensor(node_labels, "node_labels", ndim=1, dtype=torch.long)
    check_tensor(edge_index, "edge_index", shape=(2, None), dtype=torch.long, nonempty=False)
    num_nodes = node_labels.numel()
    if edge_labels is None:
        edge_labels = torch.zeros(edge_index.shape[1], dtype=torch.long)
    check_tensor(edge_labels, "edge_labels", ndim=1, dtype=torch.long, nonempty=False)
    check_same_size({"edge_index.shape[1]": edge_index.shape[1], "edge_labels.shape[0]": edge_labels.numel()}, "the number of edges")
    if int(node_labels.min()) < 0 or (edge_labels.numel() and int(edge_labels.min()) < 0):
        raise ValueError("node_labels and edge_labels must be >= 0 (dense label ids)")
    if edge_index.numel() and (int(edge_index.min()) < 0 or int(edge_index.max()) >= num_nodes):
        raise ValueError(f"edge_index must index nodes 0..{num_nodes - 1}, got range [{int(edge_index.min())}, {int(edge_index.max())}]")
    num_node_labels = int(node_labels.max()) + 1 if num_node_labels is None else num_node_labels
    num_edge_labels = (int(edge_labels.max()) + 1 if edge_labels.numel() else 1) if num_edge_labels is None else num_edge_labels
    worker = ShardWorker(node_labels.numpy(), edge_index.numpy(), edge_labels.numpy())
    executor = LocalExecutor([worker])
    levels = hash_shards(executor, depth, num_node_labels)
    ids = [torch.from_numpy(i) for i in worker.level_ids()]
    return TreeTables(ids, levels, num_node_labels, num_edge_labels)


@dataclass
class UnrolledTrees:
    """Trees rebuilt as one graph: edges point from child to parent (messages flow to the root)."""

    node_labels: torch.Tensor  # [n] int64
    edge_index: torch.Tensor  # [2, e] int64, child -> parent
    edge_labels: torch.Tensor  # [e] int64
    tree: torch.Tensor  # [n] int64, which input tree each node belongs to
    roots: torch.Tensor  # [T] int64, node index of every tree's root (roots are nodes 0..T-1)


# A distilled set of molecules unrolls to thousands of nodes; tables from a file someone else made can
# describe trees of billions (depth 3, 2000 children per node: 8e9 nodes in a 19 KB file).
MAX_UNROLLED_NODES = 50_000_000


def tree_sizes(levels: list[LevelTable], level: int, limit: int = MAX_UNROLLED_NODES) -> torch.Tensor:
    """Node count of every depth-``level`` tree of the tables, ``[n_level]`` int64, saturated at ``limit + 1``:

        size_0(t) = 1,    size_l(t) = 1 + sum_{k in ptr[t] : ptr[t + 1]} size_{l-1}(child[k])

    computed from the tables alone (nothing is unrolled), saturating so that no sum overflows.

    Args:
        levels: decoding tables of levels ``1..L``.
        level: the depth of the trees to count, ``1..L`` (a level-0 tree is one node, and the tables do
            not hold how many there are).
        limit: counts above it are reported as ``limit + 1``.
    """
    if level < 1 or level > len(levels):
        raise ValueError(f"level must be in 1..{len(levels)}, got {level}")
    sizes = None  # level 0: every tree is one node
    for table in levels[:level]:
        child_sizes = torch.ones_like(table.child) if sizes is None else sizes[table.child]
        row = torch.repeat_interleave(table.ptr[1:] - table.ptr[:-1])
        sizes = torch.ones(table.num_trees, dtype=torch.long).index_add_(0, row, child_sizes.long())
        sizes = sizes.clamp(max=limit + 1)
    return sizes


def unroll_trees(levels: list[LevelTable], level: int, tree_ids: torch.Tensor,
                 max_nodes: int = MAX_UNROLLED_NODES) -> UnrolledTrees:
    """Rebuilds the depth-``level`` trees ``tree_ids`` [T] from decoding tables, breadth first.

    A tree with branching ``d`` has about ``d**level`` nodes: this is for the few (mined) trees a
    distilled set keeps, never for hashing. Raises before allocating when the trees hold more than
    ``max_nodes`` nodes together (:func:`tree_sizes`).
    """
    if level < 0 or level > len(levels):
        raise ValueError(f"level must be in 0..{len(levels)}, got {level}")
    check_tensor(tree_ids, "tree_ids", ndim=1, dtype=torch.long, nonempty=False)
    if level > 0 and tree_ids.numel():
        total = int(tree_sizes(levels, level, max_nodes)[tree_ids].clamp(max=max_nodes + 1).sum())
        if total > max_nodes:
            raise ValueError(f"the {tree_ids.numel()} trees unroll to more than {max_nodes} nodes "
                             f"(at least {total}): refusing to build them (max_nodes)")
    num_trees = tree_ids.numel()
    labels = [levels[level - 1].label[tree_ids] if level > 0 else tree_ids]
    tree = [torch.arange(num_trees)]
    sources, targets, edge_labels = [], [], []
    frontier_ids, frontier_nodes, frontier_tree = tree_ids, torch.arange(num_trees), tree[0]
    next_node = num_trees
    for l in range(level, 0, -1):
        table = levels[l - 1]
        positions, child_ptr = csr_gather(table.ptr, frontier_ids)
        counts = child_ptr[1:] - child_ptr[:-1]
        child_ids = table.child[positions]
        child_nodes = torch.arange(next_node, next_node + child_ids.numel())
        next_node += child_ids.numel()
        sources.append(child_nodes)
        targets.append(frontier_nodes.repeat_interleave(counts))
        edge_labels.append(table.child_edge_label[positions])
        frontier_tree = frontier_tree.repeat_interleave(counts)
        labels.append(levels[l - 2].label[child_ids] if l > 1 else child_ids)
        tree.append(frontier_tree)
        frontier_ids, frontier_nodes = child_ids, child_nodes
    empty = torch.zeros(0, dtype=torch.long)
    return UnrolledTrees(
        torch.cat(labels),
        torch.stack([torch.cat(sources or [empty]), torch.cat(targets or [empty])]),
        torch.cat(edge_labels or [empty]),
        torch.cat(tree),
        torch.arange(num_trees),
    )
