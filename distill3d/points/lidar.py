"""A rotating multi-beam LiDAR cast with open3d's ``RaycastingScene``.

``num_beams`` lasers at elevations evenly spread over ``[elevation_min, elevation_max]`` sweep the
azimuth in steps of ``azimuth_step``. A return at distance :math:`r` along unit direction :math:`d`
becomes the point :math:`(r + \\epsilon) d` with range noise :math:`\\epsilon \\sim N(0, \\sigma^2)`;
each return is dropped with probability ``dropout`` (dark or specular surfaces in a real sensor).
Intensity follows a Lambertian model, :math:`I = \\rho\\, |\\cos\\theta| + N(0, \\sigma_I^2)` clipped to
[0, 1], with :math:`\\rho` the surface's reflectance and :math:`\\theta` the incidence angle.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from distillcore.extras import require_extra

if TYPE_CHECKING:
    import open3d as o3d


@dataclass
class LidarConfig:
    """Sensor pattern and noise (defaults: a 32-beam unit, KITTI-like mounting height)."""

    num_beams: int = 32
    elevation_min_deg: float = -18.0
    elevation_max_deg: float = 4.0
    azimuth_step_deg: float = 0.35
    max_range: float = 45.0
    mount_height: float = 1.73  # the ground is at z = -mount_height in the LiDAR frame
    range_noise_std: float = 0.02
    dropout: float = 0.05
    intensity_noise_std: float = 0.02


def beam_directions(cfg: LidarConfig) -> np.ndarray:  # [R, 3] unit vectors
    """One unit ray per (beam, azimuth step) of a full revolution."""
    elevation = np.deg2rad(np.linspace(cfg.elevation_min_deg, cfg.elevation_max_deg, cfg.num_beams))
    azimuth = np.deg2rad(np.arange(-180.0, 180.0, cfg.azimuth_step_deg))
    el, az = np.meshgrid(elevation, azimuth, indexing="ij")
    return np.stack([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)], axis=-1).reshape(-1, 3)


def cast_rays(
    scene: o3d.t.geometry.RaycastingScene,
    origins: np.ndarray,  # [R, 3]
    directions: np.ndarray,  # [R, 3] unit
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(distance [R], geometry id [R], triangle normal [R, 3])`` of each ray's first hit;
    distance is ``inf`` and id ``INVALID_ID`` on a miss."""
    o3d = require_extra("open3d", "points")  # at use: the module imports (and --help works) without it
    rays = o3d.core.Tensor(np.concatenate([origins, directions], axis=1).astype(np.float32))
    hit = scene.cast_rays(rays)
    return hit["t_hit"].numpy(), hit["geometry_ids"].numpy().astype(np.int64), hit["primitive_normals"].numpy()


def scan_scene(
    scene: o3d.t.geometry.RaycastingScene,
    reflectance: np.ndarray,  # [G] per geometry id
    cfg: LidarConfig,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """``(points [P, 4] float32 x, y, z, intensity, geometry id [P])`` of one revolution."""
    directions = beam_directions(cfg)
    distance, geometry, normals = cast_rays(scene, np.zeros_like(directions), directions)
    keep = np.isfinite(distance) & (distance <= cfg.max_range) & (rng.random(len(distance)) >= cfg.dropout)
    distance, geometry, normals, directions = distance[keep], geometry[keep], normals[keep], directions[keep]
    noisy = distance + rng.normal(0.0, cfg.range_noise_std, size=distance.shape)
    xyz = directions * noisy[:, None]
    cos_incidence = np.abs((normals * directions).sum(axis=1))
    intensity = reflectance[geometry] * cos_incidence + rng.normal(0.0, cfg.intensity_noise_std, size=distance.shape)
    points = np.concatenate([xyz, np.clip(intensity, 0.0, 1.0)[:, None]], axis=1).astype(np.float32)
    return points, geometry


__all__ = ["LidarConfig", "beam_directions", "cast_rays", "scan_scene"]
