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


def test_cli_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        main(["mirage", "train", str(tmp_path / "nope.pt")])
    with pytest.raises(SystemExit):
        main(["mirage", "train", "x.pt", "--model", "mlp"])
    with pytest.raises(ValueError, match="depth must be an integer >= 1"):
        main(["mirage", "distill", "solubility", "--depth", "0", "--out", str(tmp_path / "d.pt")])
