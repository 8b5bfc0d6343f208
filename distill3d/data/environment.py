"""Procedural HDR environment maps (equirectangular, z-up world) and their direction convention.

An environment is a float32 array ``[H, W, 3]`` of linear radiance. Pixel (row r, column c) is the
radiance arriving from world direction (z up)

    theta = pi * r / (H - 1)            (polar angle from +z: row 0 is the zenith, row H-1 the nadir)
    phi   = 2 pi * (c + 0.5) / W
    d     = (sin theta sin phi, sin theta cos phi, cos theta)

which is exactly how mitsuba 3's ``envmap`` emitter reads the bitmap when given
``to_world = rotate([1, 0, 0], 90)`` (checked by rendering, see the tests): mitsuba puts the first
and last rows on the poles and the columns at half-texel offsets.

The synthetic sky is a gradient plus a sun lobe (a von Mises-Fisher lobe around the sun direction s):

    L(d) = sky(d) + I_sun * c_sun * exp(kappa (d . s - 1))
    sky(d) = lerp(horizon, zenith, d_z ** sky_exponent)    for d_z >= 0,   ground colour below.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from distillcore.serialization import load_arrays


@dataclass(frozen=True)
class EnvironmentConfig:
    """A procedural sky: colours are linear RGB, angles in degrees."""

    height: int = 64
    width: int = 128
    zenith_color: tuple[float, float, float] = (0.25, 0.40, 0.80)
    horizon_color: tuple[float, float, float] = (0.80, 0.85, 0.90)
    ground_color: tuple[float, float, float] = (0.25, 0.22, 0.20)
    sky_exponent: float = 0.5
    sky_intensity: float = 1.0
    sun_azimuth_deg: float = 45.0  # phi of the sun, measured like the map's columns
    sun_elevation_deg: float = 50.0  # above the horizon
    sun_color: tuple[float, float, float] = (1.0, 0.95, 0.85)
    sun_intensity: float = 60.0
    sun_kappa: float = 400.0  # lobe sharpness: angular radius ~ 1/sqrt(kappa) rad (~3 deg at 400)


def equirect_directions(height: int, width: int) -> np.ndarray:
    """World directions ``[H, W, 3]`` (unit, z up) of every environment pixel (module convention)."""
    if height < 2 or width < 1:
        raise ValueError(f"environment must be at least 2 x 1 pixels, got {height} x {width}")
    theta = math.pi * np.arange(height) / (height - 1)
    phi = 2.0 * math.pi * (np.arange(width) + 0.5) / width
    theta, phi = np.meshgrid(theta, phi, indexing="ij")
    return np.stack([np.sin(theta) * np.sin(phi), np.sin(theta) * np.cos(phi), np.cos(theta)], axis=-1)


def direction_to_equirect(dirs: np.ndarray, height: int, width: int) -> np.ndarray:
    """Continuous pixel coordinates ``[..., 2]`` as (row, column) of unit world directions ``[..., 3]``."""
    theta = np.arccos(np.clip(dirs[..., 2], -1.0, 1.0))
    phi = np.mod(np.arctan2(dirs[..., 0], dirs[..., 1]), 2.0 * math.pi)
    return np.stack([theta / math.pi * (height - 1), phi / (2.0 * math.pi) * width - 0.5], axis=-1)


def sun_direction(config: EnvironmentConfig) -> np.ndarray:
    """Unit world direction ``[3]`` towards the sun."""
    elev, azim = math.radians(config.sun_elevation_deg), math.radians(config.sun_azimuth_deg)
    return np.array([math.cos(elev) * math.sin(azim), math.cos(elev) * math.cos(azim), math.sin(elev)])


def synthesize_environment(config: EnvironmentConfig) -> np.ndarray:
    """The sky of ``config`` as a float32 ``[H, W, 3]`` linear-radiance array (formula in the module doc)."""
    dirs = equirect_directions(config.height, config.width)
    up = np.clip(dirs[..., 2:3], 0.0, 1.0) ** config.sky_exponent
    sky = (1.0 - up) * np.asarray(config.horizon_color) + up * np.asarray(config.zenith_color)
    radiance = np.where(dirs[..., 2:3] >= 0.0, sky, np.asarray(config.ground_color)) * config.sky_intensity
    lobe = np.exp(config.sun_kappa * (dirs @ sun_direction(config) - 1.0))[..., None]
    radiance = radiance + config.sun_intensity * np.asarray(config.sun_color) * lobe
    return radiance.astype(np.float32)


def check_environment(env: np.ndarray, name: str = "environment") -> np.ndarray:
    """Checks an environment map is a finite, non-negative ``[H, W, 3]`` array and returns it as float32."""
    env = np.asarray(env)
    if env.ndim != 3 or env.shape[2] != 3 or env.shape[0] < 2:
        raise ValueError(f"{name} must have shape [H>=2, W, 3], got {list(env.shape)}")
    if not np.isfinite(env).all():
        raise ValueError(f"{name} has {int((~np.isfinite(env)).sum())} non-finite values")
    if (env < 0).any():
        raise ValueError(f"{name} has {int((env < 0).sum())} negative values (radiance must be >= 0)")
    return env.astype(np.float32)


def load_environment(path: str | Path, key: str | None = None) -> np.ndarray:
    """Reads an environment map: ``.npz`` (array ``key``, or the only one), ``.npy``, or ``.exr``/``.hdr``
    (through mitsuba's bitmap reader). Returns a checked float32 ``[H, W, 3]`` array."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"environment map not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        data = load_arrays(path, what="environment map")
        if key is None:
            if len(data) != 1:
                raise ValueError(f"{path} holds {list(data)}: pass key= to pick one")
            key = next(iter(data))
        if key not in data:
            raise KeyError(f"{path} has no array {key!r} (it has {list(data)})")
        env = data[key]
    elif suffix == ".npy":
        env = load_arrays(path, what="environment map")
    elif suffix in (".exr", ".hdr"):
        from distill3d.data.mitsuba_setup import ensure_variant

        mi = ensure_variant()
        env = np.array(mi.Bitmap(str(path)).convert(mi.Bitmap.PixelFormat.RGB, mi.Struct.Type.Float32, False))
    else:
        raise ValueError(f"unsupported environment format {suffix!r}: use .npz, .npy, .exr or .hdr")
    return check_environment(env, str(path))
