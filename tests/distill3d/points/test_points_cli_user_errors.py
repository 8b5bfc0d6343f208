"""`distill3d points` on a user's mistakes: outputs that would overwrite inputs, a data set replaced
without --overwrite, classes the labels never mention, a teacher of other classes. Each is one
``distill3d: error:`` line and exit code 2 from the console script, before any work, with the inputs
left as they were."""
import json

import pytest
import torch

import distill3d.points.cli as points_cli
from distill3d.cli import main as cli_main
from distill3d.points.simulate import SimulationConfig
from distill3d.points.train import build_detector, save_checkpoint
from distillcore.cli import console

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SIM_CLASSES = SimulationConfig().class_names  # ("Duck", "Teddy")
TINY = ["--sim.lidar.num-beams", "16", "--no-progress"]  # a small scan: these tests are about the CLI, not the data


def run_console(argv, capsys) -> tuple[int, list[str]]:
    """Exit code and stderr lines of the `distill3d` console script on ``argv``."""
    capsys.readouterr()
    code = console("distill3d", lambda _: cli_main(argv))
    return code, capsys.readouterr().err.strip().splitlines()


def label_types(root, split: str) -> set[str]:
    """Label types of the frames of ``split``, read straight from the files (the reference)."""
    frames = (root / "ImageSets" / f"{split}.txt").read_text().split()
    labels = root / "training" / "label_2"
    return {line.split()[0] for f in frames for line in (labels / f"{f}.txt").read_text().splitlines()}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("points") / "sim"
    assert cli_main(["points", "simulate", "--out", str(root), "--train", "2", "--val", "2", *TINY]) == 0
    assert label_types(root, "train") == label_types(root, "val") == set(SIM_CLASSES)  # both classes in both splits
    return root


def checkpoint(path, classes=SIM_CLASSES):
    """An untrained pillars detector saved for ``classes`` (what `points train` writes, without the training)."""
    torch.manual_seed(0)
    save_checkpoint(path, build_detector("pillars", len(classes), 0.25), {"class_names": tuple(classes)})
    return path


# ----------------------------------------------------------------------------- outputs over inputs
@pytest.mark.parametrize("spelling", ["same", "dotted", "link"])
def test_eval_json_over_its_checkpoint_is_refused(data, tmp_path, capsys, spelling):
    ckpt = checkpoint(tmp_path / "t.pt")
    before = ckpt.read_bytes()
    json_out = {"same": ckpt, "dotted": tmp_path / "sub" / ".." / "t.pt", "link": tmp_path / "link.pt"}[spelling]
    if spelling == "link":
        json_out.symlink_to(ckpt)
    code, err = run_console(["points", "eval", "--data", str(data), "--checkpoint", str(ckpt), "--json", str(json_out)],
                            capsys)
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith("distill3d: error: --json") and "input file" in err[0]
    assert ckpt.read_bytes() == before


def test_eval_json_over_its_config_is_refused(data, tmp_path, capsys):
    config = tmp_path / "eval.json"
    config.write_text(json.dumps({"split": "val"}))
    code, err = run_console(["points", "eval", "--data", str(data), "--checkpoint", str(checkpoint(tmp_path / "t.pt")),
                             "--config", str(config), "--json", str(config)], capsys)
    assert code == 2 and len(err) == 1 and "--json" in err[0], err
    assert json.loads(config.read_text()) == {"split": "val"}


@pytest.mark.parametrize("where", ["under_a_file", "a_folder"])
def test_eval_json_destination_is_checked_before_evaluating(data, tmp_path, capsys, monkeypatch, where):
    blocker = tmp_path / "blocker"
    if where == "under_a_file":
        blocker.write_text("a file, not a folder")
        json_out = blocker / "r.json"
    else:
        blocker.mkdir()
        json_out = blocker

    def no_evaluation(*args, **kwargs):
        raise AssertionError("evaluated before checking --json")

    monkeypatch.setattr(points_cli, "evaluate_detector", no_evaluation)
    code, err = run_console(["points", "eval", "--data", str(data), "--checkpoint", str(checkpoint(tmp_path / "t.pt")),
                             "--json", str(json_out)], capsys)
    assert code == 2 and len(err) == 1 and "--json" in err[0] and str(blocker) in err[0], err
    assert (blocker.read_text() == "a file, not a folder") if where == "under_a_file" else not any(blocker.iterdir())


@pytest.mark.parametrize("command", ["train", "distill"])
def test_checkpoint_over_its_config_is_refused_even_with_overwrite(data, tmp_path, capsys, command):
    config = tmp_path / "run.json"
    config.write_text(json.dumps({"steps": 2}))
    extra = ["--model", "pillars"] if command == "train" else ["--teacher", str(checkpoint(tmp_path / "t.pt"))]
    code, err = run_console(["points", command, "--data", str(data), *extra, "--config", str(config),
                             "--out", str(config), "--overwrite", "--no-progress"], capsys)
    assert code == 2 and len(err) == 1 and "--out" in err[0] and "input file" in err[0], err
    assert json.loads(config.read_text()) == {"steps": 2}


# ----------------------------------------------------------------------------- simulate into an existing set
def frames(root) -> dict[str, list[str]]:
    """Frame ids on disk per folder of ``training/`` and per split of ``ImageSets/``."""
    out = {sub: sorted(p.stem for p in (root / "training" / sub).iterdir()) for sub in ("velodyne", "label_2", "calib")}
    out.update({p.stem: p.read_text().split() for p in (root / "ImageSets").iterdir()})
    return out


def test_simulate_refuses_an_existing_data_set_and_replaces_it_cleanly_with_overwrite(tmp_path, capsys):
    root = tmp_path / "sim"
    assert cli_main(["points", "simulate", "--out", str(root), "--train", "3", "--val", "1", *TINY]) == 0
    (root / "notes.txt").write_text("the user's own file")
    old = frames(root)
    assert old["velodyne"] == ["train_000000", "train_000001", "train_000002", "val_000000"]
    smaller = ["points", "simulate", "--out", str(root), "--train", "1", "--val", "1", "--seed", "7", *TINY]

    code, err = run_console(smaller, capsys)
    assert code == 2 and len(err) == 1 and "--overwrite" in err[0] and str(root) in err[0], err
    assert frames(root) == old

    assert cli_main([*smaller, "--overwrite"]) == 0
    # no stale scans of the old set: every folder holds exactly the new splits' frames
    new = frames(root)
    assert new["train"] == ["train_000000"] and new["val"] == ["val_000000"] and set(new) == {
        "velodyne", "label_2", "calib", "train", "val"}
    for sub in ("velodyne", "label_2", "calib"):
        assert new[sub] == ["train_000000", "val_000000"]
    assert (root / "notes.txt").read_text() == "the user's own file"  # --overwrite replaces the set, nothing else


def test_simulate_writes_into_an_empty_or_unrelated_folder(tmp_path):
    root = tmp_path / "existing"
    root.mkdir()
    (root / "README").write_text("kept")
    assert cli_main(["points", "simulate", "--out", str(root), "--train", "1", "--val", "0", *TINY]) == 0
    assert frames(root)["train"] == ["train_000000"] and (root / "README").read_text() == "kept"


def test_simulate_out_as_a_file_is_one_line_before_simulating(tmp_path, capsys, monkeypatch):
    target = tmp_path / "scans.bin"
    target.write_bytes(b"user data")

    def no_simulation(*args, **kwargs):
        raise AssertionError("simulated before checking --out")

    monkeypatch.setattr(points_cli, "simulate_dataset", no_simulation)
    code, err = run_console(["points", "simulate", "--out", str(target), "--train", "1", "--val", "0", *TINY], capsys)
    assert code == 2 and len(err) == 1 and str(target) in err[0] and "not a folder" in err[0], err
    assert target.read_bytes() == b"user data"


# ----------------------------------------------------------------------------- classes the labels never mention
@pytest.mark.parametrize("command", ["train", "distill"])
def test_training_on_an_unlabelled_class_is_refused(data, tmp_path, capsys, command):
    teacher = ["--teacher", str(checkpoint(tmp_path / "t.pt", ("Duck", "Car")))] if command == "distill" else []
    extra = ["--model", "pillars"] if command == "train" else teacher
    out = tmp_path / "out.pt"
    code, err = run_console(["points", command, "--data", str(data), *extra, "--classes", "Duck", "Car",
                             "--steps", "2", "--batch-size", "2", "--no-progress", "--out", str(out)], capsys)
    assert code == 2 and len(err) == 1, err
    assert "Car" in err[0] and "'train'" in err[0] and "Duck" in err[0] and "Teddy" in err[0]
    assert not out.exists() and not (tmp_path / "out.pt.run.json").exists()


def test_evaluating_an_unlabelled_class_is_refused(data, tmp_path, capsys):
    ckpt = checkpoint(tmp_path / "t.pt", ("Car",))
    code, err = run_console(["points", "eval", "--data", str(data), "--checkpoint", str(ckpt),
                             "--classes", "Car", "--json", str(tmp_path / "r.json")], capsys)
    assert code == 2 and len(err) == 1, err
    assert "Car" in err[0] and "'val'" in err[0] and "Duck" in err[0] and "Teddy" in err[0]
    assert not (tmp_path / "r.json").exists()


def test_a_labelled_class_alone_evaluates_to_finite_scores(data, tmp_path):
    """The check refuses only absent classes: one class of the two evaluates, with numbers, not NaN."""
    out = tmp_path / "r.json"
    ckpt = checkpoint(tmp_path / "t.pt", ("Teddy",))
    assert cli_main(["points", "eval", "--data", str(data), "--checkpoint", str(ckpt),
                     "--classes", "Teddy", "--json", str(out)]) == 0
    results = json.loads(out.read_text())
    teddy = {k: v for k, v in results.items() if "Teddy" in k}
    assert teddy and all(v is not None and 0.0 <= v <= 100.0 for v in teddy.values())  # NaN is written as null


def test_evaluating_a_checkpoint_with_other_classes_is_refused(data, tmp_path, capsys):
    """A two-class detector scored as Teddy alone would score its Duck head as Teddy."""
    ckpt = checkpoint(tmp_path / "t.pt")
    code, err = run_console(["points", "eval", "--data", str(data), "--checkpoint", str(ckpt), "--classes", "Teddy"],
                            capsys)
    assert code == 2 and len(err) == 1, err
    assert "trained on classes ('Duck', 'Teddy'), not --classes ('Teddy',)" in err[0]


# ----------------------------------------------------------------------------- a teacher of other classes
def test_distill_from_a_teacher_of_other_classes_is_the_usual_error(data, tmp_path, capsys):
    teacher = checkpoint(tmp_path / "t.pt", ("Duck",))
    out = tmp_path / "s.pt"
    code, err = run_console(["points", "distill", "--data", str(data), "--teacher", str(teacher), "--steps", "2",
                             "--batch-size", "2", "--no-progress", "--out", str(out)], capsys)
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith("distill3d: error:") and "Duck" in err[0] and "Teddy" in err[0] and str(teacher) in err[0]
    assert not out.exists() and not (tmp_path / "s.pt.run.json").exists()


def test_label_counts_match_the_files(tmp_path):
    """KittiDataset.label_counts against a hand-written set: every type counted whatever --classes is,
    DontCare left out, a missing label file an error unless allow_missing_calib."""
    from distill3d.points.kitti import KittiDataset

    fields = " 0.00 0 0.00 0 0 10 10 1.5 1.6 3.9 0 1.7 10 0.0\n"
    (tmp_path / "training" / "velodyne").mkdir(parents=True)
    (tmp_path / "training" / "label_2").mkdir()
    for frame in ("a", "b", "c"):
        (tmp_path / "training" / "velodyne" / f"{frame}.bin").write_bytes(b"")
    (tmp_path / "training" / "label_2" / "a.txt").write_text("Car" + fields + "DontCare" + fields + "Van" + fields)
    (tmp_path / "training" / "label_2" / "b.txt").write_text("Car" + fields + "\n")
    assert KittiDataset(tmp_path, ("Pedestrian",), allow_missing_calib=True).label_counts() == {"Car": 2, "Van": 1}
    with pytest.raises(FileNotFoundError, match="c.txt"):
        KittiDataset(tmp_path, ("Car",)).label_counts()
