r"""Mirage distillation: graphs -> labels -> computation-tree ids -> per-class frequent tree sets.

No model is trained. The support threshold comes from the user or from a sweep scored on the
validation graphs with a model-free pattern classifier: a graph's score for class :math:`c` is the
share of class :math:`c`'s pattern frequency mass whose patterns it contains,

.. math:: s_c(G) = \frac{\sum_{P \in \mathcal{P}_c,\ P \subseteq G} f_P}{\sum_{P \in \mathcal{P}_c} f_P},

normalised over classes and scored by ROC-AUC. Supports are tried from high to low (sets only grow,
and a support whose set is less than ``min_compression`` times smaller than the training set ends
the sweep); the highest support within ``sweep_tolerance`` of the best score wins (the smallest good
set).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import numpy as np
import scipy.sparse as sp
import torch
from torch_geometric.data import Batch, Data

from ..data.graphs import GraphSplits, SplitConfig, check_graph, graph_splits_from_list
from .distilled import DistilledDataset, graphs_nbytes, prune_tables
from .labels import DiscretizeConfig, discretize
from .mining import MinedPatterns, MiningConfig, encode_transaction, mine_patterns
from .models import FeatureSpec
from .train import classification_metrics
from .trees import hash_trees


@dataclass
class DistillConfig:
    """Everything distillation depends on."""

    depth: int = 2  # computation-tree depth L (train GNNs with <= L layers)
    discretize: DiscretizeConfig = field(default_factory=DiscretizeConfig)
    mining: MiningConfig = field(default_factory=MiningConfig)
    # Relative supports tried by the validation sweep (one value for every class); None: use
    # mining.min_support as given.
    sweep: tuple[float, ...] | None = (0.3, 0.2, 0.15, 0.1, 0.07, 0.05, 0.04, 0.03, 0.025, 0.02, 0.015, 0.01)
    sweep_tolerance: float = 0.005
    min_compression: float = 50.0  # the sweep keeps only sets at least this many times smaller


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
    """[G, C] normalised pattern-containment scores :math:`s_c(G)` (module docstring)."""
    num_classes = len(mined.patterns)
    pattern_items = [
        [encode_transaction(np.array(p), multiset) for p in found] for found in mined.patterns
    ]
    item_index: dict[tuple[int, int], int] = {}
    for per_class in pattern_items:
        for items in per_class:
            for item in items:
                item_index.setdefault(item, len(item_index))
    graphs = _items_matrix([encode_transaction(t, multiset) for t in graph_trees], item_index)
    scores = np.zeros((len(graph_trees), num_classes))
    for c, (found, items) in enumerate(zip(mined.patterns, pattern_items)):
        if not found:
            continue
        patterns = _items_matrix(items, item_index)
        contained = (graphs @ patterns.T).toarray() == np.asarray(patterns.sum(1)).T  # [G, P]
        frequency = np.array(list(found.values()), dtype=np.float64)
        scores[:, c] = contained @ frequency / frequency.sum()
    total = scores.sum(1, keepdims=True)
    return np.where(total > 0, scores / np.where(total > 0, total, 1), 1.0 / num_classes)


def _graph_tree_lists(tree_ids: torch.Tensor, ptr: torch.Tensor) -> list[np.ndarray]:
    ids = tree_ids.numpy()
    return [ids[ptr[i] : ptr[i + 1]] for i in range(ptr.numel() - 1)]


def distill(splits: GraphSplits | list, config: DistillConfig | None = None, *, split: SplitConfig | None = None,
            source: dict | None = None) -> DistilledDataset:
    """Distils ``splits.train`` into per-class frequent computation-tree sets (see the module docstring).

    Args:
        splits: a split data set, or a plain list of graphs (PyG ``Data`` or dicts of tensors with
            ``x`` [N, F], ``edge_index`` [2, E], optional ``edge_attr``, one class id ``y`` per graph),
            split train / val / test by ``split`` (fractions and seed; default ``SplitConfig()``).
        source: where the graphs came from, stored in ``meta["source"]`` so ``mirage train`` can find
            the evaluation graphs again (``{"kind": "builtin", "name", "root"}`` or ``{"kind": "file",
            "path"}``); default: built-in name for a ``GraphSplits``, ``{"kind": "graphs"}`` for a list
            (then ``mirage train`` needs the evaluation graphs passed to it).
    """
    config = config or DistillConfig()
    if not isinstance(splits, GraphSplits):
        split = split or SplitConfig()
        splits = graph_splits_from_list(splits, split)
        source = source or {"kind": "graphs"}
    source = dict(source or {"kind": "builtin", "name": splits.name})
    if split is not None:  # how the evaluation graphs are cut from the same pool again
        source["split"] = {"val_fraction": split.val_fraction, "test_fraction": split.test_fraction, "seed": split.seed}
    if isinstance(config.depth, bool) or not isinstance(config.depth, int) or config.depth < 1:
        raise ValueError(f"DistillConfig.depth must be an integer >= 1, got {config.depth!r}")
    start = time.process_time()
    if not splits.train:
        raise ValueError(f"{splits.name}: no training graphs")
    graphs: list[Data] = splits.train + splits.val
    for i, g in enumerate(graphs):
        check_graph(g, f"{splits.name} graph {i}")
    if any((g.edge_attr is None) != (graphs[0].edge_attr is None) for g in graphs):
        raise ValueError(f"{splits.name}: some graphs have edge_attr and some do not")
    batch = Batch.from_data_list([Data(x=g.x, edge_index=g.edge_index, edge_attr=g.edge_attr) for g in graphs])
    num_train = len(splits.train)
    train_nodes = torch.zeros(batch.num_nodes, dtype=torch.bool)
    train_nodes[: int(batch.ptr[num_train])] = True
    nodes = discretize(batch.x, train_nodes, config.discretize, name="node features x")
    edges = None
    if batch.edge_attr is not None:
        train_edges = train_nodes[batch.edge_index[1]]
        edges = discretize(batch.edge_attr, train_edges, config.discretize, name="edge features edge_attr")
    tables = hash_trees(nodes.labels, batch.edge_index, None if edges is None else edges.labels, config.depth)
    per_graph = _graph_tree_lists(tables.ids[config.depth], batch.ptr)
    labels = np.array([int(g.y) for g in graphs])
    train_trees, val_trees = per_graph[:num_train], per_graph[num_train:]
    train_labels, val_labels = labels[:num_train], labels[num_train:]

    all_x = torch.cat([g.x for g in splits.all_graphs()])

    def build(mined: MinedPatterns, mining: MiningConfig) -> DistilledDataset:
        patterns = [(c, p, f) for c, found in enumerate(mined.patterns) for p, f in found.items()]
        if not patterns:
            raise ValueError(f"{splits.name}: no frequent pattern at support {mining.min_support}; lower it")
        pattern_ptr = torch.zeros(len(patterns) + 1, dtype=torch.long)
        pattern_ptr[1:] = torch.cumsum(torch.tensor([len(p) for _, p, _ in patterns]), 0)
        flat = torch.tensor([t for _, p, _ in patterns for t in p], dtype=torch.long)
        levels, top, used_labels = prune_tables(tables.levels, flat)
        return DistilledDataset(
            depth=config.depth,
            num_classes=splits.num_classes,
            levels=levels,
            node_features=nodes.table[used_labels],
            edge_features=None if edges is None else edges.table,
            pattern_ptr=pattern_ptr.to(torch.int32),
            pattern_trees=top,
            pattern_class=torch.tensor([c for c, _, _ in patterns], dtype=torch.int32),
            pattern_frequency=torch.tensor([f for _, _, f in patterns], dtype=torch.int32),
            feature_spec=FeatureSpec.of(all_x),
            original_nbytes=graphs_nbytes(splits.train),
            meta={
                "dataset": splits.name,
                "depth": config.depth,
                "min_support": mining.min_support,
                "support_counts": mined.thresholds,
                "multiset": mining.multiset,
                "exclusive": mining.exclusive,
                "num_train_graphs": num_train,
                "class_sizes": mined.class_sizes,
                "num_distinct_trees": int(tables.levels[-1].num_trees),
                "source": source,
            },
        )

    sweep: list[SweepPoint] = []
    if config.sweep is None or not val_trees:
        distilled = build(mine_patterns(train_trees, train_labels, splits.num_classes, config.mining), config.mining)
    else:
        candidates = []
        for support in sorted(config.sweep, reverse=True):
            mining = replace(config.mining, min_support=support)
            try:
                mined = mine_patterns(train_trees, train_labels, splits.num_classes, mining)
            except ValueError as err:  # too many patterns: lower supports only give more
                if "max_patterns" not in str(err):
                    raise
                break
            if any(not p for p in mined.patterns):
                continue  # a class without patterns cannot be trained on
            candidate = build(mined, mining)
            if candidate.compression_ratio < config.min_compression:
                break
            auc = classification_metrics(val_labels, pattern_scores(val_trees, mined, mining.multiset))["roc_auc"]
            sweep.append(SweepPoint(support, mined.num_patterns, auc))
            candidates.append((candidate, auc))
        if not candidates:
            raise ValueError(
                f"{splits.name}: no support in {config.sweep} gives patterns for every class within "
                f"min_compression={config.min_compression}; try other supports"
            )
        best = max(auc for _, auc in candidates)
        distilled = next(c for c, auc in candidates if auc >= best - config.sweep_tolerance)
        distilled.meta["sweep"] = [vars(p) for p in sweep]
    distilled.meta["cpu_seconds"] = time.process_time() - start
    return distilled
