"""PRD demo: a relightable Gaussian scene distilled from the committed default scene, at demo size.

Trains at 32 x 32 (radiance pre-training, then the specular / diffuse / joint stages), evaluates the
held-out views (novel-view and relit PSNR, aligned albedo PSNR, normal error), relights the test views
under the scene's second light and exports the materials (PLY), the light and per-view maps.
"""
from __future__ import annotations

import pathlib
from dataclasses import dataclass

import imageio.v3 as iio
import numpy as np

from distill3d.data import default_scene_dir

from .config import PRDConfig
from .metrics import evaluate_inverse
from .pipeline import load_splits
from .relight import export, relight
from .trainer import PRDTrainer


@dataclass(frozen=True)
class DemoConfig:
    downsample: int = 4
    radiance_steps: int = 150
    stage_steps: int = 20
    num_points: int = 2000


def demo_config(demo: DemoConfig) -> PRDConfig:
    config = PRDConfig()
    r = config.radiance
    r.steps, r.init.num_points, r.eval_every, r.sh_degree_interval = demo.radiance_steps, demo.num_points, 0, 50
    r.densify.refine_start_iter, r.densify.refine_stop_iter, r.densify.refine_every = 50, 100, 50
    for stage in config.stages:
        stage.steps = demo.stage_steps
    return config


def demo(out_dir: pathlib.Path, config: DemoConfig = DemoConfig()) -> dict:
    out_dir = pathlib.Path(out_dir)
    train, test = load_splits(default_scene_dir(), config.downsample)
    trainer = PRDTrainer(train, demo_config(config), out_dir / "run", test, name="default")
    trainer.train(progress=False)
    metrics = evaluate_inverse(trainer.model, test)
    relit = relight(trainer.model, test, test.relight_environment)
    strip = np.concatenate([np.concatenate([r, t], axis=0) for r, t in
                            zip(relit.permute(0, 2, 3, 1).numpy(), test.relit_images.numpy())], axis=1)
    iio.imwrite(out_dir / "relit_vs_truth.png", (strip * 255).round().astype(np.uint8))
    export(trainer.model, out_dir / "export", test)
    radiance = next(h for h in trainer.history if h.get("stage") == "radiance")
    return {"prd_" + k: round(float(v), 4) for k, v in metrics.items()} | {
        "plain_3dgs_novel_psnr": round(float(radiance["psnr"]), 4),
        "resolution": f"{train.height}x{train.width}", "num_gaussians": len(trainer.model.gaussians)}
