"""Per-class frequent tree-set mining against hand-counted transactions."""
import numpy as np
import pytest

from graphdistill.mirage.mining import MiningConfig, mine_patterns

# Class 0: five transactions over trees 1..4; class 1: three transactions.
CLASS0 = [[1, 2, 3], [1, 2], [1, 3], [2, 3], [1, 2, 3, 4]]
CLASS1 = [[1, 4], [4, 4, 5], [1, 4, 4]]
TREES = [np.array(t) for t in CLASS0 + CLASS1]
LABELS = np.array([0] * 5 + [1] * 3)


def test_sets_match_hand_counted_supports():
    # Class 0 at support 0.6 (>= 3 of 5): {1},{2},{3} (4 each), {1,2},{1,3},{2,3} (3 each); {1,2,3} has 2.
    # Class 1 at support 0.6 (>= 2 of 3): {1} (2), {4} (3), {1,4} (2).
    mined = mine_patterns(TREES, LABELS, 2, MiningConfig(min_support=0.6, max_pattern_size=None))
    assert mined.patterns[0] == {(1,): 4, (2,): 4, (3,): 4, (1, 2): 3, (1, 3): 3, (2, 3): 3}
    assert mined.patterns[1] == {(1,): 2, (4,): 3, (1, 4): 2}
    assert mined.thresholds == [3, 2]
    assert mined.class_sizes == [5, 3]


def test_per_class_thresholds_and_max_size():
    mined = mine_patterns(TREES, LABELS, 2, MiningConfig(min_support=[0.4, 1.0], max_pattern_size=None))
    assert mined.patterns[0][(1, 2, 3)] == 2
    assert mined.patterns[1] == {(4,): 3}
    short = mine_patterns(TREES, LABELS, 2, MiningConfig(min_support=[0.4, 1.0], max_pattern_size=2))
    assert max(len(p) for p in short.patterns[0]) == 2


def test_multiset_counts_repeated_trees():
    # Tree 4 appears twice in two of class 1's transactions.
    mined = mine_patterns(TREES, LABELS, 2, MiningConfig(min_support=0.6, multiset=True, max_pattern_size=None))
    assert mined.patterns[1] == {(1,): 2, (4,): 3, (4, 4): 2, (1, 4): 2}


def test_exclusive_drops_patterns_frequent_in_two_classes():
    mined = mine_patterns(TREES, LABELS, 2, MiningConfig(min_support=0.6, exclusive=True, max_pattern_size=None))
    assert (1,) not in mined.patterns[0] and (1,) not in mined.patterns[1]
    assert mined.patterns[1] == {(4,): 3, (1, 4): 2}


def test_bad_input():
    with pytest.raises(ValueError, match="class 2 has no training graphs"):
        mine_patterns(TREES, LABELS, 3, MiningConfig())
    with pytest.raises(ValueError, match="min_support must be in"):
        mine_patterns(TREES, LABELS, 2, MiningConfig(min_support=0.0))
    with pytest.raises(ValueError, match="max_patterns"):
        mine_patterns(TREES, LABELS, 2, MiningConfig(min_support=0.2, max_patterns=3))
    with pytest.raises(ValueError, match="graph_labels"):
        mine_patterns(TREES, LABELS[:-1], 2, MiningConfig())
