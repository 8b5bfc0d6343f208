"""`distill3d render FIELD.ply --scene SCENE`: RGB / feature-PCA images of a trained field at a scene's
views, or a GIF/MP4 along an orbit around the scene."""
from __future__ import annotations

import dataclasses
import json
import pathlib
import sys
from typing import Literal

import numpy as np
import torch

from distillcore.config_cli import (add_config_arguments, add_config_file_arguments, add_run_options,
                                    apply_run_options, config_from_args)


def _to_uint8(image: torch.Tensor) -> np.ndarray:
    """``[3, H, W]`` in [0, 1] -> ``[H, W, 3]`` uint8."""
    return (image.detach().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255 + 0.5).astype(np.uint8)


@torch.no_grad()
def render_frames(field, viewmats: torch.Tensor, K: torch.Tensor, width: int, height: int, what: str,
                  background: torch.Tensor, backend: str = "auto") -> list[np.ndarray]:
    """Frames ``[H, W, 3]`` uint8 of ``what`` ("rgb", "pca" or "both": side by side) along ``viewmats``.

    The PCA colour map is fit on the first frame and reused, so colours are stable along a path.
    """
    from distill3d.teachers import fit_pca

    frames, projection = [], None
    for i in range(viewmats.shape[0]):
        out = field.render(viewmats[i:i + 1], K[None], width, height, background=background,
                           with_features=what != "rgb", backend=backend)
        panels = []
        if what in ("rgb", "both"):
            panels.append(out.rgb[0])
        if what in ("pca", "both"):
            if projection is None:
                projection = fit_pca(out.features[0])
            panels.append(projection(out.features[0]) * out.alpha[0])
        frames.append(_to_uint8(torch.cat(panels, dim=2)))
    return frames


def write_video(path: pathlib.Path, frames: list[np.ndarray], fps: int) -> None:
    """GIF (always available) or MP4 (needs ``imageio-ffmpeg``)."""
    import imageio.v3 as iio

    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".gif":
        iio.imwrite(path, np.stack(frames), duration=1000 / fps, loop=0)
        return
    try:
        import imageio_ffmpeg  # noqa: F401
    except ImportError as err:
        raise ValueError(f"writing {path.suffix} needs imageio-ffmpeg (pip install imageio-ffmpeg); "
                         "or use a .gif path") from err
    iio.imwrite(path, np.stack(frames), fps=fps)


@dataclasses.dataclass
class RenderConfig:
    """`distill3d render` options."""
    split: str = "test"  # split of the scene whose cameras to render from
    what: Literal["rgb", "pca", "both"] = "both"  # RGB, PCA-to-RGB of the rendered features, or both side by side
    out: pathlib.Path | None = None  # image folder (default renders_SPLIT beside the field)
    video: pathlib.Path | None = None  # render an orbit instead and write it here (.gif, or .mp4 with imageio-ffmpeg)
    frames: int = 60  # frames of the orbit video
    fps: int = 15  # frames per second of the video
    backend: Literal["auto", "native", "torch", "gsplat"] = "auto"  # rasterizer backend
    device: str = "cpu"  # torch device (cpu, cuda)
    downsample: int = 1  # render at 1/F of the scene's resolution
    # colour under transparent pixels: auto (the training run's, from metrics.json beside the field, else the
    # scene's), scene, white, black, R,G,B or learned (the run's learned colour)
    background: str = "auto"

    def validate(self) -> None:
        for name in ("frames", "fps", "downsample"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name} must be >= 1, got {getattr(self, name)}")
        if self.background != "auto":
            from .background import parse_background

            if parse_background(self.background) == "random":
                raise ValueError("--background random is a training option: render with a colour, scene or learned")


def render_background(spec: str, field_path: pathlib.Path, scene_background: torch.Tensor) -> torch.Tensor:
    """The colour ``[3]`` to render over: ``auto``/``learned`` read the training run's colour from the
    ``metrics.json`` beside the field (``auto`` falls back to the scene's)."""
    from .background import resolve_colour

    metrics_path = pathlib.Path(field_path).parent / "metrics.json"
    trained = None
    if metrics_path.is_file():
        trained = json.loads(metrics_path.read_text()).get("background")
    if spec == "auto":
        return torch.tensor(trained, dtype=torch.float32) if trained is not None else scene_background.float()
    return resolve_colour(spec, scene_background, None if trained is None else torch.tensor(trained))


def cmd_render(args) -> int:
    import imageio.v3 as iio

    from distill3d.data import load_scene

    from .camera_path import orbit_path
    from .field import FeatureField

    apply_run_options(args)
    cfg = config_from_args(RenderConfig, args)
    field = FeatureField.load(args.field).to(cfg.device)
    if not field.gaussians.has_trained_features and cfg.what != "rgb":
        if cfg.what == "pca":
            raise ValueError(f"{args.field} carries no trained features (all zero: a plain 3DGS field?); "
                             "--what rgb renders its colours")
        print(f"{args.field} carries no trained features: rendering RGB only", file=sys.stderr)
        cfg.what = "rgb"
    scene = load_scene(args.scene, cfg.split).downsample(cfg.downsample)
    background = render_background(cfg.background, args.field, scene.background).to(cfg.device)
    viewmats, Ks = scene.viewmats.to(cfg.device), scene.Ks.to(cfg.device)
    if cfg.video:
        viewmats = orbit_path(scene, cfg.frames).to(cfg.device)
        frames = render_frames(field, viewmats, Ks[0], scene.width, scene.height, cfg.what, background,
                               cfg.backend)
        write_video(cfg.video, frames, cfg.fps)
        print(f"{len(frames)} frames -> {cfg.video}")
        return 0
    out = cfg.out or pathlib.Path(args.field).parent / f"renders_{cfg.split}"
    out.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(scene.names):
        frame = render_frames(field, viewmats[i:i + 1], Ks[i], scene.width, scene.height, cfg.what,
                              background, cfg.backend)[0]
        iio.imwrite(out / f"{pathlib.Path(name).stem}_{cfg.what}.png", frame)
    print(f"{scene.num_views} images -> {out}")
    return 0


def add_parser(subparsers, name: str, help: str) -> None:
    p = subparsers.add_parser(name, help=help, description=help)
    p.add_argument("field", type=pathlib.Path, help="trained field (point_cloud.ply from `distill3d train`)")
    p.add_argument("--scene", required=True, help="scene folder whose cameras to render from")
    add_config_file_arguments(p)
    add_config_arguments(p, RenderConfig, group_title="render config (RenderConfig)")
    add_run_options(p)
    p.set_defaults(func=cmd_render)
