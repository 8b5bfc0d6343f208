"""Graph-classification sets as arrays: conversion, selection, files, the scale generator and the
multi-task OGB reader (ogbg-molpcba layout) on hand-made folders."""
import gzip

import numpy as np
import pytest

from graphdistill.data.graphs import (GraphArrays, ReplicateConfig, load_graph_dataset, load_ogb_graph_arrays,
                                      replicate_molecules)


@pytest.fixture(scope="module")
def solubility():
    return load_graph_dataset("solubility")


def test_arrays_hold_the_graphs_and_select_renumbers(solubility, tmp_path):
    arrays = GraphArrays.from_splits(solubility)
    graphs = solubility.all_graphs()
    assert arrays.num_graphs == len(graphs) and arrays.num_tasks == 1
    for g in (0, 500, len(graphs) - 1):
        n0, n1, e0, e1 = arrays.node_ptr[g], arrays.node_ptr[g + 1], arrays.edge_ptr[g], arrays.edge_ptr[g + 1]
        assert np.array_equal(arrays.x[n0:n1], graphs[g].x.numpy())
        assert np.array_equal(arrays.edge_index[:, e0:e1] - n0, graphs[g].edge_index.numpy())
        assert np.array_equal(arrays.edge_attr[e0:e1], graphs[g].edge_attr.numpy())
        assert arrays.y[g, 0] == int(graphs[g].y)
    assert (arrays.split == 0).sum() == len(solubility.train) and (arrays.split == 2).sum() == len(solubility.test)
    # every third graph, renumbered: graph k of the selection is graph 3k of the set
    picked = arrays.select(np.arange(arrays.num_graphs) % 3 == 0)
    for k in (0, 7, picked.num_graphs - 1):
        n0, n1, e0, e1 = picked.node_ptr[k], picked.node_ptr[k + 1], picked.edge_ptr[k], picked.edge_ptr[k + 1]
        assert np.array_equal(picked.x[n0:n1], graphs[3 * k].x.numpy())
        assert np.array_equal(picked.edge_index[:, e0:e1] - n0, graphs[3 * k].edge_index.numpy())
    # the file round trip (npy files, no pickles)
    loaded = GraphArrays.load(picked.save(tmp_path / "set"))
    for key in ("x", "edge_index", "edge_attr", "node_ptr", "edge_ptr", "y", "split"):
        assert np.array_equal(getattr(loaded, key), getattr(picked, key)), key
    assert loaded.name == picked.name and loaded.num_classes == picked.num_classes


def test_nbytes_counts_as_graphs_nbytes_does(solubility):
    """The arrays' payload equals graphs_nbytes of the same PyG graphs, as PyG holds them and compact,
    also for a graph whose edge ids need int16, negative and float features, and graphs without edges."""
    import torch
    from torch_geometric.data import Data

    from graphdistill.data.graphs import GraphSplits
    from graphdistill.mirage.distilled import graphs_nbytes

    big = Data(x=torch.arange(300 * 9).reshape(300, 9) - 5, y=torch.tensor([1]),  # int16 features and ids
               edge_index=torch.stack([torch.arange(299), torch.arange(1, 300)]), edge_attr=torch.full((299, 3), 70000))
    edgeless = Data(x=torch.ones(2, 9, dtype=torch.long), edge_index=torch.zeros(2, 0, dtype=torch.long),
                    edge_attr=torch.zeros(0, 3, dtype=torch.long), y=torch.tensor([0]))
    mixed = GraphSplits("mixed", solubility.train[:50] + [big, edgeless], [], [], 3)
    for graphs, arrays in ((solubility.all_graphs(), GraphArrays.from_splits(solubility)),
                           (mixed.train, GraphArrays.from_splits(mixed))):
        keep = np.random.default_rng(0).random(arrays.num_graphs) < 0.5
        keep[-2:] = True
        chosen = [g for g, k in zip(graphs, keep) if k]
        for compact in (False, True):
            assert arrays.nbytes(keep, compact) == graphs_nbytes(chosen, compact), compact
    for g in mixed.train:
        g.x = g.x.float()
    floats = GraphArrays.from_splits(mixed)
    everything = np.ones(floats.num_graphs, bool)
    assert floats.nbytes(everything, compact=True) == graphs_nbytes(mixed.train, compact=True)


def test_replicated_molecules_are_copies_with_seeded_mutations(solubility):
    base = GraphArrays.from_splits(solubility)
    config = ReplicateConfig(num_graphs=2 * base.num_graphs + 10, mutate_fraction=0.05, seed=1)
    big = replicate_molecules(config, base=base)
    assert big.num_graphs == config.num_graphs
    n = base.num_graphs
    assert np.array_equal(big.x[: base.x.shape[0]], base.x)  # the first copy is exact
    assert np.array_equal(big.y, base.y[np.arange(config.num_graphs) % n])
    assert np.array_equal(big.split, base.split[np.arange(config.num_graphs) % n])
    copy = slice(big.node_ptr[n], big.node_ptr[2 * n])
    assert np.array_equal(big.edge_index[:, big.edge_ptr[n] : big.edge_ptr[2 * n]] - big.node_ptr[n], base.edge_index)
    changed = (big.x[copy] != base.x).any(1)
    assert (big.x[copy][:, [0, 1, 2, 3, 5, 6, 7, 8]] == base.x[:, [0, 1, 2, 3, 5, 6, 7, 8]]).all()  # only num Hs
    # 5% of atoms redrawn, a fifth of those to the value they had: about 4% change
    assert 0.03 < changed.mean() < 0.05
    again = replicate_molecules(config, base=base)
    assert np.array_equal(again.x, big.x)


def write_csv_gz(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt") as f:
        f.write("".join(",".join(str(v) for v in row) + "\n" for row in rows))


def fake_molpcba(root, labels):
    """Three graphs in OGB's raw layout with three binary tasks; '' is a missing label (as OGB writes it)."""
    folder = root / "ogbg_molpcba"
    write_csv_gz(folder / "raw" / "edge.csv.gz", [(0, 1), (1, 2), (0, 1), (0, 1), (1, 2)])
    write_csv_gz(folder / "raw" / "node-feat.csv.gz", [(6, 0), (8, 0), (6, 1), (7, 0), (7, 1), (6, 0), (6, 0), (8, 1)])
    write_csv_gz(folder / "raw" / "edge-feat.csv.gz", [(0,), (1,), (2,), (0,), (1,)])
    write_csv_gz(folder / "raw" / "num-node-list.csv.gz", [(3,), (2,), (3,)])
    write_csv_gz(folder / "raw" / "num-edge-list.csv.gz", [(2,), (1,), (2,)])
    write_csv_gz(folder / "raw" / "graph-label.csv.gz", labels)
    for split, idx in (("train", [0, 2]), ("valid", [1]), ("test", [])):
        write_csv_gz(folder / "split" / "scaffold" / f"{split}.csv.gz", [(i,) for i in idx])


def test_molpcba_reader_keeps_missing_labels_and_both_edge_directions(tmp_path):
    fake_molpcba(tmp_path, [(1, "", 0), ("", "", 1), (0, 1, "nan")])
    arrays = load_ogb_graph_arrays(tmp_path, "ogbg-molpcba")
    assert arrays.num_graphs == 3 and arrays.num_tasks == 3 and arrays.num_classes == 2
    np.testing.assert_array_equal(arrays.y, [[1, np.nan, 0], [np.nan, np.nan, 1], [0, 1, np.nan]])
    assert arrays.split.tolist() == [0, 1, 0]
    # graph 0: path 0-1-2 as forward edges then the reverse ones; graph 2 starts at node 5
    assert arrays.edge_index[:, :4].tolist() == [[0, 1, 1, 2], [1, 2, 0, 1]]
    assert arrays.edge_index[:, 6:].tolist() == [[5, 6, 6, 7], [6, 7, 5, 6]]
    assert arrays.edge_attr[:, 0].tolist() == [0, 1, 0, 1, 2, 2, 0, 1, 0, 1]
    assert arrays.x[5:].tolist() == [[6, 0], [6, 0], [8, 1]]


def test_molpcba_reader_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"raw/edge.csv.gz.*raw/graph-label.csv.gz.*nothing is downloaded"):
        load_ogb_graph_arrays(tmp_path, "ogbg-molpcba")
    fake_molpcba(tmp_path, [(1, "", 0), (0, "", 1), (0, "", "")])
    with pytest.raises(ValueError, match=r"task 'task1' \(column 1\) has no labels \(all missing\)"):
        load_ogb_graph_arrays(tmp_path, "ogbg-molpcba")
