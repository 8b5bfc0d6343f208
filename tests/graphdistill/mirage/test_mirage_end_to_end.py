"""End to end through the CLI: distil solubility, train GIN on the distilled file, beat chance."""
import json

import pytest
from conftest import sized

from graphdistill.cli import main
from graphdistill.mirage.distilled import DistilledDataset

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.slow
def test_distill_solubility_then_train_gin_beats_chance(tmp_path, capsys):
    out = tmp_path / "solubility.mirage.pt"
    assert main(["mirage", "distill", "solubility", "--out", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    distilled = DistilledDataset.load(out)
    assert summary["patterns"] == distilled.num_patterns > 0
    # The sweep keeps only sets at least 50x smaller than the 922 training graphs.
    assert summary["compression_ratio"] >= 50
    epochs = sized(6, 40)
    args = ["mirage", "train", str(out), "--model", "gin", "--epochs", str(epochs), "--samples-per-epoch", str(sized(512, 1024))]
    assert main(args + ["--out", str(tmp_path / "gin.pt")]) == 0
    result = json.loads(capsys.readouterr().out)
    # Three classes, macro one-vs-rest ROC-AUC: chance is 0.5. Measured 0.65-0.69 over three seeds
    # (6 epochs) and about 0.75 (40 epochs) on the test molecules; full-data GIN reaches about 0.90.
    assert result["test"]["roc_auc"] > 0.6
    assert (tmp_path / "gin.pt").exists()


def test_compact_bytes_counts_the_training_graphs_as_the_set_counts_itself(tmp_path, capsys):
    from graphdistill.data.graphs import load_graph_dataset
    from graphdistill.mirage.distilled import graphs_nbytes

    out = tmp_path / "solubility.mirage.pt"
    assert main(["mirage", "distill", "solubility", "--compact-bytes", "--out", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    train = load_graph_dataset("solubility").train
    assert summary["original_compact_bytes"] == graphs_nbytes(train, compact=True) == DistilledDataset.load(out).original_compact_nbytes
    assert summary["compact_compression_ratio"] >= 50
    # measured: 62x counted alike is 496x against PyG's int64 tensors (the default sweep's set: 6.3x and 51x)
    assert summary["compression_ratio"] > 6 * summary["compact_compression_ratio"]


def test_graphs_without_edges_distil_and_train(tmp_path, capsys):
    # no graph has an edge (edge_attr [0, 1] each); the label counts one node type, so trees of depth 0 carry it
    import torch

    generator = torch.Generator().manual_seed(0)
    graphs = []
    for _ in range(200):
        x = torch.randint(0, 3, (int(torch.randint(3, 9, (1,), generator=generator)), 2), generator=generator)
        graphs.append({"x": x, "edge_index": torch.zeros(2, 0, dtype=torch.long),
                       "edge_attr": torch.zeros(0, 1, dtype=torch.long), "y": torch.tensor([int((x[:, 0] == 1).sum() >= 3)])})
    source, out = tmp_path / "edgeless.pt", tmp_path / "edgeless.mirage.pt"
    torch.save(graphs, source)
    assert main(["mirage", "distill", "--dataset-file", str(source), "--out", str(out)]) == 0
    capsys.readouterr()
    distilled = DistilledDataset.load(out)
    assert distilled.num_patterns > 0 and distilled.edge_features.shape == (1, 1)
    assert main(["mirage", "train", str(out), "--dataset-file", str(source), "--model", "gin", "--epochs", "3",
                 "--out", str(tmp_path / "gin.pt")]) == 0
    assert json.loads(capsys.readouterr().out)["test"]["roc_auc"] > 0.75  # 0.94 measured; chance 0.5


def test_cli_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        main(["mirage", "train", str(tmp_path / "nope.pt")])
    with pytest.raises(SystemExit):
        main(["mirage", "train", "x.pt", "--model", "mlp"])
    with pytest.raises(ValueError, match="depth must be an integer >= 1"):
        main(["mirage", "distill", "solubility", "--depth", "0", "--out", str(tmp_path / "d.pt")])
