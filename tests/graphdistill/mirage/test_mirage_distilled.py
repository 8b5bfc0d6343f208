"""The distilled set: trees rebuilt from it give a GNN exactly the original root embeddings; file I/O."""
import pytest
import torch
from torch_geometric.data import Batch

from graphdistill.data.graphs import GraphSplits, molecule_graph
from graphdistill.mirage.distill import DistillConfig, distill
from graphdistill.mirage.distilled import DistilledDataset, graphs_nbytes
from graphdistill.mirage.labels import DiscretizeConfig, discretize
from graphdistill.mirage.mining import MiningConfig
from graphdistill.mirage.models import FeatureSpec, GraphClassifier, ModelConfig
from graphdistill.mirage.trees import hash_trees, unroll_trees

ALCOHOLS = ["CCO", "CCCO", "OCC(O)C", "CC(C)O", "OCCO", "CCCCO"]
AMINES = ["CCN", "CCCN", "NCC(N)C", "CC(C)N", "NCCN", "CCCCN"]


def splits() -> GraphSplits:
    graphs = [molecule_graph(s, 0, "test") for s in ALCOHOLS] + [molecule_graph(s, 1, "test") for s in AMINES]
    return GraphSplits("toy", graphs[:4] + graphs[6:10], graphs[4:6] + graphs[10:12], graphs[4:6] + graphs[10:12], 2, ["OH", "NH2"])


@pytest.mark.parametrize("model", ["gin", "gat"])
def test_unrolled_trees_give_exact_root_embeddings(model):
    batch = Batch.from_data_list(splits().train)
    labels = discretize(batch.x, None, DiscretizeConfig())
    edges = discretize(batch.edge_attr, None, DiscretizeConfig())
    depth = 2
    tables = hash_trees(labels.labels, batch.edge_index, edges.labels, depth)
    unrolled = unroll_trees(tables.levels, depth, tables.ids[depth])
    net = GraphClassifier(FeatureSpec.of(batch.x), 2, ModelConfig(model=model, hidden=16, num_layers=depth)).double()

    def embed(x, edge_index):
        h = net.encoder(x)
        for conv in net.convs:
            h = torch.relu(conv(h, edge_index))
        return h

    on_graph = embed(batch.x, batch.edge_index)
    on_trees = embed(labels.table[unrolled.node_labels], unrolled.edge_index)[unrolled.roots]
    assert torch.allclose(on_trees, on_graph, atol=1e-10)


@pytest.mark.parametrize("depth,support", [(1, 0.5), (2, 0.25)])
def test_distill_save_load_and_pattern_graphs(tmp_path, depth, support):
    data = splits()
    config = DistillConfig(depth=depth, sweep=None, mining=MiningConfig(min_support=support, max_pattern_size=2))
    distilled = distill(data, config)
    assert distilled.num_patterns > 0
    assert set(distilled.pattern_class.tolist()) == {0, 1}
    assert distilled.original_nbytes == graphs_nbytes(data.train)
    assert distilled.compression_ratio == distilled.original_nbytes / distilled.nbytes
    size = distilled.save(tmp_path / "toy.pt")
    assert size > 0 and not (tmp_path / "toy.pt.tmp").exists()
    loaded = DistilledDataset.load(tmp_path / "toy.pt")
    for key, value in distilled.tensors().items():
        assert torch.equal(loaded.tensors()[key], value), key
    graphs, weights = loaded.to_graphs(class_prior=False)
    assert len(graphs) == distilled.num_patterns
    sizes = (distilled.pattern_ptr[1:] - distilled.pattern_ptr[:-1]).tolist()
    for g, n_trees, c, m, w in zip(graphs, sizes, distilled.pattern_class, distilled.pattern_mass, weights):
        assert int(g.root_mask.sum()) == n_trees and int(g.y) == int(c) and float(w) == float(m)
        assert g.edge_index.max() < g.num_nodes and g.edge_attr.shape == (g.edge_index.shape[1], 3)
    # Every pattern is frequent: frequency >= the class's support count.
    assert bool((distilled.pattern_frequency >= support * 4).all())
    # Class-prior weights: each class gets its share of training graphs (4 of 8 here), split among
    # its patterns in proportion to their readout masses.
    prior = loaded.sampling_weights(class_prior=True)
    for c in (0, 1):
        in_class = distilled.pattern_class == c
        assert torch.isclose(prior[in_class].sum(), torch.tensor(0.5, dtype=torch.float64))
        mass = distilled.pattern_mass[in_class].double()
        assert torch.allclose(prior[in_class], 0.5 * mass / mass.sum())
    # Files written before readout masses existed sample by support count.
    loaded.pattern_mass = None
    frequency = loaded.pattern_frequency.double()
    assert torch.equal(loaded.sampling_weights(class_prior=False), frequency)


def test_distill_continuous_features():
    data = splits()
    rng = torch.Generator().manual_seed(0)
    for g in data.all_graphs():
        g.x = g.x.float() + 0.01 * torch.rand(g.x.shape, generator=rng)  # continuous, near the categories
    distilled = distill(data, DistillConfig(depth=1, sweep=None, mining=MiningConfig(min_support=0.25)))
    assert distilled.feature_spec.cardinalities is None and distilled.node_features.is_floating_point()
    graphs, _ = distilled.to_graphs()
    assert graphs[0].x.dtype == torch.float32 and distilled.num_patterns > 0


def test_distill_bad_input(tmp_path):
    data = splits()
    with pytest.raises(ValueError, match="depth must be an integer >= 1"):
        distill(data, DistillConfig(depth=0))
    empty = molecule_graph("CCO", 0, "test")
    empty.x = empty.x[:0]
    empty.edge_index = empty.edge_index[:, :0]
    empty.edge_attr = empty.edge_attr[:0]
    with pytest.raises(ValueError, match="graph has no nodes"):
        distill(GraphSplits("bad", data.train + [empty], data.val, data.test, 2), DistillConfig(sweep=None))
    unlabelled = molecule_graph("CCO", 0, "test")
    del unlabelled.y
    with pytest.raises(ValueError, match="label y is missing"):
        distill(GraphSplits("bad", data.train + [unlabelled], data.val, data.test, 2), DistillConfig(sweep=None))
    continuous = [g.clone() for g in data.train]
    for g in continuous:
        g.x = g.x.float()
    continuous[0].x[0, 0] = float("nan")
    with pytest.raises(ValueError, match="node features x has 1 non-finite"):
        distill(GraphSplits("bad", continuous, [], [], 2), DistillConfig(sweep=None))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        DistilledDataset.load(tmp_path / "missing.pt")
    torch.save({"x": 1}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a Mirage distilled data set"):
        DistilledDataset.load(tmp_path / "other.pt")
