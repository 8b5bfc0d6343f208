"""Covered roots of new graphs, decided from the distilled file alone, against an independent hashing."""
import math

import pytest
import torch
from torch_geometric.data import Batch

from graphdistill.data.graphs import GraphSplits, molecule_graph
from graphdistill.mirage.covered import covered_roots, with_covered_readout
from graphdistill.mirage.distill import DistillConfig, distill
from graphdistill.mirage.labels import DiscretizeConfig, discretize
from graphdistill.mirage.mining import MiningConfig
from graphdistill.mirage.trees import hash_trees

ALCOHOLS = ["CCO", "CCCO", "OCC(O)C", "CC(C)O", "OCCO", "CCCCO", "OCCCO", "CC(O)CO"]
AMINES = ["CCN", "CCCN", "NCC(N)C", "CC(C)N", "NCCN", "CCCCN", "NCCCN", "CC(N)CN"]
NEW = ["CCCCCO", "NCC(O)CN", "CCCl", "c1ccccc1O", "OCC(N)CO", "CC(C)(C)N"]  # unseen atoms and trees too


@pytest.mark.parametrize("depth,support", [(1, 0.5), (2, 0.3)])
def test_covered_roots_match_frequent_trees_of_a_joint_hashing(depth, support):
    train = [molecule_graph(s, 0, "t") for s in ALCOHOLS[:6]] + [molecule_graph(s, 1, "t") for s in AMINES[:6]]
    val = [molecule_graph(s, 0, "t") for s in ALCOHOLS[6:]] + [molecule_graph(s, 1, "t") for s in AMINES[6:]]
    new = [molecule_graph(s, 0, "t") for s in NEW]
    distilled = distill(GraphSplits("toy", train, val, [], 2),
                        DistillConfig(depth=depth, sweep=None, mining=MiningConfig(min_support=support)))
    # Reference: hash every graph in one id space, keep the trees in >= ceil(s * n_c) graphs of some class.
    graphs = train + val + new
    batch = Batch.from_data_list(graphs)
    ids = hash_trees(discretize(batch.x, None, DiscretizeConfig()).labels, batch.edge_index,
                     discretize(batch.edge_attr, None, DiscretizeConfig()).labels, depth).ids[depth]
    per_graph = [ids[batch.ptr[i] : batch.ptr[i + 1]] for i in range(len(graphs))]
    kept = set()
    for c in (0, 1):
        members = [set(t.tolist()) for t, g in zip(per_graph, train) if int(g.y) == c]
        trees = set().union(*members)
        kept |= {t for t in trees if sum(t in m for m in members) >= math.ceil(support * len(members) - 1e-9)}
    assert len(kept) == distilled.num_patterns - _shared(distilled)
    got = covered_roots(distilled, graphs)
    for mask, trees in zip(got, per_graph):
        assert torch.equal(mask, torch.tensor([t in kept for t in trees.tolist()]))
    covered = torch.cat(got)
    assert 0 < int(covered.sum()) < covered.numel() and any(not m.any() for m in got[len(train) + len(val):])
    # An uncovered graph is read out over all its nodes; the originals keep no root mask.
    copies = with_covered_readout(distilled, new)
    for g, c, mask in zip(new, copies, got[len(train) + len(val):]):
        assert torch.equal(c.root_mask, mask if mask.any() else torch.ones_like(mask))
        assert not hasattr(g, "root_mask") and c.x is g.x


def _shared(distilled) -> int:
    """Patterns stored for both classes (the same tree frequent in each) count once in the reference."""
    return distilled.num_patterns - torch.unique(distilled.pattern_trees).numel()


def test_continuous_features_fall_back_to_every_node():
    train = [molecule_graph(s, 0, "t") for s in ALCOHOLS[:6]] + [molecule_graph(s, 1, "t") for s in AMINES[:6]]
    for g in train:
        g.x = g.x.float()
    distilled = distill(GraphSplits("toy", train, [], [], 2),
                        DistillConfig(depth=1, sweep=None, mining=MiningConfig(min_support=0.5)))
    new = [molecule_graph(s, 0, "t") for s in NEW]
    for g in new:
        g.x = g.x.float() + 0.01  # off the stored label rows: bins are not in the file
    assert not any(m.any() for m in covered_roots(distilled, new))
    assert all(g.root_mask.all() for g in with_covered_readout(distilled, new))
