"""End-to-end Feature 3DGS: scene folder + teacher name -> trained field, metrics, PLY.

1. read the train / test splits (``distill3d.data.load_scene``; missing poses or one view fail here);
2. teacher maps of every image through the on-disk :class:`~distill3d.teachers.FeatureCache`;
3. train (:class:`~distill3d.fields.trainer.Trainer`), resuming from ``out_dir/checkpoint.pt`` if asked;
4. write ``out_dir/point_cloud.ply`` (3DGS columns + ``feat_*``) and ``out_dir/metrics.json``.
"""
from __future__ import annotations

import dataclasses
import json
import pathlib
from dataclasses import dataclass

import torch
from torch import Tensor

from distill3d.data import Scene, load_scene
from distill3d.teachers import build_teacher, scene_features

from .config import TrainConfig
from .trainer import Trainer

DEFAULT_CACHE = pathlib.Path.home() / ".cache" / "distillkit" / "features"


@dataclass
class PreparedScene:
    name: str
    train: Scene
    test: Scene | None
    teacher_maps: dict[str, Tensor] | None


def downscale_scene(scene: Scene, factor: int) -> Scene:
    """The scene at ``1/factor`` resolution: images area-averaged, intrinsics scaled
    (``K' = diag(1/f, 1/f, 1) K``, exact for the pixel-centre-at-0.5 convention), masks subsampled."""
    if factor == 1:
        return scene
    if factor < 1 or scene.height % factor or scene.width % factor:
        raise ValueError(f"downscale factor must be >= 1 and divide the image size "
                         f"{scene.height}x{scene.width}, got {factor}")
    images = torch.nn.functional.avg_pool2d(scene.images.permute(0, 3, 1, 2), factor).permute(0, 2, 3, 1)
    Ks = scene.Ks.clone()
    Ks[:, :2, :] /= factor
    masks = scene.masks[:, factor // 2::factor, factor // 2::factor] if scene.masks is not None else None
    depths = scene.depths[:, factor // 2::factor, factor // 2::factor] if scene.depths is not None else None
    return dataclasses.replace(scene, images=images.contiguous(), Ks=Ks, masks=masks, depths=depths, alphas=None,
                               normals=None, albedos=None, roughness=None, metallic=None, relit_images=None)


def prepare_scene(scene_dir: str | pathlib.Path, teacher: str | None, cache_dir: str | pathlib.Path = DEFAULT_CACHE,
                  progress: bool = True, downscale: int = 1, **teacher_kwargs) -> PreparedScene:
    """Loads both splits and, unless ``teacher`` is None, their teacher maps; then reduces the images
    to ``1/downscale`` resolution (teachers see the full-resolution images, so their grids do not shrink)."""
    scene_dir = pathlib.Path(scene_dir)
    train = load_scene(scene_dir, "train")
    test = load_scene(scene_dir, "test") if (scene_dir / "transforms_test.json").is_file() else None
    if test is not None and set(train.names) & set(test.names):
        test = _prefixed(test, "test_")  # keep map keys unique across splits
    maps = None
    if teacher is not None:
        scenes = [train] + ([test] if test is not None else [])
        maps = scene_features(scenes, scene_dir.name, build_teacher(teacher, **teacher_kwargs), cache_dir, progress)
    train = downscale_scene(train, downscale)
    test = downscale_scene(test, downscale) if test is not None else None
    return PreparedScene(scene_dir.name, train, test, maps)


def _prefixed(scene: Scene, prefix: str) -> Scene:
    return dataclasses.replace(scene, names=[prefix + n for n in scene.names])


def train_field(scene_dir: str | pathlib.Path, config: TrainConfig, out_dir: str | pathlib.Path,
                cache_dir: str | pathlib.Path = DEFAULT_CACHE, resume: bool = False, progress: bool = True,
                plain: bool = False, downscale: int = 1, **teacher_kwargs) -> tuple[Trainer, dict]:
    """Trains a feature field (or plain 3DGS with ``plain=True``) and writes the PLY and metrics."""
    out_dir = pathlib.Path(out_dir)
    prepared = prepare_scene(scene_dir, None if plain else config.teacher, cache_dir, progress, downscale,
                             **teacher_kwargs)
    trainer = Trainer(prepared.train, config, out_dir, prepared.teacher_maps, prepared.test, name=prepared.name)
    if resume and trainer.checkpoint_path.is_file():
        trainer.resume()
    metrics = trainer.train(progress=progress)
    trainer.field.save(out_dir / "point_cloud.ply")
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "metrics.json").write_text(json.dumps({"teacher": None if plain else config.teacher, **metrics},
                                                     indent=2))
    return trainer, metrics
