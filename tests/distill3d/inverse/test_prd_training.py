"""PRD training end to end on a tiny physically rendered scene: learning, resume, bad input, relighting,
export and the command line."""
import json
import shutil

import numpy as np
import pytest
import torch
from conftest import sized

from distillcore.serialization import save_atomic
from distill3d.gaussians import Gaussians
from distill3d.inverse.config import PRDConfig, StageConfig
from distill3d.inverse.model import PRDModel
from distill3d.inverse.metrics import aligned_albedo_psnr, channel_scale, evaluate_inverse, normal_angular_error
from distill3d.inverse.relight import export, relight
from distill3d.inverse.trainer import PRDTrainer, model_from_checkpoint
from prd_tiny_scene import tiny_prd_scene


def tiny_config(radiance_steps, stage_steps):
    config = PRDConfig()
    config.radiance.steps, config.radiance.sh_degree, config.radiance.eval_every = radiance_steps, 1, 0
    config.radiance.init.method, config.radiance.init.num_points = "random", 300
    config.radiance.densify.enabled = False
    config.model.env_resolution = 8
    config.checkpoint_every = 0
    for stage, steps in zip(config.stages, stage_steps):
        stage.steps = steps
    return config


@pytest.fixture(scope="module")
def scene():
    return tiny_prd_scene()


@pytest.mark.slow
def test_prd_stages_learn_the_physical_model(scene, tmp_path):
    """The physical stages, started from the true geometry with default materials and a uniform light,
    fit the physically rendered images: the physical image gains PSNR and the albedo approaches the truth."""
    train, test, truth = scene
    stage = sized(15, 100)
    trainer = PRDTrainer(train, tiny_config(1, (stage,) * 3), tmp_path)
    trainer.model = PRDModel.from_radiance(truth.gaussians, trainer.config.model)
    before = evaluate_inverse(trainer.model, test)
    trainer.train(progress=False)
    after = evaluate_inverse(trainer.model, test)
    assert after["physical_psnr"] > before["physical_psnr"] + 1.5
    assert after["albedo_psnr"] > before["albedo_psnr"]
    assert after["novel_psnr"] > 20.0 and 0.0 <= after["mean_progress"] <= 1.0
    assert [h.get("stage") for h in trainer.history[:3]] == ["specular", "diffuse", "joint"]


def test_resume_mid_stage_is_exact(scene, tmp_path):
    train, _, _ = scene
    config = tiny_config(4, (2, 2, 2))
    reference = PRDTrainer(train, config, tmp_path / "reference")
    reference.train(progress=False)
    # the same pre-trained radiance field (the native rasterizer's parallel backward is not bit-reproducible)
    shutil.copytree(tmp_path / "reference" / "radiance", tmp_path / "cut" / "radiance")
    interrupted = PRDTrainer(train, config, tmp_path / "cut")
    assert interrupted.train(progress=False, max_steps=3) == {"stage": "diffuse", "stage_step": 1}
    resumed = PRDTrainer(train, config, tmp_path / "cut")
    resumed.resume()
    assert (resumed.stage_index, resumed.stage_step) == (1, 1)
    assert resumed.stage_seconds == interrupted.stage_seconds > 0  # time already spent in the cut stage
    resumed.train(progress=False)
    stage_times = {h["stage"]: h["seconds"] for h in resumed.history if "seconds" in h}
    assert set(stage_times) == {"specular", "diffuse", "joint"} and min(stage_times.values()) > 0
    assert stage_times["diffuse"] > interrupted.stage_seconds
    for key, value in reference.model.state_dict().items():
        assert torch.allclose(value, resumed.model.state_dict()[key], atol=1e-5), key


def test_bad_input(scene, tmp_path):
    train, _, _ = scene
    import dataclasses

    no_masks = dataclasses.replace(train, alphas=None)
    config = tiny_config(5, (1, 1, 1))
    config.masks.source = "alpha"  # a scene without masks gets them from opacity or loses the terms (masks.source)
    with pytest.raises(ValueError, match="masks.source must be"):
        PRDTrainer(no_masks, config, tmp_path)
    config = tiny_config(5, (1, 1, 1))
    config.stages = [StageConfig("light only", 1, ("light",))]
    PRDTrainer(no_masks, config, tmp_path)  # a stage without mask terms runs on a scene without masks
    with pytest.raises(ValueError, match="unknown parameter groups"):
        StageConfig("bad", 1, ("lighting",))  # refused where it is defined
    config.stages[0].groups = ("lighting",)  # and when set afterwards, when training starts
    with pytest.raises(ValueError, match="unknown parameter groups"):
        PRDTrainer(train, config, tmp_path)
    config.stages = []
    with pytest.raises(ValueError, match="empty"):
        PRDTrainer(train, config, tmp_path)


def test_relight_export_and_metrics(scene, tmp_path):
    _, test, truth = scene
    truth.config.progress = "learned"
    # relighting with the light it was rendered under reproduces the test images
    relit = relight(truth, test, truth.light)
    assert torch.allclose(relit, test.images.permute(0, 3, 1, 2), atol=1e-4)
    brighter = relight(truth, test, np.full((8, 16, 3), 5.0, np.float32))
    assert brighter.mean() > relit.mean()
    with pytest.raises(ValueError, match="negative"):
        relight(truth, test, -np.ones((8, 16, 3), np.float32))
    with pytest.raises(ValueError, match="shape"):
        relight(truth, test, np.ones((8, 16, 4), np.float32))
    with pytest.raises(FileNotFoundError):
        relight(truth, test, tmp_path / "missing.exr")
    written = export(truth, tmp_path / "export", test)
    assert (tmp_path / "export" / "light.png").is_file() and (tmp_path / "export" / "maps" / "r_6_albedo.png").is_file()
    ply = Gaussians.load_ply(written[0])
    assert torch.allclose(ply.params["albedo"], truth.albedo(), atol=1e-6)
    # metric helpers: a channel-scaled albedo is perfect after alignment; identical normals have zero error
    albedo, mask = test.albedos.permute(0, 3, 1, 2), test.alphas.permute(0, 3, 1, 2) > 0.5
    assert aligned_albedo_psnr(albedo * torch.tensor([0.5, 2.0, 1.0])[:, None, None], albedo, mask) > 60
    scale = channel_scale(albedo * torch.tensor([0.5, 2.0, 1.0])[:, None, None], albedo, mask)
    assert torch.allclose(scale, torch.tensor([2.0, 0.5, 1.0]), atol=1e-5)
    normals = torch.nn.functional.normalize(torch.randn(2, 3, 4, 4), dim=1)
    assert normal_angular_error(normals, normals, torch.ones(2, 1, 4, 4, dtype=torch.bool)) < 0.1
    assert normal_angular_error(-normals, normals, torch.ones(2, 1, 4, 4, dtype=torch.bool)) == pytest.approx(180, abs=0.1)


def test_cli_relight(scene, tmp_path, capsys):
    from distill3d.cli import main
    from distill3d.data import default_scene_dir

    _, _, truth = scene
    run = tmp_path / "run"
    save_atomic({"config": PRDConfig().to_dict() | {"model": {**PRDConfig().to_dict()["model"], "env_resolution": 8}},
                 "model_state": truth.state_dict()}, run / "checkpoint.pt")
    (run / "run.json").write_text(json.dumps({"scene": str(default_scene_dir()), "downsample": 8}))
    model, _ = model_from_checkpoint(run / "checkpoint.pt")
    assert torch.equal(model.light.log_radiance, truth.light.log_radiance)
    assert main(["inverse", "relight", str(run), "--env", "relight"]) == 0
    out = capsys.readouterr().out
    assert "relit_psnr" in out and len(list((run / "relit").glob("*.png"))) == 8
    with pytest.raises(ValueError, match="not a PRD run"):  # one `error:` line and exit 2 from the console
        main(["inverse", "relight", str(tmp_path), "--env", "relight"])


@pytest.mark.parametrize("side", ["cameras", "light"])
def test_pretraining_bakes_visibility_and_deshadows_on_either_side(scene, tmp_path, side):
    """The trainer bakes the visibility after the radiance pre-training and de-shadows the initial albedo
    with the training views as the cameras that pick each Gaussian's side: the albedo only gets brighter."""
    train, test, _ = scene
    config = tiny_config(3, (1, 1, 1))
    config.model.visibility.enabled, config.model.visibility.num_directions = True, 16
    config.model.init.albedo_deshadow_side = side
    trainer = PRDTrainer(train, config, tmp_path)
    trainer.pretrain_radiance(progress=False)
    assert trainer.history[-1]["stage"] == "visibility"
    assert trainer.model.visibility.shape == (len(trainer.model.gaussians), 16)
    undone = PRDModel.from_radiance(trainer.model.gaussians, config.model).albedo()  # the radiance colour
    albedo = trainer.model.albedo()
    assert bool((albedo >= undone - 1e-5).all()) and float((albedo - undone).max()) > 0.01
