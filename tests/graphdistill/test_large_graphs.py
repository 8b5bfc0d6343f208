"""Products-size graph generator (chunked straight into CSR) and the ogbn-products / papers100M readers."""
import gzip

import numpy as np
import pytest
import torch

from graphdistill.data.large import LargeSBMConfig, large_sbm_graph
from graphdistill.data.ogbn_large import load_ogbn_large
from graphdistill.sampling import CSRGraph


def test_chunked_generator_builds_a_clean_symmetric_csr(tmp_path):
    config = LargeSBMConfig(num_nodes=6000, num_blocks=4, avg_degree=12, feature_dim=8, chunk_edges=5000)
    graph = large_sbm_graph(config, seed=0, feature_file=tmp_path / "x.npy")
    edge_index = graph.csr.to_edge_index()
    # the CSR built from the same edges in one go: rows sorted, no duplicates, no self loops, both directions
    reference = CSRGraph.from_edge_index(edge_index, 6000, undirected=True)
    assert torch.equal(reference.indptr, graph.csr.indptr) and torch.equal(reference.indices, graph.csr.indices)
    assert abs(graph.csr.num_edges / 6000 - 12) < 0.3  # ~avg_degree directed entries per node
    same = (graph.y[edge_index[0]] == graph.y[edge_index[1]]).float().mean()
    assert abs(float(same) - (0.8 + 0.2 / 4)) < 0.02  # homophily h plus the uniform draws landing in-block
    assert isinstance(graph.x, np.memmap) and graph.x.shape == (6000, 8)
    means = np.stack([graph.x[graph.y.numpy() == c].mean(0) for c in range(4)])
    assert np.allclose(np.linalg.norm(means, axis=1), 2.0, atol=0.15)  # class-dependent features
    assert graph.train.numel() == 480 and graph.val.numel() == 120
    assert torch.equal(torch.cat([graph.train, graph.val, graph.test]).sort().values, torch.arange(6000))
    again = large_sbm_graph(config, seed=0)  # chunk seeds make it reproducible
    assert torch.equal(again.csr.indices, graph.csr.indices) and np.array_equal(again.x, graph.x)


def _write_csv(path, rows, fmt="%d"):
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt") as handle:
        np.savetxt(handle, rows, delimiter=",", fmt=fmt)


def test_ogbn_products_reader_on_a_fake_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"edge\.csv\.gz.*train\.csv\.gz.*NodePropPredDataset"):
        load_ogbn_large(tmp_path, "ogbn-products")
    base = tmp_path / "ogbn_products"
    _write_csv(base / "raw" / "edge.csv.gz", np.array([[0, 1], [1, 2], [2, 0], [3, 2], [1, 0]]))
    _write_csv(base / "raw" / "node-feat.csv.gz", np.arange(8.0).reshape(4, 2), "%.1f")
    _write_csv(base / "raw" / "node-label.csv.gz", np.array([[0], [1], [1], [0]]))
    for part, ids in (("train", [0, 1]), ("valid", [2]), ("test", [3])):
        _write_csv(base / "split" / "sales_ranking" / f"{part}.csv.gz", np.array(ids)[:, None])
    graph = load_ogbn_large(tmp_path, "ogbn-products")
    assert graph.x.shape == (4, 2) and graph.x[3, 1] == 7.0
    assert graph.y.tolist() == [0, 1, 1, 0] and graph.num_classes == 2
    assert graph.csr.degree().tolist() == [2, 2, 3, 1]  # 0-1 stored twice, kept once; both directions
    assert graph.train.tolist() == [0, 1] and graph.test.tolist() == [3]


def test_ogbn_papers100m_reader_on_a_fake_folder(tmp_path):
    base = tmp_path / "ogbn_papers100M"
    (base / "raw").mkdir(parents=True)
    np.savez(base / "raw" / "data.npz", edge_index=np.array([[0, 1, 2], [1, 2, 3]]),
             node_feat=np.ones((4, 3), dtype=np.float16), num_nodes_list=np.array([4]))
    np.savez(base / "raw" / "node-label.npz", node_label=np.array([[np.nan], [2.0], [np.nan], [0.0]]))
    with pytest.raises(FileNotFoundError, match=r"split/time/train\.csv\.gz"):
        load_ogbn_large(tmp_path, "ogbn-papers100M")
    for part, ids in (("train", [1]), ("valid", [3]), ("test", [3])):
        _write_csv(base / "split" / "time" / f"{part}.csv.gz", np.array(ids)[:, None])
    graph = load_ogbn_large(tmp_path, "ogbn-papers100M")
    assert graph.y.tolist() == [-1, 2, -1, 0] and graph.x.dtype == np.float32
    assert graph.csr.num_edges == 6 and bool(graph.csr.has_edges(torch.tensor([3]), torch.tensor([2])))
