"""Meaningless values, broken commands, missing KITTI files, degenerate cameras and unsupported devices
(issue 21, items 5, 7 and 9): each is one clear error naming the setting and what is allowed, raised where
the setting is defined (the config dataclasses) and before any work, never a silent exit 0 or a traceback."""
import json
import pathlib
import shutil
import sys

import numpy as np
import pytest
import torch

TESTS = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS / "distill3d" / "fields"))
from f3dgs_tiny_scene import tiny_scene  # noqa: E402

from distillcore.checks import check_device, check_range  # noqa: E402
from distill3d.fields import config as fields_config  # noqa: E402
from distill3d.inverse import config as prd_config  # noqa: E402
from distill3d.points.metrics import DifficultyConfig, check_iou_thresholds  # noqa: E402
from distill3d.points.train import TrainConfig as PointsTrainConfig  # noqa: E402
from graphdistill.mirage.models import ModelConfig as MirageModelConfig  # noqa: E402
from graphdistill.mirage.train import TrainConfig as MirageTrainConfig  # noqa: E402
from graphdistill.vqgraph import config as vq_config  # noqa: E402

SCENE = pathlib.Path(__file__).resolve().parents[2] / "distill3d" / "scenes" / "default"


# ----------------------------------------------------------------------------------------- configs
@pytest.mark.parametrize("make, field, allowed", [
    (lambda: fields_config.LossConfig(feature_weight=-1), "loss.feature_weight", ">= 0"),
    (lambda: fields_config.LossConfig(lambda_dssim=1.5), "loss.lambda_dssim", "[0, 1]"),
    (lambda: fields_config.LossConfig(lambda_dssim=float("nan")), "loss.lambda_dssim", "[0, 1]"),
    (lambda: fields_config.DecoderConfig(low_dim=0), "decoder.low_dim", ">= 1"),
    (lambda: fields_config.OptimConfig(scales_lr=-1e-3), "optim.scales_lr", ">= 0"),
    (lambda: fields_config.DensifyConfig(refine_every=0), "densify.refine_every", ">= 1"),
    (lambda: fields_config.DensifyConfig(prune_opa=1.0), "densify.prune_opa", "[0, 1)"),
    (lambda: fields_config.InitConfig(num_points=0), "init.num_points", ">= 1"),
    (lambda: fields_config.InitConfig(init_opacity=0.0), "init.init_opacity", "(0, 1)"),
    (lambda: fields_config.TrainConfig(steps=0), "steps", ">= 1"),
    (lambda: fields_config.TrainConfig(sh_degree=4), "sh_degree", "[0, 3]"),
    (lambda: fields_config.TrainConfig(sh_degree_interval=0), "sh_degree_interval", ">= 1"),
    (lambda: fields_config.TrainConfig(eval_every=-1), "eval_every", ">= 0"),
    (lambda: fields_config.TrainConfig(backend="vulkan"), "backend", "'auto'"),
    (lambda: prd_config.StageConfig("s", 10, ("light",), progress_weight=-0.1), "progress_weight", ">= 0"),
    (lambda: prd_config.StageConfig("s", -1, ("light",)), "steps", ">= 0"),
    (lambda: prd_config.MaterialInitConfig(roughness=2.0), "model.init.roughness", "[0, 1]"),
    (lambda: prd_config.ModelConfig(env_resolution=0), "model.env_resolution", ">= 1"),
    (lambda: prd_config.PRDConfig(lambda_dssim=-1), "lambda_dssim", "[0, 1]"),
    (lambda: PointsTrainConfig(batch_size=0), "batch_size", ">= 1"),
    (lambda: PointsTrainConfig(lr=0.0), "lr", "> 0"),
    (lambda: PointsTrainConfig(warmup_fraction=1.0), "warmup_fraction", "(0, 1)"),
    (lambda: DifficultyConfig(num_recall_points=0), "num_recall_points", ">= 1"),
    (lambda: vq_config.TeacherConfig(code_dim=0), "teacher.code_dim", ">= 1"),
    (lambda: vq_config.TeacherConfig(codebook_size=0), "teacher.codebook_size", ">= 1"),
    (lambda: vq_config.TeacherConfig(num_layers=1), "teacher.num_layers", ">= 2"),
    (lambda: vq_config.TeacherConfig(dropout=1.0), "teacher.dropout", "[0, 1)"),
    (lambda: vq_config.DistillConfig(temperature=0.0), "distill.temperature", "> 0"),
    (lambda: vq_config.TrainConfig(epochs=0), "train.epochs", ">= 1"),
    (lambda: vq_config.SplitConfig(inductive_fraction=1.0), "split.inductive_fraction", "(0, 1)"),
    (lambda: MirageModelConfig(hidden=0), "hidden", ">= 1"),
    (lambda: MirageModelConfig(num_layers=0), "num_layers", ">= 1"),
    (lambda: MirageModelConfig(model="mlp"), "model", "'gin'"),
    (lambda: MirageTrainConfig(lr=-1.0), "lr", "> 0"),
])
def test_config_rejects_value_naming_field_and_range(make, field, allowed):
    with pytest.raises(ValueError) as err:
        make()
    message = str(err.value)
    assert field in message and allowed in message and "\n" not in message


def test_defaults_are_valid_and_every_bound_is_inclusive_where_documented():
    for make in (fields_config.TrainConfig, prd_config.PRDConfig, PointsTrainConfig, vq_config.VQGraphConfig,
                 MirageModelConfig, MirageTrainConfig, DifficultyConfig):
        make().validate()
    fields_config.LossConfig(feature_weight=0.0, lambda_dssim=1.0)  # plain 3DGS; pure D-SSIM
    assert check_range(1, "x", 0, 1, low_open=True) == 1
    for bad in (True, "1", None, float("inf")):
        with pytest.raises(ValueError, match="x must be"):
            check_range(bad, "x", 0)


def test_fields_set_after_construction_are_caught_when_training_starts(tmp_path):
    from distill3d.fields.trainer import Trainer

    train, test, maps = tiny_scene(num_train=2, num_test=1, size=16)
    cfg = fields_config.TrainConfig(steps=2, init=fields_config.InitConfig(method="random", num_points=20))
    cfg.loss.feature_weight = -1.0  # what a CLI does after constructing the config
    with pytest.raises(ValueError, match=r"loss\.feature_weight must be >= 0, got -1"):
        Trainer(train, cfg, tmp_path, maps, test)
    vq = vq_config.VQGraphConfig()
    vq.teacher.code_dim = 0
    with pytest.raises(ValueError, match=r"teacher\.code_dim must be >= 1, got 0"):
        vq.validate()
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("ious, message", [
    ((-1.0, 0.5, 0.5), r"IoU threshold of Car must be in \(0, 1\], got -1"),
    ((0.5, 1.5, 0.5), r"IoU threshold of Pedestrian must be in \(0, 1\], got 1.5"),
    ((0.5, 0.5, 0.0), r"IoU threshold of Cyclist must be in \(0, 1\], got 0"),
    ((0.5, 0.5), r"one IoU threshold per class"),
])
def test_iou_thresholds_in_half_open_unit_interval(ious, message):
    with pytest.raises(ValueError, match=message):
        check_iou_thresholds(ious, ("Car", "Pedestrian", "Cyclist"))
    assert check_iou_thresholds((0.7, 1.0, 0.25), ("Car", "Pedestrian", "Cyclist")) == (0.7, 1.0, 0.25)


@pytest.mark.parametrize("threshold", [5.0, -2.0, float("nan")])
def test_query_threshold_is_a_cosine_in_minus_one_one(threshold):
    from distill3d.query import threshold_mask
    from distill3d.query.edit import select_gaussians

    features, query = torch.randn(4, 3, 3), torch.randn(4)
    with pytest.raises(ValueError, match=r"threshold \(a cosine similarity\) must be in \[-1, 1\]"):
        threshold_mask(features, query, threshold)
    with pytest.raises(ValueError, match=r"must be in \[-1, 1\]"):
        select_gaussians(torch.randn(5, 4), query, threshold)
    assert bool(threshold_mask(features, query, -1.0).all())  # the bound itself is allowed: every pixel


# ----------------------------------------------------------------------------------------- commands
def _small_scene(dst: pathlib.Path, train: int = 2, test: int = 1) -> pathlib.Path:
    """The bundled scene with its first views only (same images, names and cameras)."""
    dst.mkdir()
    for split, count in (("train", train), ("test", test)):
        meta = json.loads((SCENE / f"transforms_{split}.json").read_text())
        meta["frames"] = meta["frames"][:count]
        (dst / f"transforms_{split}.json").write_text(json.dumps(meta))
        for frame in meta["frames"]:
            for key, value in frame.items():
                if key.endswith("file_path"):
                    for f in (SCENE / value).parent.glob(pathlib.Path(value).name + "*"):
                        (dst / f.relative_to(SCENE)).parent.mkdir(parents=True, exist_ok=True)
                        shutil.copy2(f, dst / f.relative_to(SCENE))
    return dst


@pytest.mark.slow
def test_teachers_extract_fills_the_cache_training_reads(tmp_path, capsys):
    from distill3d.cli import main
    from distill3d.fields.pipeline import prepare_scene

    scene = _small_scene(tmp_path / "mini")
    cache = tmp_path / "cache"
    assert main(["teachers", "extract", str(scene), "--teacher", "efficientnet-lite0", "--cache", str(cache),
                 "--quiet"]) == 0
    assert "3 maps of shape" in capsys.readouterr().out
    files = sorted(p for p in cache.rglob("*") if p.is_file())
    assert files, "nothing was cached"
    stamps = {p: p.stat().st_mtime_ns for p in files}
    # training reads exactly these maps: the same keys, served from the cache without re-encoding
    prepared = prepare_scene(scene, "efficientnet-lite0", cache, progress=False)
    assert sorted(prepared.teacher_maps) == sorted(prepared.train.names + prepared.test.names)
    assert {p: p.stat().st_mtime_ns for p in files} == stamps
    assert all(m.dim() == 3 and torch.isfinite(m).all() for m in prepared.teacher_maps.values())


def _kitti(tmp_path: pathlib.Path) -> pathlib.Path:
    from distill3d.points.kitti import write_kitti_dataset
    from distill3d.points.scan import Scan

    rng = np.random.default_rng(0)
    scans = [Scan(rng.normal(size=(50, 4)).astype(np.float32) + [10, 0, 0, 0],
                  np.array([[10.0, 1.0, -0.8, 3.9, 1.6, 1.5, 0.3]], np.float32), np.zeros(1, np.int64),
                  np.zeros(1, np.int64), f"{i:06d}") for i in range(2)]
    write_kitti_dataset(tmp_path, scans, ("Car",))
    return tmp_path


@pytest.mark.parametrize("folder", ["calib", "label_2"])
def test_kitti_missing_calib_or_label_is_an_error_unless_allowed(tmp_path, folder):
    from distill3d.points.kitti import KittiDataset

    root = _kitti(tmp_path)
    reference = KittiDataset(root, ("Car",))[1]
    (root / "training" / folder / "000001.txt").unlink()
    data = KittiDataset(root, ("Car",))
    assert len(data[0].boxes) == 1  # frames with their files still read
    with pytest.raises(FileNotFoundError, match=rf"frame 000001: .*{folder}/000001.txt not found.*--allow-missing-calib"):
        data[1]
    allowed = KittiDataset(root, ("Car",), allow_missing_calib=True)[1]
    if folder == "calib":  # the simulator's calibration is the default: the same boxes come back
        np.testing.assert_allclose(allowed.boxes, reference.boxes, atol=1e-4)
    else:
        assert allowed.boxes.shape == (0, 7)


def test_degenerate_cameras_are_refused(tmp_path):
    from distill3d.data import load_scene
    from distill3d.render import rasterize

    scene = _small_scene(tmp_path / "mini")
    meta = json.loads((scene / "transforms_train.json").read_text())
    meta["frames"][1]["transform_matrix"] = [[0.0] * 4] * 4
    (scene / "transforms_train.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="frame 1 transform_matrix has a rotation block that is not a rotation"):
        load_scene(scene, "train")
    meta["frames"][1]["transform_matrix"] = meta["frames"][0]["transform_matrix"]
    for key in ("fl_x", "fl_y"):
        meta.pop(key, None)
    meta["camera_angle_x"] = 0.0  # was a ZeroDivisionError traceback
    (scene / "transforms_train.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"camera_angle_x must be in \(0, pi\) radians, got 0.0"):
        load_scene(scene, "train")
    args = (torch.zeros(1, 3), torch.tensor([[1.0, 0, 0, 0]]), torch.full((1, 3), 0.1), torch.ones(1), torch.ones(1, 3))
    K = torch.tensor([[[8.0, 0, 4], [0, 8, 4], [0, 0, 1]]])
    for viewmat in (torch.zeros(1, 4, 4), torch.diag(torch.tensor([1.0, 1.0, 0.0, 1.0]))[None]):
        with pytest.raises(ValueError, match=r"viewmats\[0\] has a singular rotation block"):
            rasterize(*args, viewmat, K, 8, 8, backend="torch")


def _colmap(root: pathlib.Path, images_txt: str, cameras_txt: str = "1 PINHOLE 8 8 10 10 4 4\n") -> pathlib.Path:
    from PIL import Image

    (root / "sparse" / "0").mkdir(parents=True)
    (root / "images").mkdir()
    for i in range(2):
        Image.fromarray(np.full((8, 8, 3), 50 * i, np.uint8)).save(root / "images" / f"{i}.png")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / "outside.png")
    (root / "sparse" / "0" / "cameras.txt").write_text(cameras_txt)
    (root / "sparse" / "0" / "images.txt").write_text(images_txt)
    (root / "sparse" / "0" / "points3D.txt").write_text("# id x y z r g b error track\n1 0 0 0 255 255 255 0.5\n")
    return root


def test_colmap_text_errors_name_file_and_line_and_names_cannot_escape(tmp_path):
    from distill3d.data import load_scene

    good = "# header\n1 1 0 0 0 0 0 4 1 0.png\n\n2 1 0 0 0 0 0 4 1 1.png\n\n"
    assert load_scene(_colmap(tmp_path / "ok", good), "all", min_views=2).num_views == 2
    short = _colmap(tmp_path / "short", "# header\n1 1 0 0 0 0 0 4 1 0.png\n\n2 1 0 0\n\n")
    with pytest.raises(ValueError, match=r"images\.txt:4: a COLMAP image line needs at least 10 fields, got 4"):
        load_scene(short, "all")
    camera = _colmap(tmp_path / "camera", good, "1 PINHOLE 8\n")
    with pytest.raises(ValueError, match=r"cameras\.txt:1: a COLMAP camera line needs at least 4 fields"):
        load_scene(camera, "all")
    number = _colmap(tmp_path / "number", good.replace("1 1 0 0 0 0 0 4 1 0.png", "1 1 0 zero 0 0 0 4 1 0.png"))
    with pytest.raises(ValueError, match=r"images\.txt:2: malformed COLMAP image line"):
        load_scene(number, "all")
    escape = _colmap(tmp_path / "escape", good.replace("1 1.png", "1 ../outside.png"))
    with pytest.raises(ValueError, match=r"image name '\.\./outside\.png' .* points outside .*images: refused"):
        load_scene(escape, "all", skip_unposed=True)


def test_scene_build_sizes_must_be_positive():
    from distill3d.data.cli import BuildConfig

    with pytest.raises(ValueError, match="resolution width must be >= 1, got 0"):
        BuildConfig(resolution=(0, 64))  # was a torch traceback deep in the renderer
    with pytest.raises(ValueError, match="spp must be >= 1"):
        BuildConfig(spp=0)
    assert BuildConfig(num_test=0).num_test == 0


def test_device_and_backend_errors_name_what_is_available(monkeypatch):
    from distill3d.render.rasterize import BackendUnavailable, resolve_backend

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match=r"device 'cuda' is not available.*\(available: cpu\)"):
        check_device("cuda")
    with pytest.raises(ValueError, match="device must be a torch device"):
        check_device("tpu")
    assert check_device("cpu") == torch.device("cpu")
    with pytest.raises(BackendUnavailable, match=r"backend='gsplat' is unavailable.*\(available on cpu: torch"):
        resolve_backend("gsplat", "cpu")
    assert issubclass(BackendUnavailable, ValueError) and issubclass(BackendUnavailable, RuntimeError)


def test_query_needs_trained_features_and_a_text_teacher(tmp_path):
    from distill3d.fields.field import FeatureField
    from distill3d.gaussians import GaussianInitConfig, Gaussians
    from distill3d.query import text_query
    from distill3d.query.cli import _load
    from distill3d.teachers import build_teacher

    plain = FeatureField(Gaussians.from_points(torch.rand(20, 3), None, GaussianInitConfig(sh_degree=0, feature_dim=1)), 1)
    path = plain.save(tmp_path / "point_cloud.ply")

    class Args:
        field, scene, split = path, str(_small_scene(tmp_path / "mini")), "test"

    with pytest.raises(ValueError, match="carries no trained features"):
        _load(Args)
    with pytest.raises(ValueError, match="has no text encoder: use a CLIP-style teacher"):
        text_query(build_teacher("efficientnet-lite0"), ["a chair"])


def test_render_of_a_plain_field_refuses_pca_and_renders_rgb_for_both(tmp_path, capsys):
    from distill3d.cli import main
    from distill3d.fields.field import FeatureField
    from distill3d.gaussians import GaussianInitConfig, Gaussians

    plain = FeatureField(Gaussians.from_points(torch.rand(20, 3), None, GaussianInitConfig(sh_degree=0, feature_dim=1)), 1)
    path = plain.save(tmp_path / "point_cloud.ply")
    scene = str(_small_scene(tmp_path / "mini", train=2, test=2))
    with pytest.raises(ValueError, match="carries no trained features .*--what rgb"):
        main(["render", str(path), "--scene", scene, "--split", "test", "--what", "pca", "--out", str(tmp_path / "pca")])
    assert not (tmp_path / "pca").exists()
    assert main(["render", str(path), "--scene", scene, "--split", "test", "--out", str(tmp_path / "both")]) == 0
    assert "rendering RGB only" in capsys.readouterr().err
    images = sorted((tmp_path / "both").iterdir())
    assert images and all(p.name.endswith("_rgb.png") for p in images)


def test_render_size_guard(monkeypatch):
    from distill3d.render import rasterize
    from distill3d.render.validation import DEFAULT_MAX_PIXELS, MAX_PIXELS_ENV

    args = (torch.zeros(1, 3), torch.tensor([[1.0, 0, 0, 0]]), torch.full((1, 3), 0.1), torch.ones(1), torch.ones(1, 3),
            torch.eye(4)[None])
    K = torch.tensor([[[1e4, 0, 1e4], [0, 1e4, 1e4], [0, 0, 1]]])
    with pytest.raises(ValueError, match=r"render of 1 x 20000 x 20000 = 400,000,000 pixels exceeds the budget"):
        rasterize(*args, K, 20000, 20000, backend="torch")
    assert 20000 * 20000 > DEFAULT_MAX_PIXELS >= 8192 * 8192
    monkeypatch.setenv(MAX_PIXELS_ENV, "100")
    with pytest.raises(ValueError, match=MAX_PIXELS_ENV):
        rasterize(*args, K, 16, 16, backend="torch")
    assert rasterize(*args, K, 10, 10, backend="torch")[0].shape == (1, 10, 10, 3)
    monkeypatch.setenv(MAX_PIXELS_ENV, "-5")
    with pytest.raises(ValueError, match="must be a positive integer"):
        rasterize(*args, K, 10, 10, backend="torch")
