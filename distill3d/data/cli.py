"""``distill3d scenes``: build scenes from recipes, list the recipes, describe a scene folder."""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path


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
    build.add_argument("--out", type=Path, default=None, help="output folder (default: scenes/NAME in the repository)")
    build.add_argument("--spp", type=int, default=None, help="path-traced samples per pixel (default: the recipe's)")
    build.add_argument("--resolution", type=int, nargs=2, metavar=("W", "H"), default=None,
                       help="image width and height in pixels (default: the recipe's)")
    build.add_argument("--num-train", type=int, default=None, help="number of training views (default: the recipe's)")
    build.add_argument("--num-test", type=int, default=None, help="number of held-out test views (default: the recipe's)")
    build.add_argument("--overwrite", action="store_true", help="re-render views that already exist")
    build.add_argument("--quiet", action="store_true", help="no progress bar")
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
                      overwrite=args.overwrite, progress=not args.quiet)
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

    path: Path = args.path
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
