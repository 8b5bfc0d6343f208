"""Files a user can hand to the toolkit are data, never code (issue 21, items 1 and 9).

Every loader of a user-supplied path gets a crafted checkpoint whose unpickling would run
``touch <marker>``; each must refuse it with one error line naming the file, and the marker must not
appear. Truncated or corrupt checkpoints, PNGs and PLYs fail the same way, never with a traceback.
"""
import math
import os
import pathlib
import sys

import numpy as np
import pytest
import torch
from torch import nn

TESTS = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS / "distill3d" / "fields"))
sys.path.insert(0, str(pathlib.Path(__file__).parent))
from f3dgs_tiny_scene import tiny_scene  # noqa: E402
from serialization_inputs import synthetic_scan, tiny_field_config  # noqa: E402

from distillcore.serialization import load_state, save_atomic  # noqa: E402

REFUSED = "was written by an older distillkit or is not a plain-tensor checkpoint"

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class Payload:
    """Unpickling this object runs ``touch marker``: what a crafted checkpoint does."""

    def __init__(self, marker: pathlib.Path):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch '{self.marker}'",)


@pytest.fixture
def marker(tmp_path):
    return tmp_path / "PAYLOAD_RAN"


@pytest.fixture
def craft(marker):
    """``craft(path, **fields)`` writes a checkpoint-looking dict with the payload inside."""

    def write(path: pathlib.Path, **fields) -> pathlib.Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({**fields, "payload": Payload(marker)}, path)
        return path

    return write


def refused(call, path, marker, match=REFUSED):
    """``call()`` raises one ValueError line naming ``path``, and the payload did not run."""
    with pytest.raises(ValueError, match=match) as info:
        call()
    message = str(info.value)
    assert str(path) in message and "\n" not in message
    assert not marker.exists(), "the crafted file ran its payload"


@pytest.fixture(scope="module")
def scene():
    train, _, _ = tiny_scene(num_train=2, num_test=1, size=16)
    return train


def feature_field_ply(path: pathlib.Path) -> pathlib.Path:
    from distill3d.fields.field import FeatureField
    from distill3d.gaussians import Gaussians

    g = torch.Generator().manual_seed(0)
    n = 20
    gaussians = Gaussians(torch.randn(n, 3, generator=g), torch.randn(n, 4, generator=g), torch.full((n, 3), -2.0),
                          torch.zeros(n), torch.rand(n, 1, 3, generator=g), torch.zeros(n, 0, 3),
                          extras={"features": torch.randn(n, 4, generator=g)})
    return FeatureField(gaussians, 4).save(path)


def console_error(capsys, prog_main, argv):
    """Runs a console entry point; returns its one stderr line (exit code 2 asserted)."""
    from distillcore.cli import console

    code = console(prog_main[0], lambda _: prog_main[1](argv))
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    return err


def test_the_payload_is_live(tmp_path, craft, marker):
    """The crafted file does run code when unpickled the unsafe way (so the tests below can fail)."""
    path = craft(tmp_path / "x.pt", step=1)
    torch.load(path, weights_only=False)
    assert marker.exists()


# ---- 3D: fields, decoder beside a PLY, PRD ------------------------------------------------------------

def test_field_checkpoint_resume_refuses_a_payload(tmp_path, craft, marker, scene):
    from distill3d.fields.trainer import Trainer, field_from_checkpoint

    path = craft(tmp_path / "run" / "checkpoint.pt", step=1, field_config={}, field_state={})
    trainer = Trainer(scene, tiny_field_config(), tmp_path / "run", None)
    refused(trainer.resume, path, marker)
    refused(lambda: field_from_checkpoint(path), path, marker)


def test_field_checkpoint_of_python_objects_fails_in_one_line(tmp_path, scene):
    """A checkpoint holding a config object (as pickling code might write) is refused, not unpickled."""
    from distill3d.fields.trainer import Trainer

    path = tmp_path / "run" / "checkpoint.pt"
    save_atomic({"step": 1, "config": tiny_field_config(), "field_config": {}, "field_state": {}}, path)
    trainer = Trainer(scene, tiny_field_config(), tmp_path / "run", None)
    with pytest.raises(ValueError, match=f"{REFUSED}.*distill3d.fields.config.TrainConfig"):
        trainer.resume()


def test_decoder_beside_a_ply_refuses_a_payload_through_render_and_query(tmp_path, craft, marker, capsys):
    from distill3d.cli import main
    from distill3d.fields.field import FeatureField

    ply = feature_field_ply(tmp_path / "point_cloud.ply")
    decoder = craft(ply.with_suffix(".decoder.pt"), config={"teacher_dim": 8, "decoder_low_dim": 4}, state={})
    refused(lambda: FeatureField.load(ply), decoder, marker)
    for argv in (["render", str(ply), "--scene", str(tmp_path)],
                 ["query", "segment", str(ply), "--scene", str(tmp_path), "--point", "1", "1",
                  "--out", str(tmp_path / "mask.png")]):
        err = console_error(capsys, ("distill3d", main), argv)
        assert err.startswith("distill3d: error:") and str(decoder) in err and REFUSED in err
    assert not marker.exists()


def test_prd_radiance_and_prd_checkpoints_refuse_a_payload(tmp_path, craft, marker, scene, capsys):
    from distill3d.cli import main
    from distill3d.inverse.config import PRDConfig
    from distill3d.inverse.trainer import PRDTrainer, model_from_checkpoint

    run = tmp_path / "prd"
    radiance = craft(run / "radiance" / "checkpoint.pt", step=1, field_config={}, field_state={})
    trainer = PRDTrainer(scene, PRDConfig(radiance=tiny_field_config()), run)
    refused(lambda: trainer.pretrain_radiance(progress=False), radiance, marker)

    checkpoint = craft(run / "checkpoint.pt", config={}, model_state={})
    refused(lambda: model_from_checkpoint(checkpoint), checkpoint, marker)
    (run / "run.json").write_text('{"scene": "%s", "downsample": 1}' % tmp_path)
    err = console_error(capsys, ("distill3d", main), ["inverse", "relight", str(run), "--env", "relight"])
    assert str(checkpoint) in err and REFUSED in err and not marker.exists()


def test_brdf_table_cache_replaces_a_payload(tmp_path, craft, marker):
    from distill3d.inverse.brdf_lut import BRDFLutConfig, brdf_lut, compute_brdf_lut

    config = BRDFLutConfig(resolution=4, num_samples=8)
    path = craft(tmp_path / f"lut_{config.resolution}_{config.num_samples}.pt")
    brdf_lut.cache_clear()
    table = brdf_lut(config, tmp_path)
    brdf_lut.cache_clear()
    assert not marker.exists()
    assert torch.equal(table, compute_brdf_lut(config))  # recomputed, and the bad entry overwritten
    assert torch.equal(torch.load(path, weights_only=True), table)


def test_teacher_feature_cache_replaces_a_payload(tmp_path, craft, marker):
    from distill3d.teachers import FeatureCache
    from distill3d.teachers.base import Teacher

    class PoolTeacher(Teacher):
        name, dim, output_stride = "pool", 3, 4

        def __init__(self):
            super().__init__()
            self.gain = nn.Parameter(torch.ones(()))

        def encode(self, images):
            return torch.nn.functional.avg_pool2d(images, 4) * self.gain

    image = torch.rand(3, 8, 8)
    cache = FeatureCache(tmp_path, "scene", PoolTeacher())
    entry = craft(cache.path("r_0.png", image))
    features = cache("r_0.png", image)
    assert not marker.exists() and cache.misses == 1
    assert torch.allclose(features, torch.nn.functional.avg_pool2d(image[None], 4)[0])
    assert torch.equal(torch.load(entry, weights_only=True), features)
    assert cache("r_0.png", image).equal(features) and cache.hits == 1


def test_sam_checkpoint_refuses_a_payload(tmp_path, craft, marker):
    from distill3d.teachers.sam import load_encoder_state

    path = craft(tmp_path / "sam_vit_b.pth")
    refused(lambda: load_encoder_state(path), path, marker)


# ---- point-cloud detectors --------------------------------------------------------------------------

def test_points_teacher_eval_and_resume_checkpoints_refuse_a_payload(tmp_path, craft, marker):
    from distill3d.points.train import TrainConfig, build_detector, load_checkpoint, train_detector

    path = craft(tmp_path / "teacher.pt", family="pillars", model_config={}, state_dict={}, meta={})
    refused(lambda: load_checkpoint(path), path, marker)  # `points distill --teacher`, `points eval --checkpoint`
    scans = [synthetic_scan()]
    refused(lambda: train_detector(build_detector("pillars", 2, 0.25), scans, TrainConfig(steps=1, batch_size=1),
                                   path, progress=False), path, marker)


# ---- graphs -----------------------------------------------------------------------------------------

def test_vqgraph_resumed_checkpoint_refuses_a_payload(tmp_path, craft, marker):
    from graphdistill.vqgraph.config import TrainConfig
    from graphdistill.vqgraph.fit import fit

    model = nn.Linear(2, 2)
    path = craft(tmp_path / "checkpoints" / "teacher.ckpt", model={}, epoch=1)
    run = lambda: fit(model, torch.optim.SGD(model.parameters(), lr=0.1), lambda: 0.0, lambda: (0.5, 1.0),  # noqa: E731
                      TrainConfig(epochs=2, eval_every=1, checkpoint_every=1), checkpoint=path, progress=False)
    refused(run, path, marker)


def test_vqgraph_student_and_feature_files_refuse_a_payload(tmp_path, craft, marker):
    from graphdistill.vqgraph.predict_cli import read_features
    from graphdistill.vqgraph.student import MLPStudent

    student = craft(tmp_path / "student.pt", format="x")
    refused(lambda: MLPStudent.load(student), student, marker)
    features = craft(tmp_path / "features.pt")
    refused(lambda: read_features(features), features, marker)


def test_mirage_distilled_file_refuses_a_payload(tmp_path, craft, marker, capsys):
    from graphdistill.cli import main
    from graphdistill.mirage.distilled import DistilledDataset

    path = craft(tmp_path / "set.mirage.pt", format="mirage-distilled-v1")
    refused(lambda: DistilledDataset.load(path), path, marker)
    err = console_error(capsys, ("graphdistill", main), ["mirage", "train", str(path)])
    assert err.startswith("graphdistill: error:") and str(path) in err and REFUSED in err
    assert not marker.exists()


# ---- damaged files ----------------------------------------------------------------------------------

def truncate(path: pathlib.Path, keep: float = 0.5) -> pathlib.Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


@pytest.mark.parametrize("damage", ["truncated", "empty", "garbage"])
def test_damaged_checkpoint_is_one_line(tmp_path, damage):
    from distill3d.points.train import build_detector, load_checkpoint, save_checkpoint

    path = tmp_path / "detector.pt"
    save_checkpoint(path, build_detector("pillars", 2, 0.25), {})
    if damage == "truncated":
        truncate(path)
    else:
        path.write_bytes(b"" if damage == "empty" else np.random.default_rng(0).bytes(4096))
    with pytest.raises(ValueError, match="detector checkpoint .* (truncated or corrupt|corrupt or not)") as info:
        load_checkpoint(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(FileNotFoundError, match="detector checkpoint not found"):
        load_checkpoint(tmp_path / "missing.pt")


def test_damaged_png_is_one_line(tmp_path):
    from distill3d.data.files import read_image, write_png

    path = tmp_path / "r_0.png"
    image = (np.arange(32 * 32 * 3) % 251).astype(np.uint8).reshape(32, 32, 3)
    write_png(path, image)
    assert np.array_equal(read_image(path), image)
    truncate(path, 0.4)
    with pytest.raises(ValueError, match=f"image file {path} is truncated, corrupt or not an image"):
        read_image(path)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)
    with pytest.raises(ValueError, match="truncated, corrupt or not an image"):
        read_image(path)


def test_damaged_or_pickled_numpy_files_are_one_line(tmp_path, marker):
    from distill3d.data.environment import load_environment
    from distillcore.serialization import load_arrays

    env = np.random.default_rng(0).random((8, 16, 3)).astype(np.float32)
    npz, npy = tmp_path / "environment.npz", tmp_path / "env.npy"
    np.savez(npz, train=env)
    np.save(npy, env)
    assert np.array_equal(load_arrays(npz)["train"], env) and np.array_equal(load_environment(npy), env)
    truncate(npz, 0.5)
    with pytest.raises(ValueError, match=f"environment map {npz} is truncated, corrupt or not a NumPy file"):
        load_environment(npz)
    truncate(npy, 0.5)
    with pytest.raises(ValueError, match=f"environment map {npy} is truncated, corrupt or not a NumPy file"):
        load_environment(npy)
    pickled = tmp_path / "objects.npy"  # an object array is a pickle: refused, not run
    np.save(pickled, np.array([Payload(marker)], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="truncated, corrupt or not a NumPy file"):
        load_arrays(pickled)
    assert not marker.exists()


def test_damaged_ply_is_one_line(tmp_path, capsys):
    from distill3d.cli import main
    from distill3d.gaussians import Gaussians

    ply = feature_field_ply(tmp_path / "point_cloud.ply")
    assert len(Gaussians.load_ply(ply)) == 20
    truncate(ply, 0.6)
    with pytest.raises(ValueError, match=f"PLY file {ply} is truncated or corrupt"):
        Gaussians.load_ply(ply)
    err = console_error(capsys, ("distill3d", main), ["render", str(ply), "--scene", str(tmp_path)])
    assert "truncated or corrupt" in err
    ply.write_bytes(b"ply\nformat binary_little_endian 1.0\nelement vertex x\nend_header\n")
    with pytest.raises(ValueError, match=f"PLY file {ply} is truncated or corrupt"):
        Gaussians.load_ply(ply)


def test_load_state_names_each_failure(tmp_path, craft, marker):
    missing = tmp_path / "nope.pt"
    with pytest.raises(FileNotFoundError, match=f"decoder file not found: {missing}"):
        load_state(missing, what="decoder file")
    path = craft(tmp_path / "x.pt")
    refused(lambda: load_state(path, what="decoder file"), path, marker,
            match=f"decoder file {path} {REFUSED}: it asks for the Python object (posix|os|nt).system")
    assert math.isfinite(load_state(save_atomic({"a": 1.5}, tmp_path / "ok.pt"))["a"])


def test_a_torchscript_export_given_as_a_checkpoint_is_named_as_such(tmp_path, recwarn):
    """TorchScript archives hold compiled code: torch.load(weights_only=True) refuses them, and the message
    says what the file is instead of "truncated or corrupt", with no torch warning first."""
    from distillcore.serialization import load_state

    path = tmp_path / "student.ts"
    torch.jit.save(torch.jit.script(nn.Linear(2, 2)), str(path))
    with pytest.raises(ValueError, match=r"checkpoint .*student.ts is a TorchScript export .*not a checkpoint"):
        load_state(path)
    assert not [w for w in recwarn if "TorchScript" in str(w.message)]
