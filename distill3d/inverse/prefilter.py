"""Pre-filtered environment light for split-sum specular shading: one cube map per roughness level.

Karis's split sum approximates the specular light integral with ``n = v = r`` (the reflected
direction) and GGX importance samples; its estimator converges to the normalised, cosine-weighted
GGX-lobe convolution

    P(r, rho) = sum_k L(omega_k) D(h_k; rho) max(r.omega_k, 0) dOmega_k
              / sum_k            D(h_k; rho) max(r.omega_k, 0) dOmega_k,     n.h_k = sqrt((1 + r.omega_k) / 2)

(the sample pdf ``D (n.h) / (4 v.h)`` with ``n = v`` is ``D / 4``, so the weights are ``D (n.l)``). We
evaluate that sum exactly over the environment's texels ``omega_k`` instead of sampling it: a fixed
matrix ``W [R_out^2 6, R^2 6]`` per level, computed once per (resolution, roughness) and cached, so the
filtered maps are linear in the (learnable) light and gradients flow into it. Level 0 (roughness 0)
is the light itself; levels i > 0 have roughness ``i / (levels - 1)`` at ``filtered_resolution``.
Roughness between levels interpolates linearly between the two nearest levels' lookups.

A GGX lobe narrower than a texel degenerates to the nearest texels (normalisation keeps energy).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import Tensor

from distillcore.checks import check_positive

from .brdf import ggx_distribution
from .cubemap import NUM_FACES, sample_cube, texel_directions, texel_solid_angles


@dataclass(frozen=True)
class PrefilterConfig:
    num_levels: int = 6  # roughness levels 0, 1/(L-1), ..., 1
    filtered_resolution: int = 8  # face size of the filtered levels (level 0 keeps the light's own)


def level_roughness(config: PrefilterConfig) -> Tensor:
    """Roughness ``[L]`` of each level: ``linspace(0, 1, L)``."""
    return torch.linspace(0.0, 1.0, config.num_levels)


@lru_cache(maxsize=16)
def prefilter_matrix(source_resolution: int, target_resolution: int, roughness: float) -> Tensor:
    """Row-normalised GGX-lobe weights ``[6 R_t^2, 6 R_s^2]`` (module doc), float32."""
    check_positive(roughness, "roughness")
    targets = texel_directions(target_resolution, torch.float64).reshape(-1, 3)
    sources = texel_directions(source_resolution, torch.float64).reshape(-1, 3)
    solid = texel_solid_angles(source_resolution, torch.float64).reshape(1, -1)
    cos = targets @ sources.T
    n_dot_h = torch.sqrt(((1.0 + cos) * 0.5).clamp(min=0.0))
    weights = ggx_distribution(n_dot_h, torch.tensor(roughness, dtype=torch.float64)) * cos.clamp(min=0.0) * solid
    return (weights / weights.sum(dim=1, keepdim=True)).float()


def prefilter_levels(faces: Tensor,  # [6, R, R, C] radiance
                     config: PrefilterConfig = PrefilterConfig()) -> list[Tensor]:
    """The levels ``[faces, P_1 [6, R_f, R_f, C], ...]`` of the module doc."""
    check_positive(config.num_levels - 1, "num_levels - 1")
    resolution, channels = faces.shape[1], faces.shape[-1]
    flat = faces.reshape(-1, channels)
    target = config.filtered_resolution
    levels = [faces]
    for rho in level_roughness(config)[1:].tolist():
        w = prefilter_matrix(resolution, target, rho).to(faces)
        levels.append((w @ flat).reshape(NUM_FACES, target, target, channels))
    return levels


def sample_prefiltered(levels: list[Tensor],  # from prefilter_levels
                       dirs: Tensor,  # [M, 3] reflected directions
                       roughness: Tensor,  # [M] in [0, 1]
                       ) -> Tensor:  # [M, C]
    """Pre-filtered light along ``dirs`` at ``roughness``, linear between the two nearest levels."""
    position = roughness.clamp(0.0, 1.0) * (len(levels) - 1)
    lower = position.floor().long().clamp(max=len(levels) - 2)
    frac = (position - lower)[:, None]
    samples = torch.stack([sample_cube(level, dirs) for level in levels])  # [L, M, C]
    index = torch.arange(dirs.shape[0], device=dirs.device)
    return samples[lower, index] * (1.0 - frac) + samples[lower + 1, index] * frac
