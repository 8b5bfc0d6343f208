"""`make wheel-check`'s smoke test of an installed distillkit wheel with the core dependencies only.

Run it with the Python of a fresh venv that holds the wheel, from a folder outside the source tree (the
Makefile does both), so that every import comes from the installed package. It checks that

1. the packages import from site-packages and carry their package data (kernel sources, bundled scenes);
2. every command's ``--help`` works and ``distill3d scenes info default`` finds the bundled scene by name;
3. the native backend builds from the installed kernel sources and renders a random scene as the torch
   reference does (values and gradients);
4. a command whose extra is not installed (``distill3d points simulate`` without open3d) prints one line
   naming the extra and exits with code 2.

Prints one line per check and exits non-zero at the first failure.
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path


class SmokeFailure(AssertionError):
    """A check of the installed wheel failed."""


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise SmokeFailure(message)


def _run(*argv: str) -> subprocess.CompletedProcess:
    script = Path(sys.executable).parent / argv[0]
    return subprocess.run([str(script), *argv[1:]], capture_output=True, text=True, timeout=600)


def check_installed() -> None:
    import distill3d
    import distillcore
    import graphdistill
    from distill3d.data import bundled_scenes
    from distill3d.render import native

    for package in (distill3d, distillcore, graphdistill):
        where = Path(package.__file__).resolve()
        _check("site-packages" in where.parts, f"{package.__name__} imported from {where}, not an installed wheel")
    for relative in ("bindings.cpp", "include/distill3d/common.h", "cpu/rasterize_fwd_cpu.cpp", "cuda/raster_tile.cuh"):
        _check((native.CSRC / relative).is_file(), f"kernel source {relative} missing from the wheel ({native.CSRC})")
    _check({"default", "glossy"} <= set(bundled_scenes()), f"bundled scenes missing: {bundled_scenes()}")


def check_commands() -> None:
    """Every ``--help`` in this interpreter (one import of torch, not one per command), then the installed
    console scripts themselves on the bundled scene."""
    import contextlib
    import io

    from distill3d.cli import GROUPS as D3_GROUPS
    from distill3d.cli import main as d3_main
    from graphdistill.cli import GROUPS as GD_GROUPS
    from graphdistill.cli import main as gd_main

    for prog, main, groups in (("distill3d", d3_main, D3_GROUPS), ("graphdistill", gd_main, GD_GROUPS)):
        for argv in (["--help"], *([name, "--help"] for name, _, _ in groups)):
            text = io.StringIO()
            with contextlib.redirect_stdout(text), contextlib.suppress(SystemExit):
                main(argv)
            _check(text.getvalue().startswith("usage:"), f"`{prog} {' '.join(argv)}` printed {text.getvalue()[:300]!r}")
    for argv, expected in ((("distill3d", "scenes", "info", "default"), "train: "),
                           (("graphdistill", "--help"), "usage: graphdistill")):
        result = _run(*argv)
        _check(result.returncode == 0 and expected in result.stdout,
               f"`{' '.join(argv)}` exited {result.returncode}: {result.stdout[-300:]} {result.stderr.strip()[-500:]}")


def check_native_render() -> None:
    import torch

    from distill3d.render import rasterize
    from distill3d.render.native import native_build_error
    from distill3d.render.random_scene import SceneConfig, random_scene
    from distill3d.render.rasterize import native_status

    ok, why = native_status("cpu")
    _check(ok, f"the native backend does not build from the installed sources: {why} ({native_build_error()})")
    scene = random_scene(SceneConfig(n_gaussians=200, width=40, height=30, n_cameras=2, feature_dim=3, seed=3))
    outputs = {}
    for backend in ("native", "torch"):
        params = {k: scene[k].clone().requires_grad_(True) for k in ("means", "opacities", "colors")}
        rest = {k: v for k, v in scene.items() if k not in params}
        render, _, alpha, _ = rasterize(**params, **rest, backend=backend)
        (render.square().sum() + alpha.sum()).backward()
        outputs[backend] = (render.detach(), alpha.detach(), *(p.grad for p in params.values()))
    for name, got, want in zip(("render", "alpha", "d means", "d opacities", "d colors"), *outputs.values()):
        scale = want.abs().max().item()
        torch.testing.assert_close(got, want, rtol=1e-3, atol=1e-4 * max(scale, 1e-3),
                                   msg=lambda m, name=name: f"native vs torch {name}: {m}")


def check_missing_extra() -> None:
    import importlib.util

    if importlib.util.find_spec("open3d") is not None:
        print("  (open3d is installed here: missing-extra check skipped)")
        return
    with tempfile.TemporaryDirectory() as out:
        result = _run("distill3d", "points", "simulate", "--out", out)
    lines = result.stderr.strip().splitlines()
    _check(result.returncode == 2 and len(lines) == 1 and "[points]" in lines[0] and "open3d" in lines[0],
           f"`distill3d points simulate` without open3d: exit {result.returncode}, stderr {result.stderr!r}")


def main() -> int:
    checks = [("installed package and package data", check_installed),
              ("every --help; console scripts, scenes info on the bundled scene", check_commands),
              ("native render == torch reference", check_native_render),
              ("missing extra: one line, exit 2", check_missing_extra)]
    for title, check in checks:
        start = time.perf_counter()
        try:
            check()
        except (SmokeFailure, AssertionError) as err:
            print(f"wheel smoke: FAILED {title}: {err}", file=sys.stderr)
            return 1
        print(f"wheel smoke: ok  {title} ({time.perf_counter() - start:.1f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
