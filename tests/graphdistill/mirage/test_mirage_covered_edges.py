"""Covered-root readout (``mirage train --covered-readout``) on edge cases: an empty split (a set without
test graphs, which the trainer accepts) and graphs of one node, whose tree no depth-2 set stores."""
import sys

import pytest
import torch

from graphdistill.data.graphs import molecule_graph
from graphdistill.mirage.covered import covered_roots, with_covered_readout
from graphdistill.mirage.distill import DistillConfig, distill
from graphdistill.mirage.mining import MiningConfig

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from test_mirage_distilled import splits  # noqa: E402


@pytest.fixture(scope="module")
def distilled():
    return distill(splits(), DistillConfig(depth=2, sweep=None, mining=MiningConfig(min_support=0.25, max_pattern_size=2)))


def test_empty_split_has_no_covered_roots(distilled):
    assert covered_roots(distilled, []) == []  # was: IndexError from Batch.from_data_list([])
    assert with_covered_readout(distilled, []) == []


def test_one_node_graph_falls_back_to_all_nodes_beside_a_covered_graph(distilled):
    """Methane (one atom, no bonds: its depth-2 tree is a lone root, never mined from the toy alcohols and
    amines) is not covered and reads out over its one node; ethanol's atoms root trees of the set."""
    methane, ethanol = molecule_graph("C", 0, "test"), molecule_graph("CCO", 0, "test")
    masks = covered_roots(distilled, [methane, ethanol])
    assert [m.tolist() for m in masks] == [[False], [True, True, True]]
    out = with_covered_readout(distilled, [methane, ethanol])
    assert out[0].root_mask.tolist() == [True] and torch.equal(out[1].root_mask, masks[1])
    assert out[0] is not methane and not hasattr(methane, "root_mask")  # inputs are left as they were
