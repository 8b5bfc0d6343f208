"""``distill3d scenes``: build scenes from recipes, list the recipes, describe a scene folder."""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from distillcore.checks import check_range
from distillcore.config_cli import (add_config_arguments, add_config_file_arguments, add_run_options,
                                    apply_run_options, config_from_args)


@dataclasses.dataclass
class BuildConfig:
    """`distill3d scenes build` options (unset values keep the recipe's)."""
    out: Path | None = None  # output folder (default: the package's scenes/NAME)
    spp: int | None = None  # path-traced samples per pixel (default: the recipe's)
    resolution: tuple[int, int] | None = None  # image width and height in pixels (default: the recipe's)
    num_train: int | None = None  # number of training views (default: the recipe's)
    num_test: int | None = None  # number of held-out test views (default: the recipe's)
    overwrite: bool = False  # re-render views that already exist

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        """Unset values keep the recipe's; set ones must be positive (num_test may be 0)."""
        if self.spp is not None:
            check_range(self.spp, "spp", 1, integer=True)
        if self.resolution is not None:
            for name, value in zip(("width", "height"), self.resolution):
                check_range(value, f"resolution {name}", 1, integer=True)
        if self.num_train is not None:
            check_range(self.num_train, "num_train", 2, integer=True)  # a 3D field needs 2 posed views
        if self.num_test is not None:
            check_range(self.num_test, "num_test", 0, integer=True)


def add_parser(subparsers, name: str, help: str) -> None:
    parser = subparsers.add_parser(name, help=help, description=(
        "Render multi-view scenes with mitsuba 3 (CPU) from scene recipes, and inspect scene folders "
        "(Blender transforms_*.json or COLMAP sparse/0)."))
    actions = parser.add_subparsers(dest="scenes_action", metavar="ACTION")
    parser.set_defaults(func=lambda args: parser.print_help() or 2)

    build = actions.add_parser("build", help="render a recipe into a scene folder", description=(
        "Render recipe NAME: RGB(A) train/test views, depth, normals, albedo, roughness/metallic, object masks, "
        "and the test views relit under a second environment, in Blender transforms_{train,test}.json form. "
        "An interrupted build resumes: views whose files exist are skipped unless --overwrite."))
    build.add_argument("name", help="recipe name (see `distill3d scenes list`)")
    add_config_file_arguments(build)
    add_config_arguments(build, BuildConfig, group_title="build config (BuildConfig)")
    add_run_options(build)
    build.set_defaults(func=_build)

    listing = actions.add_parser("list", help="list the scene recipes", description="List the scene recipes.")
    listing.set_defaults(func=_list)

    info = actions.add_parser("info", help="describe a scene folder", description=(
        "Read a Blender or COLMAP scene folder and print its splits, resolution, buffers, objects and size."))
    info.add_argument("path", type=Path, help="scene folder")
    info.set_defaults(func=_info)


def _build(args: argparse.Namespace) -> int:
    from distill3d.data import SCENES_DIR
    from distill3d.data.builder import build_scene
    from distill3d.data.recipes import get_recipe

    run = apply_run_options(args)
    cfg = config_from_args(BuildConfig, args)
    args.out, args.spp, args.resolution, args.num_train, args.num_test = (
        cfg.out, cfg.spp, cfg.resolution, cfg.num_train, cfg.num_test)
    recipe = get_recipe(args.name)
    render, cameras = recipe.render, recipe.cameras
    if args.spp is not None:
        render = dataclasses.replace(render, spp=args.spp)
    if args.resolution is not None:
        render = dataclasses.replace(render, width=args.resolution[0], height=args.resolution[1])
    if args.num_train is not None:
        cameras = dataclasses.replace(cameras, num_train=args.num_train)
    if args.num_test is not None:
        cameras = dataclasses.replace(cameras, num_test=args.num_test)
    out = build_scene(recipe.replace(render=render, cameras=cameras), args.out or SCENES_DIR / args.name,
                      overwrite=cfg.overwrite, progress=run.progress)
    print(f"scene {recipe.name} written to {out}")
    return 0


def _list(args: argparse.Namespace) -> int:
    from distill3d.data.recipes import RECIPES

    for recipe in RECIPES.values():
        r, c = recipe.render, recipe.cameras
        objects = ", ".join(f"{o.name} ({o.mesh})" for o in recipe.objects)
        print(f"{recipe.name:8s} {r.width}x{r.height}, {c.num_train} train + {c.num_test} test views, {r.spp} spp: "
              f"{recipe.description}\n{'':9s}objects: {objects}")
    return 0


def _info(args: argparse.Namespace) -> int:
    from distill3d.data import load_scene
    from distill3d.data.scene import PER_VIEW_BUFFERS

    from distill3d.data import resolve_scene_dir

    path: Path = resolve_scene_dir(args.path)  # a folder or a bundled scene's name
    splits = sorted(p.stem.removeprefix("transforms_") for p in path.glob("transforms_*.json")) or ["train", "test"]
    for split in splits:
        scene = load_scene(path, split, min_views=1)
        buffers = [name for name in PER_VIEW_BUFFERS if getattr(scene, name) is not None]
        print(f"{split}: {scene.num_views} views, {scene.width}x{scene.height}, fx={float(scene.Ks[0, 0, 0]):.2f}; "
              f"buffers: {', '.join(buffers) or 'none'}"
              + (f"; {scene.points.shape[0]} sparse points" if scene.points is not None else ""))
    if scene.object_names:
        print("objects: " + ", ".join(f"{i}={n}" for i, n in enumerate(scene.object_names)))
    if scene.environment is not None:
        print(f"environments: {list(scene.environment.shape)} (train), "
              f"{list(scene.relight_environment.shape) if scene.relight_environment is not None else 'none'} (relight)")
    size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    print(f"size on disk: {size / 2**20:.2f} MiB")
    return 0
