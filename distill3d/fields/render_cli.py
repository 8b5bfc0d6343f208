"""`distill3d render FIELD.ply --scene SCENE`: RGB / feature-PCA images of a trained field at a scene's
views, or a GIF/MP4 along an orbit around the scene."""
from __future__ import annotations

import pathlib

import numpy as np
import torch


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


def cmd_render(args) -> int:
    import imageio.v3 as iio

    from distill3d.data import load_scene

    from .field import FeatureField
    from .camera_path import orbit_path

    field = FeatureField.load(args.field)
    scene = load_scene(args.scene, args.split)
    background = scene.background
    if args.video:
        viewmats = orbit_path(scene, args.frames)
        frames = render_frames(field, viewmats, scene.Ks[0], scene.width, scene.height, args.what, background,
                               args.backend)
        write_video(args.video, frames, args.fps)
        print(f"{len(frames)} frames -> {args.video}")
        return 0
    out = args.out or pathlib.Path(args.field).parent / f"renders_{args.split}"
    out.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(scene.names):
        frame = render_frames(field, scene.viewmats[i:i + 1], scene.Ks[i], scene.width, scene.height, args.what,
                              background, args.backend)[0]
        iio.imwrite(out / f"{pathlib.Path(name).stem}_{args.what}.png", frame)
    print(f"{scene.num_views} images -> {out}")
    return 0


def add_parser(subparsers, name: str, help: str) -> None:
    p = subparsers.add_parser(name, help=help, description=help)
    p.add_argument("field", type=pathlib.Path, help="trained field (point_cloud.ply from `distill3d train`)")
    p.add_argument("--scene", required=True, help="scene folder whose cameras to render from")
    p.add_argument("--split", default="test", help="split of the scene (default test)")
    p.add_argument("--what", default="both", choices=["rgb", "pca", "both"],
                   help="RGB, PCA-to-RGB of the rendered features, or both side by side")
    p.add_argument("--out", type=pathlib.Path, default=None, help="image folder (default beside the field)")
    p.add_argument("--video", type=pathlib.Path, default=None,
                   help="render an orbit instead and write it here (.gif, or .mp4 with imageio-ffmpeg)")
    p.add_argument("--frames", type=int, default=60, help="frames of the orbit video")
    p.add_argument("--fps", type=int, default=15, help="frames per second of the video")
    p.add_argument("--backend", default="auto", choices=["auto", "native", "torch", "gsplat"], help="rasterizer backend")
    p.set_defaults(func=cmd_render)
