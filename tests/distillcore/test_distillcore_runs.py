"""distillcore.runs: scene content hashes, fingerprints, and the rules of a run folder (lock, existing
runs, resume, overwrite, writability, temporary files)."""
import json
import os
import shutil
import subprocess
import sys
import time

import pytest

from distillcore.runs import (HashConfig, RunDirectory, RunError, RunLockedError, check_output_is_not_input,
                              check_writable, describe_mismatch, fingerprint_key, is_temporary, run_fingerprint,
                              scene_content_hash)


@pytest.fixture
def scene(tmp_path):
    root = tmp_path / "scenes" / "a"
    (root / "train").mkdir(parents=True)
    (root / "transforms_train.json").write_text('{"frames": []}')
    for i in range(3):
        (root / "train" / f"r_{i}.png").write_bytes(bytes([i]) * 1000)
    return root


def test_content_hash_follows_bytes_not_names_or_times(scene, tmp_path):
    reference = scene_content_hash(scene)
    copy = tmp_path / "elsewhere" / "b"
    shutil.copytree(scene, copy)
    os.utime(copy / "train" / "r_0.png", (1, 1))
    assert scene_content_hash(copy) == reference  # a copied (or touched) scene is the same input
    (copy / ".DS_Store").write_text("x")  # hidden files and run folders inside the scene do not count
    (copy / "outputs").mkdir()
    (copy / "outputs" / "run.json").write_text("{}")
    (copy / "outputs" / "point_cloud.ply").write_text("ply")
    assert scene_content_hash(copy) == reference
    data = bytearray((copy / "train" / "r_1.png").read_bytes())
    data[500] ^= 1  # one bit of one image, same size and name
    (copy / "train" / "r_1.png").write_bytes(bytes(data))
    assert scene_content_hash(copy) != reference
    (copy / "train" / "r_1.png").rename(copy / "train" / "r_9.png")
    assert scene_content_hash(copy) not in (reference,)


def test_large_files_are_sampled_at_start_middle_and_end(tmp_path):
    root = tmp_path / "big"
    root.mkdir()
    blob = bytearray(range(256)) * 40  # 10240 bytes
    (root / "photo.jpg").write_bytes(bytes(blob))
    cfg = HashConfig(full_bytes=1024, sample_bytes=16)
    reference = scene_content_hash(root, cfg)
    for offset, changes in ((0, True), (5120, True), (10239, True), (3000, False)):
        edited = bytearray(blob)
        edited[offset] ^= 0xFF
        (root / "photo.jpg").write_bytes(bytes(edited))
        assert (scene_content_hash(root, cfg) != reference) == changes, offset
    (root / "photo.jpg").write_bytes(bytes(blob) + b"\0")  # a size change always counts
    assert scene_content_hash(root, cfg) != reference


def test_fingerprint_differences_are_named(scene, tmp_path):
    other = tmp_path / "c" / "a"
    shutil.copytree(scene, other)
    (other / "train" / "r_0.png").write_bytes(b"different")
    config = {"steps": 10, "loss": {"feature_weight": 1.0}, "eval_every": 5, "device": "cpu"}
    a = run_fingerprint(scene=scene, config=config, teacher="t")
    assert "eval_every" not in a["config"] and "device" not in a["config"]  # they do not change results
    # a progress bar switch is volatile, a model setting of that name (PRD's progress map) is not
    model = run_fingerprint(config={"progress": True, "model": {"progress": "learned"}})
    assert model["config"] == {"model": {"progress": "learned"}}
    assert "config.model.progress" in describe_mismatch(model, run_fingerprint(config={"model": {"progress": "one"}}))
    assert describe_mismatch(a, run_fingerprint(scene=scene, config={**config, "eval_every": 1, "device": "cuda"},
                                                teacher="t")) is None
    b = run_fingerprint(scene=other, config=config, teacher="t")
    message = describe_mismatch(a, b)
    assert str(scene) in message and str(other) in message
    assert a["scene"]["content"][:12] in message and b["scene"]["content"][:12] in message
    c = run_fingerprint(scene=scene, config={**config, "loss": {"feature_weight": 0.5}}, teacher="t")
    assert describe_mismatch(a, c) == ("was trained with config.loss.feature_weight=1.0 but this run has "
                                       "config.loss.feature_weight=0.5")
    longer = run_fingerprint(scene=scene, config={**config, "steps": 20}, teacher="t")
    assert "config.steps" in describe_mismatch(a, longer)
    assert describe_mismatch(a, longer, ignore=("config.steps",)) is None
    assert "teacher" in describe_mismatch(a, run_fingerprint(scene=scene, config=config, teacher="u"))
    # another command's run (a graph student's inputs against a field's): said as such, not as one field
    graph = run_fingerprint(config={"hidden": 64, "lr": 0.01, "codebook": {"size": 512}}, dataset="karate", setting="tran")
    assert describe_mismatch(a, graph) == (
        "holds the run of another command (its inputs: config.loss, config.steps, scene, teacher; this command's: "
        "config.codebook, config.hidden, config.lr, dataset, setting)")
    # the cache key ignores where the scene lies, not what it holds
    moved = run_fingerprint(scene=shutil.copytree(scene, tmp_path / "moved"), config=config, teacher="t")
    assert fingerprint_key(moved) == fingerprint_key(a) != fingerprint_key(b)


def test_existing_run_needs_resume_or_overwrite(scene, tmp_path):
    out = tmp_path / "run"
    fp = run_fingerprint(scene=scene, config={"steps": 3})
    with RunDirectory(out, fingerprint=fp, outputs=("result.txt",)) as run:
        assert not run.existing
        assert json.loads((out / "run.json").read_text())["status"] == "running"
        (out / "checkpoint.pt").write_text("weights")
        (out / "result.txt").write_text("result")
        run.complete(step=3)
    (out / "notes.md").write_text("the user's own file")
    info = json.loads((out / "run.json").read_text())
    assert info["status"] == "complete" and info["step"] == 3 and info["fingerprint"] == fp

    with pytest.raises(RunError, match="already holds a finished run .*--resume .*--overwrite"):
        RunDirectory(out, fingerprint=fp).__enter__()
    assert (out / "result.txt").read_text() == "result"
    with RunDirectory(out, fingerprint=fp, resume=True) as run:
        assert run.resumed and run.previous["status"] == "complete"
    other = run_fingerprint(scene=scene, config={"steps": 3, "lr": 0.1})
    with pytest.raises(RunError, match=r"checkpoint.pt was trained with config.lr=.*use another --out or --overwrite"):
        RunDirectory(out, fingerprint=other, resume=True).__enter__()
    # the message names a file that is there (another command's first marker may not be)
    with pytest.raises(RunError, match=r"run/checkpoint.pt was trained with config.lr="):
        RunDirectory(out, fingerprint=other, resume=True, markers=("student.pt", "checkpoint.pt")).__enter__()
    with RunDirectory(out, fingerprint=other, overwrite=True, outputs=("result.txt",)) as run:
        assert run.existing and not run.resumed
        assert not (out / "checkpoint.pt").exists() and not (out / "result.txt").exists()
    assert (out / "notes.md").read_text() == "the user's own file"  # overwrite removes only the run's files
    with pytest.raises(RunError, match="contradict"):
        RunDirectory(out, fingerprint=fp, resume=True, overwrite=True)


def test_a_run_that_failed_before_writing_anything_leaves_no_run(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(ValueError, match="bad teacher"):
        with RunDirectory(out, fingerprint={"a": 1}):
            raise ValueError("bad teacher")
    assert not (out / "run.json").exists()
    with pytest.raises(KeyboardInterrupt):
        with RunDirectory(out, fingerprint={"a": 1}):  # the corrected command needs no --overwrite
            (out / "checkpoint.pt").write_text("step 100")
            raise KeyboardInterrupt
    assert json.loads((out / "run.json").read_text())["status"] == "running"  # a partial run to resume
    with pytest.raises(RunError, match="already holds a partial run"):
        RunDirectory(out, fingerprint={"a": 1}).__enter__()


def test_second_holder_of_a_folder_is_refused_and_the_lock_is_released(tmp_path):
    out = tmp_path / "run"
    with RunDirectory(out, fingerprint={}):
        with pytest.raises(RunLockedError, match=rf"in use by pid {os.getpid()} on .*\(started .*\)"):
            RunDirectory(out, fingerprint={}, resume=True).__enter__()
    with RunDirectory(out, fingerprint={}, resume=True) as run:  # released when the first one ended
        assert run.existing


FLOCK_HOLDER = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX)
print("held", flush=True)
time.sleep(float(sys.argv[2]))
"""


def test_a_shared_stage_waits_for_its_producer(tmp_path):
    """Another process holds the stage's lock: a plain run fails at once, a waiting one (PRD's shared
    radiance pre-training) proceeds once the holder is gone."""
    out = tmp_path / "stage"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", FLOCK_HOLDER, str(out / ".lock"), "1.0"], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunLockedError, match="is in use by"):
            RunDirectory(out, fingerprint={}).__enter__()
        started = time.perf_counter()
        with RunDirectory(out, fingerprint={}, wait=True):
            assert holder.poll() is not None  # acquired only after the holder exited
        assert time.perf_counter() - started > 0.2
    finally:
        holder.kill()
        holder.wait()


def test_temporary_files_of_a_killed_run_are_removed(tmp_path):
    out = tmp_path / "run"
    (out / "checkpoints").mkdir(parents=True)
    stale = [out / ".checkpoint.4242-a1b2c3d4.tmp.pt", out / "checkpoints" / "teacher.ckpt.tmp",
             out / ".point_cloud.ply.tmp", out / ".checkpoint.pt.tmp4242"]
    kept = [out / "notes.tmp.txt", out / "template.tmpl", out / "checkpoints" / "teacher.ckpt"]
    for path in stale + kept:
        path.write_text("x")
    assert all(is_temporary(p.name) for p in stale) and not any(is_temporary(p.name) for p in kept)
    with RunDirectory(out, fingerprint={}, overwrite=True, markers=()):
        assert not any(p.exists() for p in stale) and all(p.exists() for p in kept)
        (out / ".metrics.99-ffffffff.tmp.json").write_text("{")  # left by a crash of this run
    assert not (out / ".metrics.99-ffffffff.tmp.json").exists()


def test_file_runs_lock_one_file_not_the_folder(tmp_path):
    a, b = tmp_path / "runs" / "teacher.pt", tmp_path / "runs" / "student.pt"
    with RunDirectory.for_file(a, fingerprint={"x": 1}) as run_a:
        with RunDirectory.for_file(b, fingerprint={"x": 2}):  # two files of one folder: both run at once
            pass
        (b.parent / ".student.77-0badc0de.tmp.pt").write_text("being written by a student run")
        a.write_text("weights")
        run_a.complete()
        with pytest.raises(RunLockedError):
            RunDirectory.for_file(a, fingerprint={"x": 1}).__enter__()
    assert (b.parent / ".student.77-0badc0de.tmp.pt").exists()  # not the teacher run's to remove
    with pytest.raises(RunError, match="already holds a finished run"):
        RunDirectory.for_file(a, fingerprint={"x": 1}).__enter__()
    with pytest.raises(RunError, match="already exists: pass --overwrite"):
        RunDirectory.for_file(a, fingerprint={}, record_info=False).__enter__()
    with pytest.raises(RunError, match="is a folder"):
        RunDirectory.for_file(tmp_path, fingerprint={})


def test_unwritable_or_invalid_out(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(RunError, match="one of its parents is a file"):
        check_writable(blocker / "run")
    with pytest.raises(RunError, match="is not a folder"):
        check_writable(blocker)
    assert check_writable(tmp_path / "new" / "run").is_dir()
    assert os.listdir(tmp_path / "new" / "run") == []  # the probe is gone


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only folder: covered by the file-parent case")
def test_read_only_out(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(RunError, match="not writable"):
            check_writable(folder)
    finally:
        folder.chmod(0o700)


def test_output_must_not_be_the_input(tmp_path):
    field = tmp_path / "field.ply"
    field.write_text("ply")
    with pytest.raises(RunError, match="is the input file"):
        check_output_is_not_input(tmp_path / "x" / ".." / "field.ply", field)
    (tmp_path / "link.ply").symlink_to(field)
    with pytest.raises(RunError, match="is the input file"):
        check_output_is_not_input(tmp_path / "link.ply", field)
    check_output_is_not_input(tmp_path / "edited.ply", field)


def test_outputs_among_the_users_files_touch_only_the_outputs(tmp_path):
    """Without a run record (a data set written into a folder of the user's): the user's files, even ones
    named like our temporary files or run.json, are neither counted as a run, cleaned nor removed."""
    out = tmp_path / "data"
    (out / "notes").mkdir(parents=True)
    users = [out / "notes" / "draft.tmp", out / "session.tmp", out / "run.json"]
    for path in users:
        path.write_text("the user's own file")
    with RunDirectory(out, fingerprint={}, markers=("training",), record_info=False) as run:
        assert not run.existing
        (out / "training").mkdir()
        (out / "training" / ".scan.123-abc.tmp.bin").write_text("half written")
    with pytest.raises(RunError, match="already exists: pass --overwrite"):
        RunDirectory(out, fingerprint={}, markers=("training",), record_info=False).__enter__()
    with RunDirectory(out, fingerprint={}, markers=("training",), record_info=False, overwrite=True) as run:
        assert run.existing and not (out / "training").exists()
    assert all(path.read_text() == "the user's own file" for path in users)
