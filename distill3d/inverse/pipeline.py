"""End-to-end PRD: scene folder -> trained relightable Gaussians, metrics and exports.

``train_prd`` reads both splits (optionally area-downsampled, which CPU runs need), trains
(:class:`PRDTrainer`, resuming ``out_dir/checkpoint.pt`` on request) and writes ``metrics.json``,
``run.json`` (the scene and downsampling, so ``relight`` finds the views again) and the exports of
:func:`distill3d.inverse.relight.export`.
"""
from __future__ import annotations

import dataclasses
import json
import pathlib

import torch
import torch.nn.functional as F

from distillcore.checks import check_positive
from distill3d.data import Scene, load_scene

from .config import PRDConfig
from .relight import export
from .trainer import PRDTrainer

# per-view buffers averaged over each factor x factor block (normals are re-normalised)
AREA_BUFFERS = ("images", "alphas", "depths", "normals", "albedos", "roughness", "metallic", "relit_images")


def downsample_scene(scene: Scene, factor: int) -> Scene:
    """The scene at ``1 / factor`` resolution: buffers area-averaged, object ids sampled at block
    centres, intrinsics scaled (pixel centres at +0.5 stay consistent)."""
    check_positive(factor, "factor")
    if factor == 1:
        return scene
    if scene.height % factor or scene.width % factor:
        raise ValueError(f"downsample factor {factor} does not divide the image size {scene.height} x {scene.width}")

    def pool(x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(x.permute(0, 3, 1, 2), factor).permute(0, 2, 3, 1)

    buffers = {name: pool(getattr(scene, name)) for name in AREA_BUFFERS if getattr(scene, name) is not None}
    if "normals" in buffers:
        buffers["normals"] = F.normalize(buffers["normals"], dim=-1)
    if scene.masks is not None:
        buffers["masks"] = scene.masks[:, factor // 2::factor, factor // 2::factor]
    Ks = scene.Ks.clone()
    Ks[:, :2] /= factor
    return dataclasses.replace(scene, Ks=Ks, **buffers)


def load_splits(scene_dir: str | pathlib.Path, downsample: int = 1) -> tuple[Scene, Scene | None]:
    scene_dir = pathlib.Path(scene_dir)
    train = downsample_scene(load_scene(scene_dir, "train"), downsample)
    test = load_scene(scene_dir, "test") if (scene_dir / "transforms_test.json").is_file() else None
    return train, (downsample_scene(test, downsample) if test is not None else None)


def train_prd(scene_dir: str | pathlib.Path, config: PRDConfig, out_dir: str | pathlib.Path, *, downsample: int = 1,
              resume: bool = False, progress: bool = True) -> tuple[PRDTrainer, dict]:
    """Trains PRD on a scene folder and writes metrics, run info and exports under ``out_dir``."""
    scene_dir, out_dir = pathlib.Path(scene_dir), pathlib.Path(out_dir)
    train, test = load_splits(scene_dir, downsample)
    trainer = PRDTrainer(train, config, out_dir, test, name=scene_dir.name)
    if resume and trainer.checkpoint_path.is_file():
        trainer.resume()
    metrics = trainer.train(progress=progress)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "run.json").write_text(json.dumps({"scene": str(scene_dir.resolve()), "downsample": downsample}, indent=2))
    (out_dir / "metrics.json").write_text(json.dumps({"history": trainer.history, **metrics}, indent=2))
    export(trainer.model, out_dir / "export", test, backend=config.radiance.backend)
    return trainer, metrics
