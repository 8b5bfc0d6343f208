"""Random Gaussian scenes with a controlled depth complexity, for tests and the rasterizer benchmark.

Gaussians fill the cube ``[-1, 1]^3`` in front of cameras placed on a circle of radius ``distance``
looking at the origin. A splat of screen standard deviation ``s`` pixels and opacity ``o`` covers about
``2 pi s^2 ln(255 o)`` pixels above the 1/255 alpha cut-off, so for ``N`` Gaussians over ``W H`` pixels

.. math::  s = \\sqrt{\\frac{b\\, W H}{2 \\pi N \\ln(255\\, \\bar o)}}

gives about ``b`` blends per pixel before transmittance saturation (fewer are composited where ``T``
drops below 1e-4).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class SceneConfig:
    """Size and statistics of a random scene."""

    n_gaussians: int = 10_000
    width: int = 256
    height: int = 256
    n_cameras: int = 1
    feature_dim: int = 0
    sh_degree: int | None = None
    blends_per_pixel: float = 30.0
    opacity_range: tuple[float, float] = (0.05, 0.6)
    # Camera distance from the origin and focal length as a multiple of the image width.
    distance: float = 4.0
    focal_factor: float = 1.2
    # Spread of the scales around the target size (log-normal standard deviation).
    scale_log_std: float = 0.3
    seed: int = 0


def look_at_viewmat(eye: Tensor, target: Tensor, up: Tensor) -> Tensor:  # [3] x3 -> [4, 4]
    """World-to-camera matrix (OpenCV axes: x right, y down, z forward) of a camera at ``eye``."""
    forward = torch.nn.functional.normalize(target - eye, dim=0)
    right = torch.nn.functional.normalize(torch.linalg.cross(forward, up), dim=0)
    down = torch.linalg.cross(forward, right)
    rotation = torch.stack([right, down, forward])  # rows: camera axes in world coordinates
    viewmat = torch.eye(4, dtype=eye.dtype)
    viewmat[:3, :3] = rotation
    viewmat[:3, 3] = -rotation @ eye
    return viewmat


def random_scene(config: SceneConfig, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> dict[str, Tensor | int]:
    """Keyword arguments for :func:`distill3d.render.rasterize` (minus the options) of a random scene."""
    generator = torch.Generator().manual_seed(config.seed)
    n = config.n_gaussians

    def uniform(*shape: int, low: float = 0.0, high: float = 1.0) -> Tensor:
        return low + (high - low) * torch.rand(*shape, generator=generator, dtype=torch.float64)

    focal = config.focal_factor * config.width
    mean_opacity = sum(config.opacity_range) / 2
    sigma_px = math.sqrt(
        config.blends_per_pixel * config.width * config.height
        / (2 * math.pi * max(n, 1) * math.log(255 * mean_opacity))
    )
    sigma_world = sigma_px * config.distance / focal
    scales = sigma_world * torch.exp(config.scale_log_std * torch.randn(n, 3, generator=generator, dtype=torch.float64))

    angles = torch.linspace(0, 2 * math.pi, config.n_cameras + 1, dtype=torch.float64)[:-1] * 0.25
    viewmats = torch.stack(
        [
            look_at_viewmat(
                torch.tensor([config.distance * math.sin(a), 0.3, -config.distance * math.cos(a)], dtype=torch.float64),
                torch.zeros(3, dtype=torch.float64),
                torch.tensor([0.0, -1.0, 0.0], dtype=torch.float64),
            )
            for a in angles.tolist()
        ]
    )
    K = torch.tensor(
        [[focal, 0, config.width / 2], [0, focal, config.height / 2], [0, 0, 1]], dtype=torch.float64
    )
    scene: dict[str, Tensor | int] = {
        "means": uniform(n, 3, low=-1.0, high=1.0),
        "quats": torch.randn(n, 4, generator=generator, dtype=torch.float64),
        "scales": scales,
        "opacities": uniform(n, low=config.opacity_range[0], high=config.opacity_range[1]),
        "viewmats": viewmats,
        "Ks": K[None].repeat(config.n_cameras, 1, 1),
    }
    if config.sh_degree is None:
        scene["colors"] = uniform(n, 3)
    else:
        scene["colors"] = 0.3 * torch.randn(n, (config.sh_degree + 1) ** 2, 3, generator=generator, dtype=torch.float64)
    if config.feature_dim:
        scene["features"] = torch.randn(n, config.feature_dim, generator=generator, dtype=torch.float64)
    scene = {k: v.to(device=device, dtype=dtype) for k, v in scene.items()}
    scene.update(width=config.width, height=config.height)
    if config.sh_degree is not None:
        scene["sh_degree"] = config.sh_degree
    return scene
