"""What the viewer shows, read from the path given to `distill3d view`.

``RUN_OR_PLY`` may be

* a Feature 3DGS run folder (``distill3d train``: ``point_cloud.ply`` [+ decoder], ``checkpoint.pt``, ``run.json``),
* a PRD run folder (``distill3d inverse train``: ``checkpoint.pt`` with the materials and light, ``run.json``),
* a 3DGS PLY (ours with ``feat_*`` columns, or any trainer's without: then only RGB and depth are shown),
* a field or PRD checkpoint (``.pt``).

The scene (cameras to snap to, object masks, the second environment) is ``--scene`` or the one the run
recorded in its ``run.json``. Nothing is unpickled: checkpoints are read by
:func:`distillcore.serialization.load_state` through the trainers' own loaders.
"""
from __future__ import annotations

import pathlib
from dataclasses import dataclass

import torch
from torch import Tensor

from distill3d.data import Scene, load_scene
from distill3d.fields.field import FeatureField
from distill3d.gaussians import Gaussians
from distillcore.serialization import read_json_object

RUN_INFO = "run.json"


@dataclass
class ViewerSource:
    """A loaded model and its context.

    Attributes:
        gaussians: the splats every mode renders (geometry, SH colour).
        field: the feature field (None when the splats carry no trained features).
        prd: the PRD model of an inverse-rendering run (None otherwise).
        scene: the train split of the scene (cameras, masks), or None when none is known.
        relight_environment: the scene's second environment ``[He, We, 3]`` (None if it has none).
        background: ``[3]`` colour under transparent pixels.
        path: what was opened; notes: why some modes are off (shown in the panel).
    """

    gaussians: Gaussians
    field: FeatureField | None
    prd: object | None  # distill3d.inverse.model.PRDModel (imported lazily)
    scene: Scene | None
    relight_environment: Tensor | None
    background: Tensor
    path: pathlib.Path
    notes: list[str]


def _run_info(folder: pathlib.Path) -> dict:
    path = folder / RUN_INFO
    if not path.is_file():
        return {}
    return read_json_object(path, what="run record")


def _field_source(path: pathlib.Path, notes: list[str]) -> tuple[Gaussians, FeatureField | None]:
    if path.suffix.lower() == ".ply":
        gaussians = Gaussians.load_ply(path)
        if not gaussians.has_trained_features:
            notes.append(f"{path.name} carries no trained features: RGB and depth only")
            return gaussians, None
        field = FeatureField.load(path)
        return field.gaussians, field
    from distill3d.fields.trainer import field_from_checkpoint

    field, _ = field_from_checkpoint(path)
    if not field.gaussians.has_trained_features:
        notes.append(f"{path.name} carries no trained features: RGB and depth only")
        return field.gaussians, None
    return field.gaussians, field


def _is_prd_checkpoint(path: pathlib.Path) -> bool:
    from distillcore.serialization import load_state

    state = load_state(path, what="checkpoint")
    return isinstance(state, dict) and "model_state" in state


def load_source(path: str | pathlib.Path, scene: str | pathlib.Path | None = None,
                background: str = "auto") -> ViewerSource:
    """Reads ``path`` (a run folder, PLY or checkpoint; module doc) and its scene.

    Args:
        path: what to show.
        scene: scene folder or bundled scene name; default: the ``scene`` recorded in the run's ``run.json``.
        background: colour under transparent pixels: ``auto`` (the training run's, else the scene's,
            else black), or anything ``distill3d render --background`` takes.

    Raises:
        FileNotFoundError: ``path`` does not exist. ValueError: it is not a field, PLY or PRD run
        (one line naming the file).
    """
    path = pathlib.Path(path)
    if not path.exists():
        raise FileNotFoundError(f"nothing to view at {path}")
    notes: list[str] = []
    folder = path if path.is_dir() else path.parent
    info = _run_info(folder)
    prd = None
    if path.is_dir():
        if (path / "point_cloud.ply").is_file():
            model_file = path / "point_cloud.ply"
        elif (path / "checkpoint.pt").is_file():
            model_file = path / "checkpoint.pt"
        else:
            raise ValueError(f"{path} is not a run folder: no point_cloud.ply or checkpoint.pt in it")
    else:
        model_file = path
    if model_file.suffix.lower() not in (".ply", ".pt"):
        raise ValueError(f"{path}: give a run folder, a .ply or a .pt checkpoint, not a {model_file.suffix!r} file")
    if model_file.suffix.lower() == ".pt" and _is_prd_checkpoint(model_file):
        from distill3d.inverse.trainer import model_from_checkpoint

        prd, prd_config = model_from_checkpoint(model_file)
        gaussians, field = prd.gaussians, None
        notes.append("PRD run: materials, progress and relighting; no feature channels to segment by")
    else:
        gaussians, field = _field_source(model_file, notes)

    scene_dir = scene if scene is not None else info.get("scene")
    train = None
    relight_env = None
    if scene_dir is not None:
        if prd is not None and scene is None and "downsample" in info:
            from distill3d.fields.config import SceneDataConfig
            from distill3d.inverse.pipeline import load_splits

            # the run's own views and background: PRD renders composite over the colour it trained with
            train, _ = load_splits(scene_dir, info["downsample"], SceneDataConfig(**info.get("data", {})),
                                   prd_config.radiance.background)
        else:
            train = load_scene(scene_dir, "train")
        relight_env = train.relight_environment
    else:
        notes.append("no scene (pass --scene DIR): no training views to snap to")
    background_colour = _background(background, model_file, train)
    return ViewerSource(gaussians, field, prd, train, relight_env, background_colour, path, notes)


def _background(spec: str, model_file: pathlib.Path, scene: Scene | None) -> Tensor:
    from distill3d.fields.render_cli import render_background

    scene_background = scene.background if scene is not None else torch.zeros(3)
    return render_background(spec, model_file, scene_background).float()


__all__ = ["ViewerSource", "load_source"]
