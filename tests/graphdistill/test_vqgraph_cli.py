"""`graphdistill vqgraph train|export` and `graphdistill predict` end to end on the karate club graph."""
import json

import numpy as np
import pytest
import torch

from graphdistill.cli import main
from graphdistill.datasets import karate_club
from graphdistill.vqgraph import MLPStudent

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_train_export_predict_round_trip(tmp_path, capsys):
    config = {
        "teacher": {"hidden_dim": 16, "code_dim": 8, "codebook_size": 8, "kmeans_init": False},
        "student": {"hidden_dim": 16},
        "teacher_train": {"epochs": 15, "checkpoint_every": 5},
        "student_train": {"epochs": 15},
        "split": {"train_per_class": 1, "val_per_class": 1},
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    out = tmp_path / "run"
    assert main(["vqgraph", "train", "--dataset", "karate", "--setting", "inductive", "--config",
                 str(tmp_path / "config.json"), "--out", str(out), "--no-progress"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["accuracy"]) == {"teacher", "mlp", "glnn", "vqgraph"}
    assert "production" in metrics["accuracy"]["vqgraph"] and metrics["codebook"]["codes_used"] >= 1
    assert not list((out / "checkpoints").glob("*.ckpt"))  # removed once training finished

    features = karate_club().x.numpy()
    np.save(tmp_path / "x.npy", features)
    assert main(["predict", "--student", str(out / "student.pt"), "--features", str(tmp_path / "x.npy"),
                 "--out", str(tmp_path / "pred.npy"), "--batch-size", "5"]) == 0
    predicted = np.load(tmp_path / "pred.npy")
    expected, _ = MLPStudent.load(out / "student.pt").predict(torch.as_tensor(features))
    assert (predicted == expected.numpy()).all()
    np.savetxt(tmp_path / "x.csv", features, delimiter=",")
    assert main(["predict", "--student", str(out / "student.pt"), "--features", str(tmp_path / "x.csv"),
                 "--out", str(tmp_path / "pred.csv")]) == 0
    table = np.loadtxt(tmp_path / "pred.csv", delimiter=",", skiprows=1)
    assert (table[:, 1] == predicted).all() and np.allclose(table[:, 2:].sum(1), 1, atol=1e-4)

    assert main(["vqgraph", "export", "--student", str(out / "student.pt"), "--out", str(tmp_path / "s.ts")]) == 0
    scripted = torch.jit.load(str(tmp_path / "s.ts"))
    assert (scripted(torch.as_tensor(features)).argmax(-1).numpy() == predicted).all()

    np.save(tmp_path / "narrow.npy", features[:, :10])
    with pytest.raises(ValueError, match="10 columns but the student was trained on 34"):
        main(["predict", "--student", str(out / "student.pt"), "--features", str(tmp_path / "narrow.npy")])
