r"""Per-class frequent tree-set mining (FP-growth) over graphs seen as transactions of tree ids.

Graph :math:`G` becomes the transaction :math:`\{\mathrm{id}_L(v) : v \in G\}` of its nodes'
depth-:math:`L` tree ids (as a set, or as a multiset). A pattern :math:`P` is frequent in class
:math:`c` when its support :math:`\sigma_c(P) = |\{G \in \mathcal{D}_c : P \subseteq G\}|` reaches
:math:`\lceil s_c\,|\mathcal{D}_c| \rceil` for the class's relative support threshold :math:`s_c`.
The frequent sets are found with mlxtend's FP-growth, once per class (per (task, class) in a
multi-task set), as independent tasks over the rows the shards return
(:mod:`graphdistill.mirage.shards`).

A multiset transaction is encoded as the set of items :math:`(t, k)` for :math:`k = 1..m_t`, where
:math:`m_t` is the count of tree :math:`t`; an itemset then reads back as the multiset holding
each tree :math:`\max k` times (itemsets that read back alike have the same support and are merged).

``exclusive`` drops a pattern from every class where it is frequent if it is frequent in more than
one class: such patterns do not tell the classes apart.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from distillcore.extras import require_extra

from .shards import SPLIT_TRAIN, LocalExecutor, ShardWorker, count_supports, group_transactions, min_count

# A pattern: sorted tuple of tree ids (a tree repeats in multiset mode), with its support count.
Pattern = tuple[int, ...]


@dataclass
class MiningConfig:
    """Support thresholds and pattern options of the miner."""

    min_support: float | list[float] = 0.2  # relative support per class (one value for all, or one per class)
    multiset: bool = False  # transactions as multisets of tree ids (counts matter) instead of sets
    exclusive: bool = False  # drop patterns frequent in more than one class
    # Longest itemset FP-growth enumerates (None: no limit). Single trees by default: at a fixed byte budget,
    # sets of 2-3 frequent trees spend the bytes on combinations of the same few trees, single trees on more
    # distinct trees, which cover more of the nodes a GNN reads out (solubility at 50x: 40% -> 54% of the
    # test atoms, docs/mirage.md).
    max_pattern_size: int | None = 1
    max_patterns: int = 50_000  # per class: above this the threshold is too low; raise instead of exploding

    def support_of(self, class_index: int, num_classes: int) -> float:
        supports = self.min_support if isinstance(self.min_support, (list, tuple)) else [self.min_support] * num_classes
        if len(supports) != num_classes:
            raise ValueError(f"MiningConfig.min_support has {len(supports)} values for {num_classes} classes")
        s = float(supports[class_index])
        if not 0 < s <= 1:
            raise ValueError(f"MiningConfig.min_support must be in (0, 1], got {s} for class {class_index}")
        return s


@dataclass
class MinedPatterns:
    """Frequent patterns of every group (class; with several tasks, group ``task * C + class``), their
    support counts and the group sizes."""

    patterns: list[dict[Pattern, int]]  # per group: pattern -> support count
    class_sizes: list[int]
    thresholds: list[int] = field(default_factory=list)  # absolute support threshold per group
    num_tasks: int = 1

    @property
    def num_patterns(self) -> int:
        return sum(len(p) for p in self.patterns)


def encode_transaction(trees: np.ndarray, multiset: bool) -> list[tuple[int, int]]:
    """Items of one transaction: ``(tree, 1)`` per distinct tree, or ``(tree, k)``, k=1..count."""
    values, counts = np.unique(trees, return_counts=True)
    if not multiset:
        return [(int(t), 1) for t in values]
    return [(int(t), k) for t, c in zip(values, counts) for k in range(1, int(c) + 1)]


def frequent_itemsets_csr(indptr: np.ndarray, indices: np.ndarray, items: np.ndarray, num_trees: int, min_count: int,
                          max_len: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """FP-growth of one group (an independent task): every itemset in at least ``min_count`` rows.

    Args:
        indptr, indices: CSR rows of the group's transactions (one per graph, empty rows included) over
            its frequent items ``items`` (item ``i`` is the ``i // num_trees + 1``-th copy of tree
            ``i % num_trees``).
    Returns:
        the patterns read back as sorted tree multisets, in sorted order, as arrays: offsets [P + 1],
        tree ids, support counts [P].
    """
    result: dict[Pattern, int] = {}
    num_rows = len(indptr) - 1
    if num_rows and items.size:
        matrix = sp.csr_matrix((np.ones(indices.size, dtype=bool), indices, indptr), shape=(num_rows, items.size))
        # imported at use: the rest of Mirage (and every --help) works without the [graph] extra
        pd = require_extra("pandas", "graph")
        fpgrowth = require_extra("mlxtend.frequent_patterns", "graph").fpgrowth
        frame = pd.DataFrame.sparse.from_spmatrix(matrix, columns=range(items.size))
        # Support as a fraction; half a transaction below the count so float rounding cannot drop a set.
        found = fpgrowth(frame, min_support=(min_count - 0.5) / num_rows, use_colnames=True, max_len=max_len)
        tree, copy = items % num_trees, items // num_trees + 1
        for support, itemset in zip(found["support"].to_numpy(), found["itemsets"]):
            multiplicity: dict[int, int] = {}
            for j in itemset:
                multiplicity[int(tree[j])] = max(multiplicity.get(int(tree[j]), 0), int(copy[j]))
            pattern = tuple(sorted(t for t, m in multiplicity.items() for _ in range(m)))
            result[pattern] = max(result.get(pattern, 0), int(round(support * num_rows)))
    patterns = sorted(result)
    ptr = np.zeros(len(patterns) + 1, dtype=np.int64)
    ptr[1:] = np.cumsum([len(p) for p in patterns])
    flat = np.array([t for p in patterns for t in p], dtype=np.int64)
    return ptr, flat, np.array([result[p] for p in patterns], dtype=np.int64)


def group_sizes(y: np.ndarray, split: np.ndarray, num_classes: int) -> np.ndarray:
    """[T, C] number of training graphs of every (task, class); ``y`` [G, T] (NaN: missing)."""
    train = y[split == SPLIT_TRAIN]
    return np.stack([np.bincount(col[~np.isnan(col)].astype(np.int64), minlength=num_classes) for col in train.T])


def mine_shards(executor, level: int, num_trees: int, sizes: np.ndarray, config: MiningConfig,
                counts: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
                task_names: list[str] | None = None) -> MinedPatterns:
    """Frequent patterns of every group from the executor's shards (module docstring of ``shards``).

    Args:
        level: the tree level whose ids are the items.
        num_trees: number of ids at that level.
        sizes: [T, C] training graphs per (task, class) (:func:`group_sizes`).
        counts: the reduce of :func:`~graphdistill.mirage.shards.count_supports` when already known
            (a support sweep counts once).
    """
    num_tasks, num_classes = sizes.shape
    thresholds = []
    for t in range(num_tasks):
        for c in range(num_classes):
            if sizes[t, c] == 0:
                where = f"class {c}" if num_tasks == 1 else f"task {task_names[t] if task_names else t}: class {c}"
                raise ValueError(f"{where} has no training graphs: cannot mine its patterns")
            thresholds.append(min_count(config.support_of(c, num_classes), int(sizes[t, c])))
    if counts is None:
        counts = count_supports(executor, level, num_trees, config.multiset, num_tasks * num_classes, num_classes)
    ptr, items, total = counts
    frequent = [items[ptr[g] : ptr[g + 1]][total[ptr[g] : ptr[g + 1]] >= thresholds[g]] for g in range(len(thresholds))]
    rows = group_transactions(executor, level, num_trees, config.multiset, num_classes, frequent)
    found = executor.tasks(frequent_itemsets_csr, [(indptr, indices, f, num_trees, thr, config.max_pattern_size)
                                                   for (indptr, indices), f, thr in zip(rows, frequent, thresholds)])
    patterns = []
    for g, (pattern_ptr, trees, support) in enumerate(found):
        if support.size > config.max_patterns:
            c = g % num_classes
            where = f"class {c}" if num_tasks == 1 else f"task {task_names[g // num_classes] if task_names else g // num_classes}: class {c}"
            raise ValueError(
                f"{where}: {support.size} frequent patterns at support {config.support_of(c, num_classes)} exceed "
                f"MiningConfig.max_patterns={config.max_patterns}; raise min_support or lower max_pattern_size"
            )
        patterns.append({tuple(trees[pattern_ptr[i] : pattern_ptr[i + 1]].tolist()): int(s) for i, s in enumerate(support)})
    if config.exclusive:  # within a task: a pattern frequent in two of its classes does not tell them apart
        for t in range(num_tasks):
            task = patterns[t * num_classes : (t + 1) * num_classes]
            seen: dict[Pattern, int] = {}
            for found_c in task:
                for p in found_c:
                    seen[p] = seen.get(p, 0) + 1
            patterns[t * num_classes : (t + 1) * num_classes] = [{p: s for p, s in f.items() if seen[p] == 1} for f in task]
    return MinedPatterns(patterns, [int(v) for v in sizes.reshape(-1)], thresholds, num_tasks)


def mine_patterns(graph_trees: list[np.ndarray], graph_labels: np.ndarray, num_classes: int, config: MiningConfig) -> MinedPatterns:
    """Frequent tree-set patterns of every class of a single-task set (one in-process shard of :func:`mine_shards`).

    Args:
        graph_trees: per training graph, the tree ids of its nodes ([n_i] int arrays).
        graph_labels: [G] class of every graph.
        num_classes: number of classes (a class without graphs raises).
    """
    if len(graph_trees) != len(graph_labels):
        raise ValueError(f"graph_trees has {len(graph_trees)} graphs but graph_labels {len(graph_labels)}")
    trees = np.concatenate([np.asarray(t, dtype=np.int64) for t in graph_trees]) if graph_trees else np.zeros(0, np.int64)
    ptr = np.zeros(len(graph_trees) + 1, dtype=np.int64)
    ptr[1:] = np.cumsum([len(t) for t in graph_trees])
    y = np.asarray(graph_labels, dtype=np.float64).reshape(-1, 1)
    split = np.full(len(graph_trees), SPLIT_TRAIN)
    worker = ShardWorker(trees, graph_ptr=ptr, y=y, split=split)
    num_trees = int(trees.max()) + 1 if trees.size else 1
    return mine_shards(LocalExecutor([worker]), 0, num_trees, group_sizes(y, split, num_classes), config)
