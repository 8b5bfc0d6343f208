"""`distill3d teachers`: list teachers, extract and cache a scene's teacher features, PCA images."""
from __future__ import annotations

import dataclasses
import pathlib

import numpy as np
import torch

from distillcore.config_cli import (add_config_arguments, add_config_file_arguments, add_run_options,
                                    apply_run_options, config_from_args)

from .cache import DEFAULT_CACHE


@dataclasses.dataclass
class ExtractConfig:
    """`distill3d teachers extract` options."""
    teacher: str = "efficientnet-lite0"  # registry name of the teacher (see `distill3d teachers list`)
    checkpoint: str | None = None  # weights file for teachers that load your own checkpoint (sam, clip)
    cache: pathlib.Path = DEFAULT_CACHE  # feature cache directory


def read_image(path: pathlib.Path) -> torch.Tensor:
    """An image file as ``[3, H, W]`` float in [0, 1] (alpha, if any, composited over black)."""
    from distill3d.data.files import read_image as read_array  # one reader: clear errors for bad files

    array = read_array(path)
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    scale = 65535.0 if array.dtype == np.uint16 else 255.0 if array.dtype == np.uint8 else 1.0
    image = torch.from_numpy(array.astype(np.float32) / scale)
    if image.shape[2] == 4:
        image = image[..., :3] * image[..., 3:]
    return image[..., :3].permute(2, 0, 1).clamp(0, 1).contiguous()


def write_image(path: pathlib.Path, image: torch.Tensor) -> None:
    """Writes ``[3, H, W]`` in [0, 1] as an 8-bit image."""
    import imageio.v3 as iio

    path.parent.mkdir(parents=True, exist_ok=True)
    array = (image.detach().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255 + 0.5).astype(np.uint8)
    iio.imwrite(path, array)


def _teacher_kwargs(args) -> dict:
    return {"checkpoint": args.checkpoint} if args.checkpoint else {}


def cmd_list(args) -> int:
    from . import available_teachers

    for entry in available_teachers():
        own = " [needs your weights: train --teacher-checkpoint, teachers extract --checkpoint]" if entry.needs_checkpoint else ""
        print(f"{entry.name:32s} {entry.description}{own}")
    return 0


def cmd_pca(args) -> int:
    import torch.nn.functional as F

    from . import build_teacher, pca_to_rgb

    teacher = build_teacher(args.teacher, **_teacher_kwargs(args))
    image = read_image(pathlib.Path(args.image))
    features = teacher(image)
    rgb = pca_to_rgb(features)
    rgb = F.interpolate(rgb[None], image.shape[1:], mode="nearest")[0]
    write_image(pathlib.Path(args.out), rgb)
    print(f"{args.teacher}: features {list(features.shape)} -> {args.out}")
    return 0


def cmd_extract(args) -> int:
    # The same reading as `distill3d train` (train split, plus test when present, with the same view
    # keys), so the maps cached here are exactly the ones training looks up.
    from distill3d.fields.pipeline import prepare_scene

    run = apply_run_options(args)
    cfg = config_from_args(ExtractConfig, args)
    scene_dir = pathlib.Path(args.scene)
    kwargs = {"checkpoint": cfg.checkpoint} if cfg.checkpoint else {}
    prepared = prepare_scene(scene_dir, cfg.teacher, cfg.cache, progress=run.progress, **kwargs)
    features = prepared.teacher_maps
    shape = list(next(iter(features.values())).shape)
    print(f"{len(features)} maps of shape {shape} cached under {cfg.cache / scene_dir.name}")
    return 0


def add_parser(subparsers, name: str, help: str) -> None:
    parser = subparsers.add_parser(name, help=help, description=help)
    sub = parser.add_subparsers(dest="teachers_command", metavar="ACTION", required=True)

    p = sub.add_parser("list", help="list the registered teachers")
    p.set_defaults(func=cmd_list)

    def teacher_options(p):
        p.add_argument("--teacher", default="efficientnet-lite0",
                       help="registry name of the teacher (see `distill3d teachers list`)")
        p.add_argument("--checkpoint", default=None,
                       help="weights file for teachers that load your own checkpoint (sam, clip)")

    p = sub.add_parser("pca", help="write the PCA-to-RGB image of a teacher's features of one image")
    p.add_argument("image", help="input image file (PNG/JPEG)")
    p.add_argument("--out", required=True, help="output PNG, at the image's size (nearest upsampling)")
    teacher_options(p)
    p.set_defaults(func=cmd_pca)

    p = sub.add_parser("extract", help="compute and cache the teacher features of every view of a scene")
    p.add_argument("scene", help="scene directory (Blender transforms_*.json or COLMAP)")
    add_config_file_arguments(p)
    add_config_arguments(p, ExtractConfig, group_title="extract config (ExtractConfig)")
    add_run_options(p)
    p.set_defaults(func=cmd_extract)
