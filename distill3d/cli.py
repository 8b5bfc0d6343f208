"""`distill3d` command line: one sub-command group per method, each registered by its own module.

Every group module exposes ``add_parser(subparsers, name, help)`` (see ``distillcore.cli``).
"""
from __future__ import annotations

import sys

from distillcore.cli import build_parser, console, run
from distillcore.config_cli import preload_environment

# (command, module that registers it, one-line help)
GROUPS = [
    ("scenes", "distill3d.data.cli", "build and inspect multi-view scenes"),
    ("teachers", "distill3d.teachers.cli", "list 2D teachers, cache and visualise their features"),
    ("train", "distill3d.fields.cli", "train a Feature 3DGS field on a scene"),
    ("render", "distill3d.fields.render_cli", "render RGB / feature / PCA images and videos"),
    ("query", "distill3d.query.cli", "segment, prompt, edit and compress a trained field"),
    ("points", "distill3d.points.cli", "PointDistiller: simulate LiDAR, train, distill, evaluate detectors"),
    ("inverse", "distill3d.inverse.cli", "progressive radiance distillation: materials, light, relighting"),
    ("view", "distill3d.viewer.cli", "browser viewer: render modes, click to segment, edit, relight (extra [viewer])"),
]


def main(argv: list[str] | None = None) -> int:
    preload_environment()  # before any command imports torch (see distillcore.config_cli)
    parser = build_parser(
        "distill3d", GROUPS,
        "Distill 2D foundation features and physical materials into Gaussian splatting fields, "
        "and compress point-cloud 3D detectors.",
    )
    return run(parser, argv)


def console_main() -> int:
    """The ``distill3d`` console script."""
    return console("distill3d", main)


if __name__ == "__main__":
    sys.exit(console_main())
