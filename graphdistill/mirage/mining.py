r"""Per-class frequent tree-set mining (FP-growth) over graphs seen as transactions of tree ids.

Graph :math:`G` becomes the transaction :math:`\{\mathrm{id}_L(v) : v \in G\}` of its nodes'
depth-:math:`L` tree ids (as a set, or as a multiset). A pattern :math:`P` is frequent in class
:math:`c` when its support :math:`\sigma_c(P) = |\{G \in \mathcal{D}_c : P \subseteq G\}|` reaches
:math:`\lceil s_c\,|\mathcal{D}_c| \rceil` for the class's relative support threshold :math:`s_c`.
The frequent sets are found with mlxtend's FP-growth.

A multiset transaction is encoded as the set of items :math:`(t, k)` for :math:`k = 1..m_t`, where
:math:`m_t` is the count of tree :math:`t`; an itemset then reads back as the multiset holding
each tree :math:`\max k` times (itemsets that read back alike have the same support and are merged).

``exclusive`` drops a pattern from every class where it is frequent if it is frequent in more than
one class: such patterns do not tell the classes apart.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from distillcore.extras import require_extra

# A pattern: sorted tuple of tree ids (a tree repeats in multiset mode), with its support count.
Pattern = tuple[int, ...]


@dataclass
class MiningConfig:
    """Support thresholds and pattern options of the miner."""

    min_support: float | list[float] = 0.2  # relative support per class (one value for all, or one per class)
    multiset: bool = False  # transactions as multisets of tree ids (counts matter) instead of sets
    exclusive: bool = False  # drop patterns frequent in more than one class
    max_pattern_size: int | None = 3  # longest itemset FP-growth enumerates (None: no limit)
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
    """Frequent patterns of every class with their support counts and the class sizes."""

    patterns: list[dict[Pattern, int]]  # per class: pattern -> support count
    class_sizes: list[int]
    thresholds: list[int] = field(default_factory=list)  # absolute support threshold per class

    @property
    def num_patterns(self) -> int:
        return sum(len(p) for p in self.patterns)


def encode_transaction(trees: np.ndarray, multiset: bool) -> list[tuple[int, int]]:
    """Items of one transaction: ``(tree, 1)`` per distinct tree, or ``(tree, k)``, k=1..count."""
    values, counts = np.unique(trees, return_counts=True)
    if not multiset:
        return [(int(t), 1) for t in values]
    return [(int(t), k) for t, c in zip(values, counts) for k in range(1, int(c) + 1)]


def frequent_itemsets(transactions: list[list[tuple[int, int]]], min_count: int, max_len: int | None) -> dict[Pattern, int]:
    """All itemsets contained in at least ``min_count`` transactions, read back as tree multisets."""
    if not transactions:
        return {}
    # Infrequent items cannot be in a frequent set: keep only the frequent columns.
    item_count: dict[tuple[int, int], int] = {}
    for items in transactions:
        for item in items:
            item_count[item] = item_count.get(item, 0) + 1
    columns = sorted(i for i, c in item_count.items() if c >= min_count)
    if not columns:
        return {}
    column_of = {item: j for j, item in enumerate(columns)}
    rows = [r for r, items in enumerate(transactions) for item in items if item in column_of]
    cols = [column_of[item] for items in transactions for item in items if item in column_of]
    matrix = sp.csr_matrix((np.ones(len(rows), dtype=bool), (rows, cols)), shape=(len(transactions), len(columns)))
    # imported at use: the rest of Mirage (and every --help) works without the [graph] extra
    pd = require_extra("pandas", "graph")
    fpgrowth = require_extra("mlxtend.frequent_patterns", "graph").fpgrowth
    frame = pd.DataFrame.sparse.from_spmatrix(matrix, columns=range(len(columns)))

    n = len(transactions)
    # Support as a fraction; half a transaction below the count so float rounding cannot drop a set.
    found = fpgrowth(frame, min_support=(min_count - 0.5) / n, use_colnames=True, max_len=max_len)
    result: dict[Pattern, int] = {}
    for support, itemset in zip(found["support"].to_numpy(), found["itemsets"]):
        multiplicity: dict[int, int] = {}
        for j in itemset:
            tree, k = columns[j]
            multiplicity[tree] = max(multiplicity.get(tree, 0), k)
        pattern = tuple(sorted(t for t, m in multiplicity.items() for _ in range(m)))
        result[pattern] = max(result.get(pattern, 0), int(round(support * n)))
    return result


def mine_patterns(graph_trees: list[np.ndarray], graph_labels: np.ndarray, num_classes: int, config: MiningConfig) -> MinedPatterns:
    """Frequent tree-set patterns of every class.

    Args:
        graph_trees: per training graph, the tree ids of its nodes ([n_i] int arrays).
        graph_labels: [G] class of every graph.
        num_classes: number of classes (a class without graphs raises).
    """
    if len(graph_trees) != len(graph_labels):
        raise ValueError(f"graph_trees has {len(graph_trees)} graphs but graph_labels {len(graph_labels)}")
    patterns, sizes, thresholds = [], [], []
    for c in range(num_classes):
        members = np.flatnonzero(graph_labels == c)
        if members.size == 0:
            raise ValueError(f"class {c} has no training graphs: cannot mine its patterns")
        min_count = max(1, math.ceil(config.support_of(c, num_classes) * members.size - 1e-9))
        transactions = [encode_transaction(graph_trees[i], config.multiset) for i in members]
        found = frequent_itemsets(transactions, min_count, config.max_pattern_size)
        if len(found) > config.max_patterns:
            raise ValueError(
                f"class {c}: {len(found)} frequent patterns at support {config.support_of(c, num_classes)} exceed "
                f"MiningConfig.max_patterns={config.max_patterns}; raise min_support or lower max_pattern_size"
            )
        patterns.append(found)
        sizes.append(int(members.size))
        thresholds.append(min_count)
    if config.exclusive:
        seen: dict[Pattern, int] = {}
        for found in patterns:
            for p in found:
                seen[p] = seen.get(p, 0) + 1
        patterns = [{p: s for p, s in found.items() if seen[p] == 1} for found in patterns]
    return MinedPatterns(patterns, sizes, thresholds)
