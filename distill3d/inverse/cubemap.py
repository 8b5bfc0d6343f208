"""Environment light as a learnable HDR cube map, and cube-map texel geometry.

Six square faces of ``R x R`` texels in OpenGL order (+X, -X, +Y, -Y, +Z, -Z), world z up. A face
with major axis ``m`` and in-face axes ``s`` (columns) and ``t`` (rows) holds the directions

    d = normalize(m + u s + v t),     (u, v) in [-1, 1]^2,   texel (row, col) centre at
    u = 2 (col + 0.5) / R - 1,        v = 2 (row + 0.5) / R - 1,

and a direction d is looked up on the face whose ``m`` has the largest ``d.m``, at ``u = d.s / d.m``,
``v = d.t / d.m`` (bilinear inside the face, clamped at its edges). Texel solid angles are exact:
``Omega = A(x0, y0) - A(x0, y1) - A(x1, y0) + A(x1, y1)``, ``A(x, y) = atan2(x y, sqrt(x^2 + y^2 + 1))``
over the texel's corners (they sum to 4 pi).

The learnable map stores log-radiance; ``radiance = exp(log_radiance)`` stays positive, and the
multiplicative parameterisation suits HDR light spanning orders of magnitude.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor, nn

from distillcore.checks import check_positive, check_tensor
from distill3d.data.environment import check_environment, direction_to_equirect

# (major axis m, column axis s, row axis t) per face
FACE_AXES = torch.tensor([
    [[1, 0, 0], [0, 0, -1], [0, -1, 0]],
    [[-1, 0, 0], [0, 0, 1], [0, -1, 0]],
    [[0, 1, 0], [1, 0, 0], [0, 0, 1]],
    [[0, -1, 0], [1, 0, 0], [0, 0, -1]],
    [[0, 0, 1], [1, 0, 0], [0, -1, 0]],
    [[0, 0, -1], [-1, 0, 0], [0, -1, 0]],
], dtype=torch.float64)
NUM_FACES = 6


def texel_directions(resolution: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """Unit directions ``[6, R, R, 3]`` of every texel centre."""
    check_positive(resolution, "resolution")
    centres = (torch.arange(resolution, dtype=torch.float64) + 0.5) * (2.0 / resolution) - 1.0
    v, u = torch.meshgrid(centres, centres, indexing="ij")
    axes = FACE_AXES[:, None, None]  # [6, 1, 1, 3, 3]
    dirs = axes[..., 0, :] + u[..., None] * axes[..., 1, :] + v[..., None] * axes[..., 2, :]
    return (dirs / dirs.norm(dim=-1, keepdim=True)).to(dtype)


def texel_solid_angles(resolution: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """Exact solid angle ``[6, R, R]`` of every texel (module doc); they sum to 4 pi."""
    check_positive(resolution, "resolution")
    edges = torch.linspace(-1.0, 1.0, resolution + 1, dtype=torch.float64)

    def area(x: Tensor, y: Tensor) -> Tensor:
        return torch.atan2(x * y, torch.sqrt(x * x + y * y + 1.0))

    y0, x0 = edges[:-1, None], edges[None, :-1]
    y1, x1 = edges[1:, None], edges[None, 1:]
    omega = area(x0, y0) - area(x0, y1) - area(x1, y0) + area(x1, y1)
    return omega[None].expand(NUM_FACES, -1, -1).to(dtype).contiguous()


def direction_to_cube(dirs: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(face [M] int64, u [M], v [M])`` in [-1, 1] of directions ``[M, 3]`` (need not be unit)."""
    axes = FACE_AXES.to(dirs)
    major = dirs @ axes[:, 0].T  # [M, 6]
    face = major.argmax(dim=-1)
    m = major.gather(1, face[:, None])[:, 0].clamp(min=1e-12)
    u = (dirs * axes[face, 1]).sum(-1) / m
    v = (dirs * axes[face, 2]).sum(-1) / m
    return face, u, v


def sample_cube(faces: Tensor,  # [6, R, R, C]
                dirs: Tensor,  # [M, 3]
                ) -> Tensor:  # [M, C]
    """Bilinear lookup of ``faces`` along ``dirs`` (module doc), differentiable in ``faces``."""
    resolution, channels = faces.shape[1], faces.shape[-1]
    face, u, v = direction_to_cube(dirs)
    # continuous texel coordinates, texel centres at integers
    x = ((u + 1.0) * 0.5 * resolution - 0.5).clamp(0.0, resolution - 1.0)
    y = ((v + 1.0) * 0.5 * resolution - 0.5).clamp(0.0, resolution - 1.0)
    last_corner = max(resolution - 2, 0)  # the lower corner of the last bilinear cell
    x0, y0 = x.floor().long().clamp(max=last_corner), y.floor().long().clamp(max=last_corner)
    x1, y1 = (x0 + 1).clamp(max=resolution - 1), (y0 + 1).clamp(max=resolution - 1)
    wx, wy = (x - x0)[:, None], (y - y0)[:, None]
    flat = faces.reshape(-1, channels)
    base = face * resolution * resolution

    def texel(row: Tensor, col: Tensor) -> Tensor:
        return flat.index_select(0, base + row * resolution + col)

    top = texel(y0, x0) * (1 - wx) + texel(y0, x1) * wx
    bottom = texel(y1, x0) * (1 - wx) + texel(y1, x1) * wx
    return top * (1 - wy) + bottom * wy


def equirect_to_cube(env: Tensor,  # [He, We, 3] linear radiance, equirectangular (distill3d.data.environment)
                     resolution: int) -> Tensor:  # [6, R, R, 3]
    """Resamples an equirectangular map (the scene's convention) onto cube texels, bilinearly (columns wrap)."""
    check_environment(env.detach().cpu().numpy(), "env")
    height, width = env.shape[:2]
    coords = torch.from_numpy(direction_to_equirect(texel_directions(resolution, torch.float64).numpy(), height, width))
    row, col = coords[..., 0].clamp(0, height - 1), coords[..., 1]
    r0 = row.floor().long().clamp(max=height - 2)
    c0 = col.floor().long()
    wr, wc = (row - r0)[..., None].to(env), (col - c0)[..., None].to(env)
    c0w, c1w = c0 % width, (c0 + 1) % width
    top = env[r0, c0w] * (1 - wc) + env[r0, c1w] * wc
    bottom = env[r0 + 1, c0w] * (1 - wc) + env[r0 + 1, c1w] * wc
    return top * (1 - wr) + bottom * wr


class EnvironmentMap(nn.Module):
    """A learnable cube-map environment light: ``radiance = exp(log_radiance)``, ``[6, R, R, 3]``."""

    def __init__(self, resolution: int = 16, initial_radiance: float = 0.5):
        super().__init__()
        check_positive(resolution, "resolution")
        check_positive(initial_radiance, "initial_radiance")
        self.log_radiance = nn.Parameter(torch.full((NUM_FACES, resolution, resolution, 3), math.log(initial_radiance)))

    @classmethod
    def from_radiance(cls, faces: Tensor) -> "EnvironmentMap":
        """A map holding ``faces [6, R, R, 3]`` (radiance > 0; zeros are floored to 1e-6)."""
        check_tensor(faces, "faces", shape=[NUM_FACES, None, None, 3], floating=True)
        if faces.shape[1] != faces.shape[2]:
            raise ValueError(f"faces must be square, got {list(faces.shape)}")
        if bool((faces < 0).any()):
            raise ValueError(f"faces has {int((faces < 0).sum())} negative values (radiance must be >= 0)")
        env = cls(faces.shape[1])
        with torch.no_grad():
            env.log_radiance.copy_(faces.clamp(min=1e-6).log())
        return env

    @classmethod
    def from_equirect(cls, env: Tensor | np.ndarray, resolution: int = 16) -> "EnvironmentMap":
        """A map resampled from an equirectangular ``[He, We, 3]`` radiance array (e.g. a scene's relight light)."""
        env = torch.as_tensor(np.asarray(env, dtype=np.float32) if isinstance(env, np.ndarray) else env).float()
        return cls.from_radiance(equirect_to_cube(env, resolution))

    @property
    def resolution(self) -> int:
        return self.log_radiance.shape[1]

    def radiance(self) -> Tensor:
        """``[6, R, R, 3]`` positive HDR radiance."""
        return torch.exp(self.log_radiance)

    def forward(self, dirs: Tensor) -> Tensor:  # [M, 3] -> [M, 3]
        """Radiance arriving from world directions ``dirs``."""
        return sample_cube(self.radiance(), dirs)
