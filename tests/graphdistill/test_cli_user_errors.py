"""User mistakes at the `graphdistill` command line end in one clear line and exit code 2, never in a
traceback or a silently overwritten input; the offline karate set trains with its defaults."""
import json
import sys

import numpy as np
import pytest
import torch

from graphdistill.cli import console_main, main
from graphdistill.vqgraph import MLPStudent
from graphdistill.vqgraph.config import SplitConfig, StudentConfig
from graphdistill.vqgraph.splits import random_class_split

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def run_console(monkeypatch, capsys, *argv: str) -> tuple[int, str]:
    """Runs the ``graphdistill`` console script as a user would; returns (exit code, stderr)."""
    monkeypatch.setattr(sys, "argv", ["graphdistill", *map(str, argv)])
    monkeypatch.delenv("DISTILLKIT_DEBUG", raising=False)
    code = console_main()
    return code, capsys.readouterr().err


@pytest.fixture
def student_file(tmp_path):
    """A saved 6-feature, 3-class MLP student."""
    path = tmp_path / "s.pt"
    MLPStudent(6, 3, StudentConfig(hidden_dim=8)).save(path)
    return path


def one_error_line(stderr: str, *needles: str) -> None:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


# ---------------------------------------------------------------- 1. an output never overwrites an input
def test_export_refuses_to_overwrite_the_student(monkeypatch, capsys, student_file, tmp_path):
    before = student_file.read_bytes()
    code, err = run_console(monkeypatch, capsys, "vqgraph", "export", "--student", student_file, "--out", student_file)
    assert code == 2
    one_error_line(err, "--out", "is the input file")
    (tmp_path / "link.ts").symlink_to(student_file)  # the same file under another name
    code, err = run_console(monkeypatch, capsys, "vqgraph", "export", "--student", student_file,
                            "--out", tmp_path / "link.ts")
    assert code == 2 and "is the input file" in err
    assert student_file.read_bytes() == before
    MLPStudent.load(student_file)  # still a loadable student


def test_predict_refuses_to_overwrite_its_inputs(monkeypatch, capsys, student_file, tmp_path):
    features = tmp_path / "x.npy"
    np.save(features, np.random.default_rng(0).standard_normal((5, 6)).astype(np.float32))
    inputs = {path: path.read_bytes() for path in (features, student_file)}
    for out in (features, student_file, tmp_path / "sub" / ".." / "x.npy"):
        code, err = run_console(monkeypatch, capsys, "predict", "--student", student_file, "--features", features,
                                "--out", out)
        assert code == 2
        one_error_line(err, "--out", "is the input file")
    assert all(path.read_bytes() == data for path, data in inputs.items())


@pytest.mark.parametrize("name", ["pred.npy", "pred.csv"])
def test_predict_writes_atomically(monkeypatch, capsys, student_file, tmp_path, name):
    """A write that fails halfway (disk full) leaves the previous predictions whole and no temporary file."""
    features = tmp_path / "x.npy"
    x = np.random.default_rng(0).standard_normal((5, 6)).astype(np.float32)
    np.save(features, x)
    out = tmp_path / name
    assert main(["predict", "--student", str(student_file), "--features", str(features), "--out", str(out)]) == 0
    previous = out.read_bytes()
    expected, _ = MLPStudent.load(student_file).predict(torch.as_tensor(x))
    written = np.load(out) if name.endswith(".npy") else np.loadtxt(out, delimiter=",", skiprows=1)[:, 1]
    assert (written == expected.numpy()).all()

    def fail_halfway(target, *args, **kwargs):
        if hasattr(target, "write"):
            target.write(b"half a file")
        else:
            with open(target, "wb") as handle:
                handle.write(b"half a file")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "save", fail_halfway)
    monkeypatch.setattr(np, "savetxt", fail_halfway)
    with pytest.raises(OSError, match="No space left"):
        main(["predict", "--student", str(student_file), "--features", str(features), "--out", str(out)])
    assert out.read_bytes() == previous
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["s.pt", "x.npy", name])


# ---------------------------------------------------------------- 2. feature files that are not a matrix
@pytest.mark.parametrize("name, content, holds", [
    ("dict.pt", {"x": torch.zeros(5, 6)}, "a dict"),
    ("strings.npy", np.array([["a", "b"], ["c", "d"]]), "<U1"),
    ("vector.pt", torch.zeros(5), "1-D"),
    ("complex.npy", np.zeros((5, 6), dtype=np.complex64), "complex64"),
    ("words.csv", "1,2,x\n3,4,5\n", "not numbers"),
    ("empty.csv", "", "no values"),
])
def test_predict_names_a_feature_file_that_is_not_a_numeric_matrix(monkeypatch, capsys, student_file, tmp_path,
                                                                     name, content, holds):
    path = tmp_path / name
    if name.endswith(".pt"):
        torch.save(content, path)
    elif name.endswith(".npy"):
        np.save(path, content)
    else:
        path.write_text(content)
    code, err = run_console(monkeypatch, capsys, "predict", "--student", student_file, "--features", path)
    assert code == 2
    one_error_line(err, str(path), holds, "numeric 2-D array")


def test_predict_reads_features_of_any_real_torch_dtype(monkeypatch, capsys, student_file, tmp_path):
    """bfloat16 / float16 / int tensors in a .pt read as float32 (numpy has no bfloat16), complex is refused."""
    features = torch.randn(5, 6)
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        path = tmp_path / f"x_{dtype}.pt".replace("torch.", "")
        torch.save(features.to(dtype), path)
        out = tmp_path / f"pred_{path.stem}.npy"
        code, err = run_console(monkeypatch, capsys, "predict", "--student", student_file, "--features", path,
                                "--out", out)
        assert code == 0, err
        assert np.load(out).shape == (5,)
    torch.save(features.to(torch.complex64), tmp_path / "c.pt")
    code, err = run_console(monkeypatch, capsys, "predict", "--student", student_file, "--features", tmp_path / "c.pt")
    assert code == 2
    one_error_line(err, "complex64", "numeric 2-D array")


# ---------------------------------------------------------------- 3. karate's defaults fit its classes
KARATE_CLASS_SIZES = [13, 12, 4, 5]  # PyG's KarateClub labels


def karate_like_labels(sizes=KARATE_CLASS_SIZES) -> torch.Tensor:
    return torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))


def test_split_error_names_the_flag_and_the_largest_count_that_fits():
    y, generator = karate_like_labels(), torch.Generator().manual_seed(0)
    # class 2 (4 nodes) keeps one test node: train + val <= 3
    with pytest.raises(ValueError, match=r"class 2 has 4 nodes.*lower --train-per-class \(split.train_per_class\) "
                                         r"to 1 or --val-per-class \(split.val_per_class\) to 1"):
        random_class_split(y, 4, SplitConfig(train_per_class=2, val_per_class=2), generator)
    with pytest.raises(ValueError, match=r"lower --val-per-class \(split.val_per_class\) to 2$"):
        random_class_split(y, 4, SplitConfig(train_per_class=1, val_per_class=3), generator)
    # neither flag alone can fit: the sum is named, with a pair that fits
    with pytest.raises(ValueError, match=r"class 2 has 4 nodes.* = 51.*--train-per-class \+ --val-per-class to at most "
                                         r"3, e\.g\. --train-per-class 1 --val-per-class 2"):
        random_class_split(y, 4, SplitConfig(), generator)
    with pytest.raises(ValueError, match="class 1 has 2 nodes.*at least 3"):
        random_class_split(karate_like_labels([5, 2, 6]), 3, SplitConfig(1, 1), generator)
    train, val, test = random_class_split(y, 4, SplitConfig(train_per_class=1, val_per_class=2), generator)
    assert (torch.bincount(y[train]).tolist(), torch.bincount(y[val]).tolist()) == ([1] * 4, [2] * 4)
    assert sorted(torch.cat([train, val, test]).tolist()) == list(range(34))


def small_training(tmp_path) -> str:
    config = {"teacher": {"hidden_dim": 16, "code_dim": 8, "codebook_size": 8, "kmeans_init": False},
              "student": {"hidden_dim": 16}, "teacher_train": {"epochs": 5}, "student_train": {"epochs": 5}}
    (tmp_path / "small.json").write_text(json.dumps(config))
    return str(tmp_path / "small.json")


def test_karate_trains_with_its_default_split(tmp_path, capsys):
    """No split flag: karate's own per-class counts (one labelled node per class, as PyG's KarateClub
    documents, plus one for validation) replace SplitConfig's 20 + 30, which its 4-node class cannot give."""
    out = tmp_path / "run"
    assert main(["vqgraph", "train", "--dataset", "karate", "--config", small_training(tmp_path), "--students", "mlp",
                 "--out", str(out), "--no-progress"]) == 0
    split = json.loads((out / "config.json").read_text())["split"]
    assert (split["train_per_class"], split["val_per_class"]) == (1, 1)
    # a flag the user gives wins, the other count keeps karate's default: 2 + 1 + one test node fit class 2
    out2 = tmp_path / "run2"
    assert main(["vqgraph", "train", "--dataset", "karate", "--config", small_training(tmp_path), "--students", "mlp",
                 "--train-per-class", "2", "--out", str(out2), "--no-progress"]) == 0
    split = json.loads((out2 / "config.json").read_text())["split"]
    assert (split["train_per_class"], split["val_per_class"]) == (2, 1)


def test_karate_count_that_does_not_fit_names_the_flag(monkeypatch, capsys, tmp_path):
    code, err = run_console(monkeypatch, capsys, "vqgraph", "train", "--dataset", "karate", "--train-per-class", "2",
                            "--val-per-class", "2", "--out", tmp_path / "run", "--no-progress")
    assert code == 2
    one_error_line(err, "class 2 has 4 nodes", "--train-per-class (split.train_per_class) to 1",
                   "--val-per-class (split.val_per_class) to 1")


# ---------------------------------------------------------------- 4. a data set that needs --root says so
def test_missing_root_names_the_flag(monkeypatch, capsys, tmp_path):
    code, err = run_console(monkeypatch, capsys, "vqgraph", "train", "--dataset", "cora", "--out", tmp_path / "run",
                            "--no-progress")
    assert code == 2
    one_error_line(err, "'cora'", "pass --root <folder", "(Python: root=")
    code, err = run_console(monkeypatch, capsys, "mirage", "distill", "tu:MUTAG", "--out", tmp_path / "m.pt")
    assert code == 2
    one_error_line(err, "'tu:MUTAG'", "pass --root <folder", "(Python: root=")
