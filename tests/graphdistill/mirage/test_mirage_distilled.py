"""The distilled set: trees rebuilt from it give a GNN exactly the original root embeddings; file I/O."""
from dataclasses import asdict, replace

import pytest
import torch
from torch_geometric.data import Batch

from graphdistill.data.graphs import GraphSplits, molecule_graph
from graphdistill.mirage.distill import DistillConfig, distill
from graphdistill.mirage.distilled import DistilledDataset, counts_to_ptr, graphs_nbytes, smallest_int
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
    assert distilled.original_compact_nbytes == graphs_nbytes(data.train, compact=True)
    assert distilled.compact_compression_ratio == distilled.original_compact_nbytes / distilled.nbytes
    size = distilled.save(tmp_path / "toy.pt")
    assert size > 0 and not (tmp_path / "toy.pt.tmp").exists()
    loaded = DistilledDataset.load(tmp_path / "toy.pt")
    assert loaded.original_compact_nbytes == distilled.original_compact_nbytes
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


def save_v1(distilled: DistilledDataset, path) -> int:
    """Writes the file the former format (mirage-distilled-v1) wrote: one int32 row per (pattern, class)
    entry, a tree repeated for every class, features in their own dtype; returns its payload in bytes."""
    tensors = {
        "node_features": distilled.node_features,
        "pattern_ptr": distilled.pattern_ptr,
        "pattern_trees": distilled.pattern_trees,
        "pattern_class": distilled.pattern_class,
        "pattern_frequency": distilled.pattern_frequency,
        "edge_features": distilled.edge_features,
        "pattern_mass": distilled.pattern_mass,
    }
    for l, table in enumerate(distilled.levels, start=1):
        tensors.update({f"level{l}.{k}": v for k, v in asdict(table).items()})
    torch.save({"format": "mirage-distilled-v1", "depth": distilled.depth, "num_classes": distilled.num_classes,
                "feature_spec": asdict(distilled.feature_spec), "original_nbytes": distilled.original_nbytes,
                "meta": distilled.meta, "tensors": tensors}, path)
    return sum(t.numel() * t.element_size() for t in tensors.values())


def entries(distilled: DistilledDataset) -> list[tuple]:
    """(trees, class, task, frequency, mass) of every entry."""
    ptr = distilled.pattern_ptr.tolist()
    task = distilled.pattern_task.tolist() if distilled.pattern_task is not None else [0] * distilled.num_patterns
    return [(tuple(distilled.pattern_trees[ptr[p] : ptr[p + 1]].tolist()), int(distilled.pattern_class[p]), task[p],
             int(distilled.pattern_frequency[p]), float(distilled.pattern_mass[p])) for p in range(distilled.num_patterns)]


def test_pattern_of_two_classes_stored_once_samples_as_the_two_copies(tmp_path):
    """The v2 file stores a tree frequent in both classes once with two (class, frequency, mass) entries;
    loaded, it gives the same training graphs and sampling weights as the former file of two copies."""
    config = DistillConfig(depth=1, sweep=None, mining=MiningConfig(min_support=0.25))
    distilled = distill(splits(), config)
    in_both = distilled.num_patterns - torch.unique(distilled.pattern_trees).numel()
    assert in_both > 0  # carbon trees root atoms of alcohols and amines alike
    stored = distilled.tensors()
    assert stored["pattern_trees"].numel() == distilled.num_patterns - in_both
    assert stored["entry_class"].numel() == distilled.num_patterns
    v1_bytes = save_v1(distilled, tmp_path / "v1.pt")
    distilled.save(tmp_path / "v2.pt")
    assert distilled.nbytes < v1_bytes / 2  # measured: 3.7x smaller on this set
    former, current = DistilledDataset.load(tmp_path / "v1.pt"), DistilledDataset.load(tmp_path / "v2.pt")
    assert former.compact_compression_ratio is None  # the former format did not record the compact count
    for loaded in (former, current):
        assert loaded.node_features.dtype == torch.long and torch.equal(loaded.node_features, distilled.node_features)
        for a, b in zip(loaded.levels, distilled.levels, strict=True):
            for x, y in zip(asdict(a).values(), asdict(b).values()):
                assert x.dtype == y.dtype and torch.equal(x, y)
    assert entries(former) == entries(current) == entries(distilled)
    for class_prior in (True, False):
        (g1, w1), (g2, w2) = former.to_graphs(class_prior), current.to_graphs(class_prior)
        assert torch.equal(w1, w2)
        for a, b in zip(g1, g2, strict=True):
            for key in ("x", "edge_index", "edge_attr", "y", "root_mask"):
                assert torch.equal(a[key], b[key]), key


def test_entries_in_any_order_round_trip_grouped_by_pattern(tmp_path):
    """Entries not grouped by pattern (and multi-task entries) come back grouped, each one unchanged."""
    distilled = distill(splits(), DistillConfig(depth=2, sweep=None, mining=MiningConfig(min_support=0.25, max_pattern_size=2)))
    order = torch.randperm(distilled.num_patterns, generator=torch.Generator().manual_seed(0))
    sizes = (distilled.pattern_ptr[1:] - distilled.pattern_ptr[:-1])[order]
    ptr = torch.zeros(order.numel() + 1, dtype=torch.int32)
    ptr[1:] = torch.cumsum(sizes, 0)
    trees = torch.cat([distilled.pattern_trees[distilled.pattern_ptr[p] : distilled.pattern_ptr[p + 1]] for p in order.tolist()])
    shuffled = replace(distilled, pattern_ptr=ptr, pattern_trees=trees, pattern_class=distilled.pattern_class[order],
                       pattern_frequency=distilled.pattern_frequency[order], pattern_mass=distilled.pattern_mass[order],
                       pattern_task=torch.arange(order.numel(), dtype=torch.int32) % 2,
                       meta={**distilled.meta, "num_tasks": 2, "class_sizes": distilled.meta["class_sizes"] * 2})
    shuffled.save(tmp_path / "shuffled.pt")
    loaded = DistilledDataset.load(tmp_path / "shuffled.pt")
    assert sorted(entries(loaded)) == sorted(entries(shuffled))
    patterns = [e[0] for e in entries(loaded)]
    assert all(patterns.index(p) == i or patterns[i - 1] == p for i, p in enumerate(patterns))  # grouped
    assert loaded.pattern_task.dtype == loaded.pattern_class.dtype == loaded.pattern_ptr.dtype == torch.int32


@pytest.mark.parametrize("values,dtype", [([0, 255], torch.uint8), ([-1, 5], torch.int16), ([0, 256], torch.int16),
                                          ([-40000, 0], torch.int32), ([0, 2**31], torch.int64), ([], torch.uint8)])
def test_smallest_int_dtype(values, dtype):
    stored = smallest_int(torch.tensor(values, dtype=torch.long))
    assert stored.dtype == dtype and stored.long().tolist() == values
    floats = torch.tensor([0.5, 300.0])
    assert smallest_int(floats) is floats


def test_graphs_nbytes_compact_counts_smallest_dtypes():
    graph = splits().train[0]  # ethanol: 3 atoms x 9 int64 features, 4 directed bonds x 3 features, one label
    assert graphs_nbytes([graph]) == 8 * (3 * 9 + 2 * 4 + 4 * 3 + 1)
    assert graphs_nbytes([graph], compact=True) == 3 * 9 + 2 * 4 + 4 * 3 + 1  # every value fits uint8
    graph.x = graph.x.float()
    assert graphs_nbytes([graph], compact=True) == 4 * 3 * 9 + 2 * 4 + 4 * 3 + 1  # floats stay as they are


def test_csr_offsets_refuse_counts_an_int32_cannot_address():
    assert counts_to_ptr(torch.tensor([3, 0, 2], dtype=torch.uint8)).tolist() == [0, 3, 3, 5]
    assert counts_to_ptr(torch.tensor([2**31 - 1])).tolist() == [0, 2**31 - 1]
    with pytest.raises(ValueError, match="2147483648 entries"):  # wrapped to -2**31 before
        counts_to_ptr(torch.tensor([2**30, 2**30]))
