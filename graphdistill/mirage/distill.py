r"""Mirage distillation: graphs -> labels -> computation-tree ids -> per-class frequent tree sets.

No model is trained. The support threshold comes from the user or from a sweep scored on the
validation graphs with a model-free pattern classifier: a graph's score for class :math:`c` is the
share of class :math:`c`'s pattern frequency mass whose patterns it contains,

.. math:: s_c(G) = \frac{\sum_{P \in \mathcal{P}_c,\ P \subseteq G} f_P}{\sum_{P \in \mathcal{P}_c} f_P},

normalised over the classes (of each task) and scored by ROC-AUC (the mean over tasks for
multi-task sets). Supports are tried from high to low (sets only grow,
and a support whose set is less than ``min_compression`` times smaller than the training set ends
the sweep; ``compact_bytes`` counts the training set's integers in their smallest dtype, as the set counts
its own, instead of as PyG's int64 tensors); the highest support within ``sweep_tolerance`` of the best score wins. The default
tolerance 0 takes the best score, whose set is often the largest that fits: the containment score
saturates (solubility: 0.760 at 601 patterns, 0.761 at 1,967) while a GNN trained on the set keeps
gaining from the nodes the larger set covers (docs/mirage.md).

Each pattern also stores its *readout mass* in its class (:func:`pattern_readout_mass`): the share of
the nodes of the class's graphs that its trees root,

.. math:: m_p = \sum_{G \in \mathcal{D}_c,\ P \subseteq G} \frac{|\{v \in G : \mathrm{id}_L(v) \in P\}|}{|G|},

which is the weight the GNN's mean readout gives these trees when it is trained on whole graphs;
the support count :math:`f_p` counts a tree once whether it roots one atom of a graph or half of them.

Hashing and support counting run as map-reduce over shards of graphs
(:mod:`graphdistill.mirage.shards`), in this process or on Ray workers
(:mod:`graphdistill.mirage.cluster`); the distilled file is the same for any number of shards.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import numpy as np
import scipy.sparse as sp
import torch

from ..data.graphs import GraphArrays, GraphSplits, SplitConfig, check_graph, graph_splits_from_list
from .cluster import ClusterConfig, open_executor
from .distilled import DistilledDataset, prune_tables
from .labels import DiscretizeConfig, discretize
from .mining import MinedPatterns, MiningConfig, encode_transaction, group_sizes, mine_shards
from .models import FeatureSpec
from .shards import SPLIT_TEST, SPLIT_TRAIN, SPLIT_VAL, count_supports, gather_graph_trees, hash_shards, shard_arrays
from .train import classification_metrics


@dataclass
class DistillConfig:
    """Everything distillation depends on."""

    depth: int = 2  # computation-tree depth L (train GNNs with <= L layers)
    discretize: DiscretizeConfig = field(default_factory=DiscretizeConfig)
    mining: MiningConfig = field(default_factory=MiningConfig)
    # Relative supports tried by the validation sweep (one value for every class); None: use
    # mining.min_support as given. Denser below 0.005, where the set grows fastest (nci-tpsa: 726, 993, 1138,
    # 1379 entries at 0.005 / 0.004 / 0.0035 / 0.003), so that a byte budget is not missed by one step.
    sweep: tuple[float, ...] | None = (0.3, 0.2, 0.15, 0.1, 0.07, 0.05, 0.04, 0.03, 0.025, 0.02, 0.015, 0.01, 0.007,
                                       0.005, 0.004, 0.0035, 0.003, 0.0025, 0.002)
    sweep_tolerance: float = 0.0  # > 0: prefer a smaller set scoring within this of the best
    min_compression: float = 50.0  # the sweep keeps only sets at least this many times smaller
    # True: min_compression counts the training graphs' integers in their smallest dtype, as the set counts
    # its own (6-8x fewer bytes for molecules); False: as PyG holds them (int64), the reference code's count
    compact_bytes: bool = False


@dataclass
class SweepPoint:
    min_support: float
    num_patterns: int
    val_roc_auc: float


def _items_matrix(transactions: list[list[tuple[int, int]]], item_index: dict[tuple[int, int], int]) -> sp.csr_matrix:
    """[rows, items] 0/1 matrix of the items known to ``item_index`` (others cannot match a pattern)."""
    rows, cols = [], []
    for r, items in enumerate(transactions):
        for item in items:
            j = item_index.get(item)
            if j is not None:
                rows.append(r)
                cols.append(j)
    return sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(transactions), len(item_index)))


def pattern_scores(graph_trees: list[np.ndarray], mined: MinedPatterns, multiset: bool) -> np.ndarray:
    """[G, groups] pattern-containment scores :math:`s_c(G)` (module docstring), normalised over the
    classes of each task."""
    num_groups = len(mined.patterns)
    pattern_items = [
        [encode_transaction(np.array(p), multiset) for p in found] for found in mined.patterns
    ]
    item_index: dict[tuple[int, int], int] = {}
    for per_class in pattern_items:
        for items in per_class:
            for item in items:
                item_index.setdefault(item, len(item_index))
    graphs = _items_matrix([encode_transaction(t, multiset) for t in graph_trees], item_index)
    scores = np.zeros((len(graph_trees), num_groups))
    for c, (found, items) in enumerate(zip(mined.patterns, pattern_items)):
        if not found:
            continue
        patterns = _items_matrix(items, item_index)
        contained = (graphs @ patterns.T).toarray() == np.asarray(patterns.sum(1)).T  # [G, P]
        frequency = np.array(list(found.values()), dtype=np.float64)
        scores[:, c] = contained @ frequency / frequency.sum()
    per_task = scores.reshape(len(graph_trees), mined.num_tasks, -1)
    total = per_task.sum(2, keepdims=True)
    normalised = np.where(total > 0, per_task / np.where(total > 0, total, 1), 1.0 / per_task.shape[2])
    return normalised.reshape(len(graph_trees), num_groups)


def pattern_readout_mass(graph_trees: list[np.ndarray], y: np.ndarray, patterns: list[tuple[int, tuple[int, ...]]],
                         num_classes: int, multiset: bool,
                         transactions: list[list[tuple[int, int]]] | None = None) -> np.ndarray:
    r"""[P] readout mass of every pattern in its group (module docstring):
    :math:`m_p = \sum_{G \in \mathcal{D}_g,\ P \subseteq G} |\{v \in G : \mathrm{id}_L(v) \in P\}| / |G|`.

    Args:
        graph_trees: per training graph, the tree ids of its nodes ([n_i] int arrays).
        y: [G, T] labels of those graphs (NaN: missing); group ``g`` holds the graphs with class
            ``g % num_classes`` in task ``g // num_classes``.
        patterns: (group, sorted tree ids) of every pattern.
        transactions: ``encode_transaction`` of every graph's trees when already known (a sweep encodes once).
    """
    if not patterns:
        return np.zeros(0)
    pattern_items = [encode_transaction(np.array(p), multiset) for _, p in patterns]
    item_index: dict[tuple[int, int], int] = {}
    for items in pattern_items:
        for item in items:
            item_index.setdefault(item, len(item_index))
    if transactions is None:
        transactions = [encode_transaction(t, multiset) for t in graph_trees]
    graphs = _items_matrix(transactions, item_index)
    pattern_matrix = _items_matrix(pattern_items, item_index)
    # contained[G, p]: every item of p is in G (sparse: only pairs sharing an item are stored)
    shared = (graphs @ pattern_matrix.T).tocoo()
    size = np.asarray(pattern_matrix.sum(1)).ravel()
    keep = shared.data == size[shared.col]
    rows, cols = shared.row[keep], shared.col[keep]
    # share[G, p]: fraction of G's nodes whose tree is one of p's trees
    used = np.unique([t for _, p in patterns for t in p])
    lengths = np.array([len(t) for t in graph_trees], dtype=np.int64)
    node_tree = np.concatenate(graph_trees).astype(np.int64) if graph_trees else np.zeros(0, np.int64)
    node_graph = np.repeat(np.arange(len(graph_trees)), lengths)
    position = np.minimum(np.searchsorted(used, node_tree), used.size - 1)
    hit = used[position] == node_tree
    node_share = sp.csr_matrix((1.0 / lengths[node_graph[hit]], (node_graph[hit], position[hit])),
                               shape=(len(graph_trees), used.size))
    pattern_of, tree_of = zip(*[(i, t) for i, (_, p) in enumerate(patterns) for t in set(p)])
    uses = sp.csr_matrix((np.ones(len(tree_of)), (pattern_of, np.searchsorted(used, tree_of))),
                         shape=(len(patterns), used.size))
    share = np.asarray((node_share[rows].multiply(uses[cols])).sum(1)).ravel()
    group = np.array([g for g, _ in patterns])
    label = y[rows, group[cols] // num_classes]
    member = label == group[cols] % num_classes  # NaN (missing) compares false
    return np.bincount(cols[member], weights=share[member], minlength=len(patterns))


def validation_auc(y: np.ndarray, scores: np.ndarray) -> float:
    """ROC-AUC of the pattern scores [G, T * C] against labels ``y`` [G, T] (NaN: missing): the metric of
    the one task, or the mean over the tasks whose known validation labels hold every class."""
    num_tasks = y.shape[1]
    num_classes = scores.shape[1] // num_tasks
    aucs = []
    for t in range(num_tasks):
        known = ~np.isnan(y[:, t])
        labels = y[known, t].astype(np.int64)
        if num_tasks > 1 and np.unique(labels).size < num_classes:
            continue  # AUC is undefined on one class
        aucs.append(classification_metrics(labels, scores[known, t * num_classes : (t + 1) * num_classes])["roc_auc"])
    if not aucs:
        raise ValueError("no task has validation graphs of every class: cannot score a support sweep; set the support")
    return float(np.mean(aucs))


def distill(data: GraphSplits | GraphArrays | list, config: DistillConfig | None = None, *, split: SplitConfig | None = None,
            source: dict | None = None, cluster: ClusterConfig | None = None) -> DistilledDataset:
    """Distils the training graphs into per-class frequent computation-tree sets (see the module docstring).

    Args:
        data: a split data set, the same as arrays (:class:`GraphArrays`; also multi-task sets with
            missing labels), or a plain list of graphs (PyG ``Data`` or dicts of tensors with ``x``
            [N, F], ``edge_index`` [2, E], optional ``edge_attr``, one class id ``y`` per graph), split
            train / val / test by ``split`` (fractions and seed; default ``SplitConfig()``).
        source: where the graphs came from, stored in ``meta["source"]`` so ``mirage train`` can find
            the evaluation graphs again (``{"kind": "builtin", "name", "root"}`` or ``{"kind": "file",
            "path"}``); default: built-in name for a ``GraphSplits``, ``{"kind": "graphs"}`` for a list
            (then ``mirage train`` needs the evaluation graphs passed to it).
        cluster: where hashing and mining run (:class:`~graphdistill.mirage.cluster.ClusterConfig`:
            shards in this process, local Ray workers or a Ray cluster); the file does not depend on it.
    """
    config = config or DistillConfig()
    if isinstance(data, GraphArrays):
        arrays = data.check()
    else:
        if not isinstance(data, GraphSplits):
            split = split or SplitConfig()
            data = graph_splits_from_list(data, split)
            source = source or {"kind": "graphs"}
        if not data.train:
            raise ValueError(f"{data.name}: no training graphs")
        for i, g in enumerate(data.train + data.val):
            check_graph(g, f"{data.name} graph {i}")
        arrays = GraphArrays.from_splits(data)
    source = dict(source or {"kind": "builtin", "name": arrays.name})
    if split is not None:  # how the evaluation graphs are cut from the same pool again
        source["split"] = {"val_fraction": split.val_fraction, "test_fraction": split.test_fraction, "seed": split.seed}
    if isinstance(config.depth, bool) or not isinstance(config.depth, int) or config.depth < 1:
        raise ValueError(f"DistillConfig.depth must be an integer >= 1, got {config.depth!r}")
    start = time.process_time()
    if not (arrays.split == SPLIT_TRAIN).any():
        raise ValueError(f"{arrays.name}: no training graphs")
    hashed = arrays.select(arrays.split != SPLIT_TEST)  # train and val graphs share one id space
    train_nodes = torch.from_numpy(np.repeat(hashed.split == SPLIT_TRAIN, np.diff(hashed.node_ptr)))
    nodes = discretize(torch.from_numpy(hashed.x), train_nodes, config.discretize, name="node features x")
    edges = None
    edge_labels = np.zeros(hashed.edge_index.shape[1], dtype=np.int64)
    if hashed.edge_attr is not None:
        train_edges = train_nodes[torch.from_numpy(hashed.edge_index[1])]
        edges = discretize(torch.from_numpy(hashed.edge_attr), train_edges, config.discretize, name="edge features edge_attr")
        edge_labels = edges.labels.numpy()
    num_classes = arrays.num_classes
    node_labels = nodes.labels.numpy()

    def make_shards(num_shards: int) -> list[dict]:
        return shard_arrays(node_labels, hashed.edge_index, edge_labels, hashed.node_ptr, hashed.edge_ptr, hashed.y,
                            hashed.split, num_shards)

    sizes = group_sizes(hashed.y, hashed.split, num_classes)
    original_nbytes = arrays.nbytes(arrays.split == SPLIT_TRAIN)
    original_compact_nbytes = arrays.nbytes(arrays.split == SPLIT_TRAIN, compact=True)
    val_y = hashed.y[hashed.split == SPLIT_VAL]
    with open_executor(make_shards, cluster) as executor:
        levels = hash_shards(executor, config.depth, nodes.table.shape[0])
        num_trees = levels[-1].num_trees
        counts = count_supports(executor, config.depth, num_trees, config.mining.multiset, sizes.size, num_classes)
        val_trees = gather_graph_trees(executor, config.depth, SPLIT_VAL) if config.sweep is not None else []
        train_trees = gather_graph_trees(executor, config.depth, SPLIT_TRAIN)
        train_y = hashed.y[hashed.split == SPLIT_TRAIN]
        train_items = [encode_transaction(t, config.mining.multiset) for t in train_trees]

        def mine(mining: MiningConfig) -> MinedPatterns:
            return mine_shards(executor, config.depth, num_trees, sizes, mining, counts, arrays.task_names)

        def build(mined: MinedPatterns, mining: MiningConfig) -> DistilledDataset:
            # grouped by pattern: the file stores a pattern frequent in several classes once (distilled.py)
            patterns = sorted(((g, p, f) for g, found in enumerate(mined.patterns) for p, f in found.items()),
                              key=lambda entry: (entry[1], entry[0]))
            if not patterns:
                raise ValueError(f"{arrays.name}: no frequent pattern at support {mining.min_support}; lower it")
            pattern_ptr = torch.zeros(len(patterns) + 1, dtype=torch.long)
            pattern_ptr[1:] = torch.cumsum(torch.tensor([len(p) for _, p, _ in patterns]), 0)
            flat = torch.tensor([t for _, p, _ in patterns for t in p], dtype=torch.long)
            kept, top, used_labels = prune_tables(levels, flat)
            groups = torch.tensor([g for g, _, _ in patterns], dtype=torch.int32)
            mass = pattern_readout_mass(train_trees, train_y, [(g, p) for g, p, _ in patterns], num_classes,
                                        mining.multiset, train_items)
            meta = {
                "dataset": arrays.name,
                "depth": config.depth,
                "min_support": mining.min_support,
                "support_counts": mined.thresholds,
                "multiset": mining.multiset,
                "exclusive": mining.exclusive,
                "num_train_graphs": int((arrays.split == SPLIT_TRAIN).sum()),
                "class_sizes": mined.class_sizes,
                "num_distinct_trees": int(num_trees),
                "source": source,
            }
            if arrays.num_tasks > 1:
                meta.update(num_tasks=arrays.num_tasks, task_names=arrays.task_names)
            return DistilledDataset(
                depth=config.depth,
                num_classes=num_classes,
                levels=kept,
                node_features=nodes.table[used_labels],
                edge_features=None if edges is None else edges.table,
                pattern_ptr=pattern_ptr.to(torch.int32),
                pattern_trees=top,
                pattern_class=groups % num_classes,
                pattern_frequency=torch.tensor([f for _, _, f in patterns], dtype=torch.int32),
                feature_spec=FeatureSpec.of(torch.from_numpy(arrays.x)),
                original_nbytes=original_nbytes,
                original_compact_nbytes=original_compact_nbytes,
                meta=meta,
                pattern_task=groups // num_classes if arrays.num_tasks > 1 else None,
                pattern_mass=torch.from_numpy(mass).to(torch.float32),
            )

        sweep: list[SweepPoint] = []
        if config.sweep is None or not val_trees:
            distilled = build(mine(config.mining), config.mining)
        else:
            candidates = []
            for support in sorted(config.sweep, reverse=True):
                mining = replace(config.mining, min_support=support)
                try:
                    mined = mine(mining)
                except ValueError as err:  # too many patterns: lower supports only give more
                    if "max_patterns" not in str(err):
                        raise
                    break
                if any(not p for p in mined.patterns):
                    continue  # a class without patterns cannot be trained on
                candidate = build(mined, mining)
                ratio = candidate.compact_compression_ratio if config.compact_bytes else candidate.compression_ratio
                if ratio < config.min_compression:
                    break
                auc = validation_auc(val_y, pattern_scores(val_trees, mined, mining.multiset))
                sweep.append(SweepPoint(support, mined.num_patterns, auc))
                candidates.append((candidate, auc))
            if not candidates:
                raise ValueError(
                    f"{arrays.name}: no support in {config.sweep} gives patterns for every class within "
                    f"min_compression={config.min_compression}; try other supports"
                )
            best = max(auc for _, auc in candidates)
            distilled = next(c for c, auc in candidates if auc >= best - config.sweep_tolerance)
            distilled.meta["sweep"] = [vars(p) for p in sweep]
        worker_cpu = executor.map("get_cpu_seconds")
    # CPU time of this process plus the workers' (in-process shards count once: their time is this process's)
    distilled.meta["cpu_seconds"] = time.process_time() - start + (sum(worker_cpu) if executor.remote else 0.0)
    return distilled
