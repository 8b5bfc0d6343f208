"""Nothing lost, nothing mixed up (issue 21, items 3, 6 and 8): resume checks the scene's content and
settings, an existing run is replaced only with --overwrite, a second run into one --out fails while
the first holds it, an unusable --out fails before any work, an edit never overwrites its input, and
PRD's radiance pre-training is one shared stage reused only when its fingerprint matches."""
import json
import os
import shutil
import signal
import subprocess
import sys

import imageio.v3 as iio
import pytest

from distill3d.fields import pipeline as fields_pipeline
from distill3d.fields.config import TrainConfig
from distill3d.fields.pipeline import train_field
from distill3d.inverse.config import PRDConfig
from distill3d.inverse.pipeline import train_prd
from distillcore.runs import RunError, RunLockedError
from conftest import shrunk_scene_copy

VIEWS = 4
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    """Two scenes with the same folder name and different content (one view mirrored)."""
    base = tmp_path_factory.mktemp("scenes")
    a = shrunk_scene_copy(base / "x" / "tiny", VIEWS)
    b = shrunk_scene_copy(base / "y" / "tiny", VIEWS)
    image = iio.imread(b / "train" / "r_001.png")
    iio.imwrite(b / "train" / "r_001.png", image[:, ::-1])
    return a, b


def quick_config(steps=2) -> TrainConfig:
    config = TrainConfig(steps=steps, backend="torch", eval_every=0, checkpoint_every=0)
    config.init.method, config.init.num_points = "random", 64
    config.densify.enabled = False
    return config


def train(scene, out, steps=2, **kwargs):
    return train_field(scene, quick_config(steps), out, progress=False, plain=True, **kwargs)


def cli(*args):
    """``distill3d ARGS`` in a fresh process: (exit code, stderr)."""
    done = subprocess.run([sys.executable, "-m", "distill3d.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=120)
    return done.returncode, done.stderr


@pytest.fixture(scope="module")
def finished(scenes, tmp_path_factory):
    """A finished 2-step run of scene x."""
    out = tmp_path_factory.mktemp("runs") / "x"
    train(scenes[0], out)
    return out


def test_resume_refuses_another_scene_of_the_same_name(scenes, finished):
    a, b = scenes
    before = (finished / "checkpoint.pt").read_bytes()
    with pytest.raises(RunError) as err:
        train(b, finished, steps=3, resume=True)
    message = str(err.value)
    info = json.loads((finished / "run.json").read_text())
    assert f"was trained on scene {a.resolve()} (content hash {info['fingerprint']['scene']['content'][:12]})" in message
    assert f"but the scene given is {b.resolve()}" in message and "use another --out or --overwrite" in message
    assert (finished / "checkpoint.pt").read_bytes() == before
    # the console entry point: one line, exit code 2, before any training
    code, stderr = cli("train", b, "--plain", "--out", finished, "--resume")
    assert code == 2 and stderr.strip().count("\n") == 0 and "content hash" in stderr, stderr
    assert (finished / "checkpoint.pt").read_bytes() == before


def test_a_checkpoint_carries_its_own_fingerprint(scenes, finished, tmp_path):
    out = tmp_path / "y"
    train(scenes[1], out)
    shutil.copy(finished / "checkpoint.pt", out / "checkpoint.pt")  # scene x's checkpoint in scene y's run
    with pytest.raises(ValueError, match=rf"checkpoint.pt was trained on scene {scenes[0].resolve()} \(content hash"):
        train(scenes[1], out, steps=3, resume=True)


def test_existing_run_is_kept_without_overwrite(scenes, tmp_path):
    out = tmp_path / "run"
    train(scenes[0], out)
    ply = (out / "point_cloud.ply").read_bytes()
    with pytest.raises(RunError, match="already holds a finished run .*pass --resume .* --overwrite"):
        train(scenes[1], out)
    assert (out / "point_cloud.ply").read_bytes() == ply
    train(scenes[1], out, overwrite=True)
    info = json.loads((out / "run.json").read_text())
    assert info["status"] == "complete" and info["scene"] == str(scenes[1].resolve())


def test_resume_with_no_more_steps(scenes, finished, caplog):
    with pytest.raises(RunError, match="already at step 2, beyond --steps 1"):
        train(scenes[0], finished, steps=1, resume=True)
    stamp = (finished / "point_cloud.ply").stat().st_mtime_ns
    trainer, metrics = train(scenes[0], finished, steps=2, resume=True)
    assert "already complete at step 2" in caplog.text
    assert trainer.step == 2 and metrics["step"] == 2
    assert (finished / "point_cloud.ply").stat().st_mtime_ns == stamp  # nothing was redone


def test_resume_continues_to_more_steps(scenes, tmp_path):
    out = tmp_path / "run"
    train(scenes[0], out)
    trainer, metrics = train(scenes[0], out, steps=3, resume=True)
    assert trainer.step == 3 and metrics["step"] == 3
    assert json.loads((out / "run.json").read_text())["step"] == 3


HOLDER = """
import sys, time
from distillcore.runs import RunDirectory
RunDirectory(sys.argv[1], fingerprint={}).__enter__()
print("held", flush=True)
time.sleep(120)
"""


def test_second_run_into_one_out_fails_until_the_holder_dies(scenes, tmp_path):
    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunLockedError, match=rf"{out} is in use by pid {holder.pid} on .* \(started "):
            train(scenes[0], out)
    finally:
        os.kill(holder.pid, signal.SIGKILL)  # a crashed run: the OS releases its lock
        holder.wait()
    with pytest.raises(RunError, match="already holds a partial run"):  # what the killed run left
        train(scenes[0], out)
    train(scenes[0], out, overwrite=True)
    assert json.loads((out / "run.json").read_text())["status"] == "complete"


def test_unusable_out_fails_before_any_work(scenes, tmp_path, monkeypatch):
    def no_work(*args, **kwargs):
        raise AssertionError("the scene was loaded before --out was checked")

    monkeypatch.setattr(fields_pipeline, "prepare_scene", no_work)
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.raises(RunError, match="cannot be created: one of its parents is a file"):
        train(scenes[0], blocker / "run")
    if os.geteuid() != 0:  # root writes into read-only folders; the case above covers it there
        locked = tmp_path / "ro"
        locked.mkdir(mode=0o500)
        with pytest.raises(RunError, match="not writable"):
            train(scenes[0], locked / "run")


def test_edit_never_overwrites_its_input(scenes, finished):
    from distill3d.cli import main

    ply = finished / "point_cloud.ply"
    before = ply.read_bytes()
    for out in (ply, finished / "sub" / ".." / "point_cloud.ply"):
        with pytest.raises(RunError, match="is the input file"):
            main(["query", "edit", str(ply), "--scene", str(scenes[0]), "--split", "train", "--action", "delete",
                  "--point", "1", "1", "--out", str(out)])
    assert ply.read_bytes() == before


def prd_config(fallback: bool = True) -> PRDConfig:
    config = PRDConfig()
    config.radiance = quick_config(steps=2)
    for stage in config.stages:
        stage.steps = 1
    config.model.progress = "learned" if fallback else "one"
    return config


def test_prd_radiance_pretraining_is_shared_when_its_fingerprint_matches(scenes, tmp_path):
    runs = tmp_path / "runs"
    train_prd(scenes[0], prd_config(True), runs / "a", downsample=2, progress=False)
    first = json.loads((runs / "a" / "run.json").read_text())["radiance"]
    entry = runs / "radiance_cache" / first["dir"].rsplit("/", 1)[-1]
    assert first["reused"] is False and (entry / "checkpoint.pt").is_file()
    stamp = (entry / "checkpoint.pt").stat().st_mtime_ns

    train_prd(scenes[0], prd_config(False), runs / "b", downsample=2, progress=False)  # run (b): no fallback
    second = json.loads((runs / "b" / "run.json").read_text())["radiance"]
    assert second == {"dir": first["dir"], "reused": True}
    assert (entry / "checkpoint.pt").stat().st_mtime_ns == stamp  # not retrained, not rewritten

    train_prd(scenes[0], prd_config(True), runs / "c", downsample=1, progress=False)
    third = json.loads((runs / "c" / "run.json").read_text())["radiance"]
    assert third["reused"] is False and third["dir"] != first["dir"]
    assert len(list((runs / "radiance_cache").iterdir())) == 2

    with pytest.raises(RunError, match="already holds a finished run"):
        train_prd(scenes[0], prd_config(True), runs / "a", downsample=1, progress=False)


def test_graph_run_is_kept_and_a_finished_one_is_not_redone(tmp_path, capsys):
    from graphdistill.cli import main

    out = tmp_path / "vq"
    argv = ["vqgraph", "train", "--dataset", "karate", "--students", "mlp", "--teacher-train.epochs", "2",
            "--student-train.epochs", "2", "--teacher.hidden-dim", "8", "--teacher.code-dim", "4", "--codebook-size", "4",
            "--no-teacher.kmeans-init", "--train-per-class", "1", "--val-per-class", "1", "--out", str(out),
            "--no-progress"]
    assert main(argv) == 0
    student = (out / "student.pt").read_bytes()
    with pytest.raises(RunError, match="already holds a finished run"):
        main(argv)
    capsys.readouterr()
    assert main(argv + ["--resume"]) == 0
    assert "already complete" in capsys.readouterr().out
    assert (out / "student.pt").read_bytes() == student
    with pytest.raises(RunError, match="was trained with seed=0 but this run has seed=1"):
        main(argv + ["--resume", "--seed", "1"])
