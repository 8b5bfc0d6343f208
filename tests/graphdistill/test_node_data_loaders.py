"""Node-classification data: offline sets, kNN graph, SBM generator, offline loaders, input checks."""
import gzip

import numpy as np
import pytest
import torch
from torch_geometric.data import Data
from torch_geometric.utils import homophily, is_undirected, stochastic_blockmodel_graph

from graphdistill.data.node import sbm_block_edges
from graphdistill.datasets import (
    SBMConfig,
    count_isolated,
    digits_graph,
    karate_club,
    load_amazon,
    load_node_dataset,
    load_ogbn_arxiv,
    load_planetoid,
    make_node_graph,
    sbm_graph,
)
from graphdistill.knn import knn_graph


def test_knn_graph_matches_brute_force_sklearn():
    from sklearn.neighbors import NearestNeighbors

    x = torch.randn(300, 5)
    edge_index = knn_graph(x, k=4, chunk_size=64)  # several chunks
    _, ref = NearestNeighbors(n_neighbors=5, algorithm="brute").fit(x.numpy()).kneighbors(x.numpy())
    ours = edge_index[0].view(300, 4)
    assert torch.equal(edge_index[1], torch.arange(300).repeat_interleave(4))
    assert (ours.sort(1).values.numpy() == np.sort(ref[:, 1:], 1)).all()


def test_knn_graph_keeps_duplicates_but_not_self():
    x = torch.tensor([[0.0], [0.0], [5.0]])
    edge_index = knn_graph(x, k=1)
    assert edge_index[0].tolist() == [1, 0, 1] or edge_index[0].tolist() == [1, 0, 0]
    assert not bool((edge_index[0] == edge_index[1]).any())
    with pytest.raises(ValueError, match="too large"):
        knn_graph(x, k=3)


def test_digits_graph_is_the_documented_graph():
    data = digits_graph()
    assert data.x.shape == (1797, 64) and data.num_classes == 10
    assert float(data.x.min()) >= 0 and float(data.x.max()) <= 1
    assert is_undirected(data.edge_index) and not bool((data.edge_index[0] == data.edge_index[1]).any())
    assert data.edge_index.size(1) >= 1797 * 10  # k=10 each way, symmetrised
    assert 0.93 < homophily(data.edge_index, data.y) < 0.99
    assert count_isolated(data) == 0


def test_karate_club_offline():
    data = load_node_dataset("karate")
    assert data.num_nodes == 34 and data.edge_index.size(1) == 156 and data.num_classes == 4
    assert torch.equal(data.edge_index, karate_club().edge_index)
    assert torch.bincount(data.y).tolist() == [13, 12, 4, 5]


def test_sbm_block_sampler_matches_pyg_reference_density():
    sizes, probs = [60, 40], torch.tensor([[0.3, 0.05], [0.05, 0.2]], dtype=torch.float64)
    ours = [sbm_block_edges(sizes, probs, np.random.default_rng(s)) for s in range(20)]
    ref = [stochastic_blockmodel_graph(sizes, probs.float()) for _ in range(20)]
    block = torch.repeat_interleave(torch.arange(2), torch.tensor(sizes))

    def densities(edge_lists):  # mean edge count per block pair, undirected pairs counted once
        counts = torch.zeros(2, 2)
        for ei in edge_lists:
            ei = ei[:, ei[0] < ei[1]]
            for a in range(2):
                for b in range(2):
                    counts[a, b] += ((block[ei[0]] == a) & (block[ei[1]] == b)).sum()
        return counts / len(edge_lists)

    expected = torch.tensor([[0.3 * 60 * 59 / 2, 0.05 * 60 * 40], [0.0, 0.2 * 40 * 39 / 2]])
    d_ours, d_ref = densities(ours), densities(ref)
    assert torch.allclose(d_ours[0, 0] + 0, expected[0, 0], rtol=0.05)
    assert torch.allclose(d_ours[1, 1], expected[1, 1], rtol=0.05)
    assert torch.allclose(d_ours[0, 1] + d_ours[1, 0], expected[0, 1], rtol=0.1)
    assert torch.allclose(d_ours.sum(), d_ref.sum(), rtol=0.05)
    for ei in ours:  # distinct pairs, no self loops
        assert ei.size(1) == torch.unique(ei[0] * 100 + ei[1]).numel() and bool((ei[0] < ei[1]).all())


def test_sbm_graph_hits_degree_and_homophily():
    data = sbm_graph(SBMConfig(num_nodes=5000, num_blocks=5, avg_degree=8, homophily=0.7, feature_dim=16), seed=1)
    assert data.x.shape == (5000, 16) and data.num_classes == 5
    assert abs(data.edge_index.size(1) / 5000 - 8) < 0.3
    assert abs(homophily(data.edge_index, data.y) - 0.7) < 0.02
    same = sbm_graph(SBMConfig(num_nodes=5000, num_blocks=5, avg_degree=8, homophily=0.7, feature_dim=16), seed=1)
    assert torch.equal(same.edge_index, data.edge_index)


def test_public_loaders_fail_clearly_offline(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not download"):
        load_planetoid(tmp_path, "cora")
    with pytest.raises(FileNotFoundError, match="ind.cora.x"):
        load_planetoid(tmp_path, "Cora")
    with pytest.raises(FileNotFoundError, match="does not download"):
        load_amazon(tmp_path, "photo")
    with pytest.raises(FileNotFoundError, match="node-feat.csv.gz"):
        load_ogbn_arxiv(tmp_path)
    with pytest.raises(ValueError, match="root="):
        load_node_dataset("pubmed")
    with pytest.raises(ValueError, match="unknown"):
        load_node_dataset("nonsense")


def test_ogbn_arxiv_reader_on_ogb_layout(tmp_path):
    raw, split = tmp_path / "ogbn_arxiv" / "raw", tmp_path / "ogbn_arxiv" / "split" / "time"
    raw.mkdir(parents=True)
    split.mkdir(parents=True)

    def write(path, rows):
        with gzip.open(path, "wt") as handle:
            handle.write("\n".join(",".join(map(str, r)) for r in rows) + "\n")

    write(raw / "node-feat.csv.gz", [[0.5, 1.0], [0.0, -1.0], [2.0, 3.0], [1.0, 1.0]])
    write(raw / "edge.csv.gz", [[0, 1], [1, 2], [3, 2]])
    write(raw / "node-label.csv.gz", [[0], [1], [1], [0]])
    write(split / "train.csv.gz", [[0], [1]])
    write(split / "valid.csv.gz", [[2]])
    write(split / "test.csv.gz", [[3]])
    data = load_ogbn_arxiv(tmp_path)
    assert torch.allclose(data.x[2], torch.tensor([2.0, 3.0]))
    assert data.edge_index.size(1) == 6 and is_undirected(data.edge_index)
    assert data.y.tolist() == [0, 1, 1, 0]
    assert data.train_mask.tolist() == [True, True, False, False] and data.test_mask.tolist() == [False, False, False, True]


def test_bad_graphs_raise_clear_errors():
    x, y = torch.rand(4, 3), torch.tensor([0, 1, 0, 1])
    edges = torch.tensor([[0, 1], [1, 2]])
    bad_x = x.clone()
    bad_x[2, 1] = float("nan")
    with pytest.raises(ValueError, match="non-finite"):
        make_node_graph(bad_x, edges, y)
    with pytest.raises(ValueError, match="outside"):
        make_node_graph(x, edges, torch.tensor([0, 1, 2, 1]), num_classes=2)
    with pytest.raises(ValueError, match="empty"):
        make_node_graph(torch.rand(0, 3), torch.zeros(2, 0, dtype=torch.long), torch.zeros(0, dtype=torch.long))
    with pytest.raises(ValueError, match="refers to node 7"):
        make_node_graph(x, torch.tensor([[0, 7], [1, 2]]), y)
    graph = make_node_graph(x, edges, y)  # nodes 0 and 3 isolated in one direction / entirely
    assert count_isolated(graph) == 1 and isinstance(graph, Data)
