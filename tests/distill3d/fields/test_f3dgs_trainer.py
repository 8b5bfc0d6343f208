"""Feature 3DGS trainer: learning on a tiny scene, bit-exact resume, input errors before training."""
import math
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from conftest import sized  # noqa: E402
from f3dgs_tiny_scene import tiny_scene  # noqa: E402

from distill3d.fields.config import DensifyConfig, InitConfig, TrainConfig  # noqa: E402
from distill3d.fields.trainer import Trainer  # noqa: E402


def tiny_config(steps, **overrides):
    cfg = TrainConfig(steps=steps, sh_degree=1, sh_degree_interval=40, eval_every=0, checkpoint_every=0,
                      init=InitConfig(method="random", num_points=300, random_radius=0.25),
                      densify=DensifyConfig(refine_start_iter=30, refine_every=25, reset_every=10_000))
    cfg.optim.means_lr_init, cfg.optim.means_lr_final = 1.6e-3, 1.6e-4  # tiny scene: move faster
    cfg.optim.features_lr = cfg.optim.decoder_lr = 1e-2
    for key, value in overrides.items():
        setattr(cfg, key, value)
    return cfg


@pytest.mark.slow
def test_training_learns_rgb_and_features(tmp_path):
    train, test, maps = tiny_scene()
    trainer = Trainer(train, tiny_config(sized(60, 300)), tmp_path, maps, test)
    before = trainer.evaluate()
    after = trainer.train(progress=False)
    assert before["feature_cosine"] < 0.2
    assert after["psnr"] > before["psnr"] + 5 and after["psnr"] > sized(22.0, 27.0)
    assert after["feature_cosine"] > sized(0.5, 0.7)
    assert (tmp_path / "checkpoint.pt").is_file()


@pytest.mark.slow
def test_decoder_field_learns_features(tmp_path):
    """Both decoder inits learn; the PCA init (start: the teacher's mean map) ends above the random one."""
    train, test, maps = tiny_scene()
    after = {}
    for init in ("random", "pca"):
        cfg = tiny_config(sized(40, 200))
        cfg.decoder.enabled, cfg.decoder.low_dim, cfg.decoder.init = True, 2, init
        trainer = Trainer(train, cfg, tmp_path / init, maps, test)
        assert trainer.field.feature_dim == 2 and trainer.field.gaussian_features().shape[1] == 4
        before = trainer.evaluate()["feature_cosine"]
        after[init] = trainer.train(progress=False)["feature_cosine"]
        assert after[init] > before + (0.2 if init == "random" else 0.02) and after[init] > sized(0.5, 0.7)
    assert after["pca"] > after["random"]


def test_resume_is_bit_identical(tmp_path):
    train, test, maps = tiny_scene(num_train=3, num_test=1, size=16, cell=4)

    def config():
        cfg = tiny_config(6, backend="torch", sh_degree_interval=2)
        cfg.init.num_points = 60
        cfg.densify = DensifyConfig(refine_start_iter=1, refine_every=2, reset_every=4, grow_grad2d=1e-6)
        return cfg

    straight = Trainer(train, config(), tmp_path / "a", maps, test)
    straight.train(progress=False)

    first = Trainer(train, config(), tmp_path / "b", maps, test)
    first_run = first.train(progress=False, until=3)
    resumed = Trainer(train, config(), tmp_path / "b", maps, test)
    assert resumed.resume() == 3
    # the training time of the interrupted run comes back with it, and the second run adds its own
    assert resumed.total_train_seconds == first_run["total_train_seconds"] == first_run["train_seconds"] > 0
    second_run = resumed.train(progress=False)
    assert second_run["total_train_seconds"] == pytest.approx(first_run["train_seconds"] + second_run["train_seconds"])

    a, b = straight.field.state_dict(), resumed.field.state_dict()
    assert a.keys() == b.keys()
    assert straight.field.num_gaussians != 60  # densification changed the set: its state was resumed too
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert straight.generator.get_state().equal(resumed.generator.get_state())


def test_evaluations_record_the_training_time_to_them(tmp_path):
    """Each held-out evaluation along training carries the training time up to it (how long a quality took)."""
    train, test, maps = tiny_scene(num_train=3, num_test=1, size=16, cell=4)
    trainer = Trainer(train, tiny_config(6, backend="torch", eval_every=2), tmp_path, maps, test)
    final = trainer.train(progress=False)
    along = trainer.history[:-1]
    assert [h["step"] for h in along] == [2, 4]
    times = [h["total_train_seconds"] for h in along] + [final["total_train_seconds"]]
    assert 0 < times[0] < times[1] < times[2]


def test_opacity_reset_happens(tmp_path):
    """gsplat 1.5.3 never resets opacities (operator-precedence bug); our trainer does."""
    train, _, maps = tiny_scene(num_train=3, num_test=1, size=16)
    cfg = tiny_config(5, backend="torch")  # the reset runs after the update of step 4
    cfg.init.num_points, cfg.init.init_opacity = 40, 0.9
    cfg.densify = DensifyConfig(refine_start_iter=100, reset_every=4, prune_opa=0.005)
    trainer = Trainer(train, cfg, tmp_path, maps)
    trainer.train(progress=False)
    assert float(torch.sigmoid(trainer.field.splats["opacities"]).max()) <= 0.01 + 1e-6


def test_bad_input_errors_before_training(tmp_path):
    train, test, maps = tiny_scene(num_train=3, num_test=1, size=16)
    cfg = tiny_config(1, backend="torch")
    with pytest.raises(ValueError, match="1 view"):
        Trainer(train.subset([0]), cfg, tmp_path, maps)
    with pytest.raises(ValueError, match="no teacher feature map for training view 'r_1'"):
        Trainer(train, cfg, tmp_path, {"r_0": maps["r_0"], "r_2": maps["r_2"]})
    with pytest.raises(ValueError, match="disagree on the channel count"):
        Trainer(train, cfg, tmp_path, {**maps, "r_1": torch.rand(7, 4, 4)})
    with pytest.raises(ValueError, match="3 dimensions"):
        Trainer(train, cfg, tmp_path, {**maps, "r_1": torch.rand(4, 16)})
    with pytest.raises(ValueError, match="larger than its image"):
        Trainer(train, cfg, tmp_path, {**maps, "r_1": torch.rand(4, 32, 32)})
    with pytest.raises(ValueError, match="non-finite"):
        Trainer(train, cfg, tmp_path, {**maps, "r_1": torch.full((4, 4, 4), math.nan)})
    # plain 3DGS ignores teacher maps entirely
    plain = tiny_config(1, backend="torch")
    plain.loss.feature_weight = 0.0
    assert not Trainer(train, plain, tmp_path, {**maps, "r_1": torch.rand(7, 4, 4)}).use_features


def test_scenes_without_poses_or_with_one_view_are_rejected_by_the_reader(tmp_path):
    from distill3d.data import load_scene

    (tmp_path / "images").mkdir()
    with pytest.raises(FileNotFoundError, match="without camera poses"):
        load_scene(tmp_path)
    (tmp_path / "transforms_train.json").write_text('{"camera_angle_x": 0.7, "frames": [{"file_path": "./a"}]}')
    with pytest.raises(ValueError, match="at least 2"):
        load_scene(tmp_path)


def test_config_roundtrip():
    cfg = tiny_config(5)
    cfg.decoder.low_dim = 8
    again = TrainConfig.from_dict(cfg.to_dict())
    assert again == cfg
    with pytest.raises(ValueError, match="unknown"):
        TrainConfig.from_dict({"stepz": 3})
