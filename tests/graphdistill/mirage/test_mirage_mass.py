"""Readout masses of patterns (the sampling weight of the distilled set) against a direct count."""
import numpy as np
import pytest
import torch
from torch_geometric.data import Batch

from graphdistill.data.graphs import GraphSplits, molecule_graph
from graphdistill.mirage.distill import DistillConfig, distill, pattern_readout_mass
from graphdistill.mirage.labels import DiscretizeConfig, discretize
from graphdistill.mirage.mining import MiningConfig
from graphdistill.mirage.trees import hash_trees


def brute_mass(graph_trees, y, patterns, num_classes, multiset):
    """Sum over the graphs of the pattern's group that contain it of the share of their nodes its trees root."""
    out = []
    for group, pattern in patterns:
        task, cls = divmod(group, num_classes)
        total = 0.0
        for trees, label in zip(graph_trees, y[:, task]):
            if np.isnan(label) or int(label) != cls:
                continue
            trees = list(trees)
            need = {t: pattern.count(t) if multiset else 1 for t in pattern}
            if all(trees.count(t) >= k for t, k in need.items()):
                total += sum(t in need for t in trees) / len(trees)
        out.append(total)
    return np.array(out)


@pytest.mark.parametrize("multiset", [False, True])
def test_readout_mass_matches_direct_count(multiset):
    rng = np.random.default_rng(0)
    graph_trees = [rng.integers(0, 6, size=rng.integers(1, 9)) for _ in range(40)]
    y = np.stack([rng.integers(0, 2, 40), rng.integers(0, 2, 40)], 1).astype(np.float64)
    y[rng.random(y.shape) < 0.2] = np.nan  # missing labels belong to no group of their task
    patterns = [(int(rng.integers(4)), tuple(sorted(rng.integers(0, 6, size=rng.integers(1, 4)).tolist()))) for _ in range(30)]
    if not multiset:
        patterns = [(g, tuple(sorted(set(p)))) for g, p in patterns]
    got = pattern_readout_mass(graph_trees, y, patterns, 2, multiset)
    assert np.allclose(got, brute_mass(graph_trees, y, patterns, 2, multiset))
    assert (got > 0).any()


def test_distilled_single_tree_mass_is_node_share():
    """A single-tree pattern's mass is sum_G n_t(G) / |G| over its class's graphs: trees counted per node, not
    once per graph as the support count does; ids from an independent hashing of the training graphs."""
    alcohols = ["CCO", "CCCO", "OCC(O)C", "CC(C)O", "OCCO", "CCCCO", "OCCCO"]
    amines = ["CCN", "CCCN", "NCC(N)C", "CC(C)N", "NCCN", "CCCCN", "NCCCN"]
    graphs = [molecule_graph(s, 0, "t") for s in alcohols] + [molecule_graph(s, 1, "t") for s in amines]
    train = graphs[:5] + graphs[7:12]
    data = GraphSplits("toy", train, graphs[5:7] + graphs[12:], [], 2)
    distilled = distill(data, DistillConfig(depth=1, sweep=None, mining=MiningConfig(min_support=0.4)))
    assert (distilled.pattern_ptr[1:] - distilled.pattern_ptr[:-1]).eq(1).all()  # single trees by default
    # Independent ids: hash the training and validation graphs together as distill does.
    batch = Batch.from_data_list(data.train + data.val)
    nodes = discretize(batch.x, None, DiscretizeConfig())
    edges = discretize(batch.edge_attr, None, DiscretizeConfig())
    ids = hash_trees(nodes.labels, batch.edge_index, edges.labels, 1).ids[1]
    per_graph = [ids[batch.ptr[i] : batch.ptr[i + 1]].tolist() for i in range(len(train))]
    labels = [int(g.y) for g in train]
    # Decoded content of a tree id -> (root features, sorted (edge features, child features)), in both spaces.
    def content(levels, node_table, edge_table, tree):
        t = levels[0]
        kids = sorted((tuple(edge_table[int(e)].tolist()), tuple(node_table[int(c)].tolist()))
                      for e, c in zip(t.child_edge_label[t.ptr[tree] : t.ptr[tree + 1]], t.child[t.ptr[tree] : t.ptr[tree + 1]]))
        return tuple(node_table[int(t.label[tree])].tolist()), tuple(kids)

    tables = hash_trees(nodes.labels, batch.edge_index, edges.labels, 1).levels
    by_content = {content(tables, nodes.table, edges.table, t): t for t in range(tables[0].num_trees)}
    for p in range(distilled.num_patterns):
        tree = int(distilled.pattern_trees[p])
        t = by_content[content(distilled.levels, distilled.node_features, distilled.edge_features, tree)]
        c = int(distilled.pattern_class[p])
        want = sum(g.count(t) / len(g) for g, label in zip(per_graph, labels) if label == c)
        support = sum(t in g for g, label in zip(per_graph, labels) if label == c)
        assert float(distilled.pattern_mass[p]) == pytest.approx(want, rel=1e-6)
        assert int(distilled.pattern_frequency[p]) == support
    assert torch.equal(distilled.sampling_weights(class_prior=False), distilled.pattern_mass.double())
