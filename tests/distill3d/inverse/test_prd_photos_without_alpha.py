"""PRD on photos without alpha: the bundled scene copied as plain RGB photos (no alpha, no masks, no
buffers). Masks come from the pre-trained radiance field's opacity, or the mask terms go off, with one
logged line saying which."""
import json
import logging

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from distill3d.data import default_scene_dir, load_scene
from distill3d.fields.config import InitConfig
from distill3d.fields.field import FeatureField
from distill3d.inverse.config import PRDConfig
from distill3d.inverse.pipeline import load_splits, train_prd
from distill3d.inverse.trainer import PRDTrainer

pytestmark = pytest.mark.usefixtures("one_torch_thread")
DOWNSAMPLE = 8


@pytest.fixture(scope="module")
def photo_scene(tmp_path_factory):
    """The default scene as RGB photos over black (what a camera gives): alpha dropped, buffers dropped."""
    source, root = default_scene_dir(), tmp_path_factory.mktemp("photos") / "default_rgb"
    root.mkdir()
    for split in ("train", "test"):
        meta = json.loads((source / f"transforms_{split}.json").read_text())
        (root / split).mkdir()
        frames = []
        for frame in meta["frames"]:
            rgba = iio.imread((source / frame["file_path"]).with_suffix(".png")).astype(np.float32) / 255
            rgb = rgba[..., :3] * rgba[..., 3:]
            iio.imwrite((root / frame["file_path"]).with_suffix(".png"), (rgb * 255).round().astype(np.uint8))
            frames.append({"file_path": frame["file_path"], "transform_matrix": frame["transform_matrix"]})
        (root / f"transforms_{split}.json").write_text(json.dumps({**meta, "frames": frames}))
    return root


def tiny_config(source="auto", radiance_steps=100):
    config = PRDConfig()
    config.radiance.steps, config.radiance.sh_degree, config.radiance.eval_every = radiance_steps, 0, 0
    config.radiance.checkpoint_every = 0
    config.radiance.init.method, config.radiance.init.num_points = "random", 1000
    config.radiance.densify.enabled = False
    config.model.env_resolution = 4
    config.checkpoint_every = 0
    for stage in config.stages:
        stage.steps = 3
    config.masks.source = source
    return config


def test_photos_without_alpha_get_masks_from_the_radiance_field(photo_scene, tmp_path, caplog):
    train, test = load_splits(photo_scene, DOWNSAMPLE)
    assert train.alphas is None  # photos: nothing to take masks from
    trainer = PRDTrainer(train, tiny_config(), tmp_path / "run", test)  # before: ValueError "need object masks"
    with caplog.at_level(logging.INFO, logger="distillkit"):
        trainer.train(progress=False)
    notes = [r.getMessage() for r in caplog.records if "alpha masks" in r.getMessage()]
    assert len(notes) == 1 and "opacity" in notes[0]
    assert trainer.mask_source == "opacity" and trainer.masks.shape == (train.num_views, train.height, train.width, 1)
    # the derived masks find the object: they agree with the real alpha the copy lost
    truth = load_splits(default_scene_dir(), DOWNSAMPLE)[0].alphas > 0.5
    derived = trainer.masks > 0.5
    iou = float((derived & truth).sum() / (derived | truth).sum())
    assert iou > 0.75, iou  # measured 0.91 (16 x 16 views, 100 pre-training steps)
    # the progress term ran (it logs mean_progress) and the run evaluated on the test photos
    assert any("mean_progress" in h for h in trainer.history if h.get("stage") == "diffuse")
    assert trainer.history[-1]["psnr"] > 15
    # resuming re-derives the same masks from the radiance checkpoint
    resumed = PRDTrainer(train, tiny_config(), tmp_path / "run", test)
    resumed.resume()
    assert resumed.mask_source == "opacity" and torch.equal(resumed.masks, trainer.masks)


def test_mask_terms_off_on_request_and_when_the_field_covers_nothing(photo_scene, tmp_path, caplog):
    train, test = load_splits(photo_scene, DOWNSAMPLE)
    with caplog.at_level(logging.INFO, logger="distillkit"):
        _, metrics = train_prd(photo_scene, tiny_config("off", radiance_steps=20), tmp_path / "off", downsample=DOWNSAMPLE,
                               progress=False)
    notes = [r.getMessage() for r in caplog.records if "alpha masks" in r.getMessage()]
    assert len(notes) == 1 and "masks.source='off'" in notes[0] and "are off" in notes[0]
    history = json.loads((tmp_path / "off" / "metrics.json").read_text())["history"]
    assert not any("mean_progress" in h for h in history) and np.isfinite(metrics["psnr"])
    # auto: a field that covers (almost) nothing, here a few faint Gaussians far outside every view,
    # has no object to mask: the terms go off rather than pushing the coverage to zero
    far = torch.tensor([[50.0, 50.0, 50.0], [-50.0, 50.0, 50.0]])
    field = FeatureField.from_points(far, None, 0, 1, InitConfig(init_opacity=0.1))
    trainer = PRDTrainer(train, tiny_config("auto"), tmp_path / "auto")
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="distillkit"):
        trainer._choose_masks(field)
    assert trainer.mask_source == "off" and trainer.masks is None
    assert "covers only 0.00% of the training pixels" in caplog.records[-1].getMessage()
    # a scene with alpha keeps its own masks whatever the setting
    with_alpha = load_scene(default_scene_dir(), "train")
    assert PRDTrainer(with_alpha, tiny_config("off"), tmp_path / "a").mask_source == "scene"
