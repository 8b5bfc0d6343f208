"""The split-sum BRDF integration table (Karis 2013): ``(scale, bias)`` over ``(n.v, roughness)``.

The specular integral of the Cook-Torrance BRDF under environment light splits into a pre-filtered
light (``prefilter.py``) times the directional albedo of the BRDF, which Schlick's Fresnel makes
affine in ``F0``:

    int f_spec(l, v) (n.l) dl = F0 * A(n.v, r) + B(n.v, r)
    A = 1/N sum_i (1 - Fc_i) G_vis_i,   B = 1/N sum_i Fc_i G_vis_i,
    Fc = (1 - v.h)^5,   G_vis = G(v, l) (v.h) / ((n.h)(n.v))

with ``N`` half vectors h_i importance-sampled from the GGX distribution (``pdf(h) = D (n.h)``) along a
Hammersley sequence, ``l = reflect(-v, h)``, and Smith's ``k = alpha / 2``. The toolkit computes the
table itself (no shipped texture) and caches it on disk; a white furnace check (``F0 = 1``) gives
``A + B`` close to 1 for smooth surfaces.
"""
from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from distillcore.checks import check_positive, check_tensor
from distillcore.serialization import load_state, save_atomic

from .brdf import smith_geometry

log = logging.getLogger(f"distillkit.{__name__}")

DEFAULT_CACHE_DIR = Path(os.environ.get("DISTILLKIT_CACHE", Path.home() / ".cache" / "distillkit")) / "brdf_lut"


@dataclass(frozen=True)
class BRDFLutConfig:
    resolution: int = 32  # texels along n.v and along roughness
    num_samples: int = 512  # GGX importance samples per texel


def hammersley(num_samples: int) -> Tensor:
    """``[N, 2]`` low-discrepancy points ``(i / N, radical_inverse_2(i))`` in [0, 1)^2."""
    index = torch.arange(num_samples, dtype=torch.int64)
    radical = torch.zeros(num_samples, dtype=torch.float64)
    scale, bits = 0.5, index.clone()
    while bool((bits > 0).any()):
        radical += (bits & 1).double() * scale
        bits >>= 1
        scale *= 0.5
    return torch.stack([index.double() / num_samples, radical], dim=-1)


def integrate_brdf(n_dot_v: Tensor, roughness: Tensor, num_samples: int) -> Tensor:
    """``[..., 2]`` = (A, B) of the module doc at cosines ``n_dot_v [...]`` and roughness ``[...]`` (float64)."""
    n_dot_v = n_dot_v.double()[..., None]  # [..., 1] against the sample axis
    roughness = roughness.double()[..., None]
    xi = hammersley(num_samples)
    alpha = roughness * roughness
    # GGX importance sampling of the half vector around n = +z: cos^2(theta_h) = (1 - u) / (1 + (a^2 - 1) u)
    cos_h = torch.sqrt((1.0 - xi[:, 1]) / (1.0 + (alpha * alpha - 1.0) * xi[:, 1]))
    sin_h = torch.sqrt((1.0 - cos_h * cos_h).clamp(min=0.0))
    phi = 2.0 * math.pi * xi[:, 0]
    hx, hz = sin_h * torch.cos(phi), cos_h
    vx, vz = torch.sqrt((1.0 - n_dot_v * n_dot_v).clamp(min=0.0)), n_dot_v  # v in the xz plane
    v_dot_h = (vx * hx + vz * hz).clamp(min=0.0)
    n_dot_l = 2.0 * v_dot_h * hz - vz  # l = 2 (v.h) h - v
    g = smith_geometry(n_dot_v, n_dot_l, roughness, "ibl")
    g_vis = torch.where(n_dot_l > 0, g * v_dot_h / (hz * n_dot_v).clamp(min=1e-12), torch.zeros_like(g))
    fresnel = (1.0 - v_dot_h) ** 5
    return torch.stack([((1.0 - fresnel) * g_vis).mean(-1), (fresnel * g_vis).mean(-1)], dim=-1)


def compute_brdf_lut(config: BRDFLutConfig = BRDFLutConfig()) -> Tensor:
    """``[R, R, 2]`` float32 table: row i is ``n.v = (i + 0.5) / R``, column j roughness ``(j + 0.5) / R``."""
    check_positive(config.resolution, "resolution")
    check_positive(config.num_samples, "num_samples")
    centres = (torch.arange(config.resolution, dtype=torch.float64) + 0.5) / config.resolution
    n_dot_v, roughness = torch.meshgrid(centres, centres, indexing="ij")
    return integrate_brdf(n_dot_v, roughness, config.num_samples).float()


@lru_cache(maxsize=4)
def brdf_lut(config: BRDFLutConfig = BRDFLutConfig(), cache_dir: Path | None = DEFAULT_CACHE_DIR) -> Tensor:
    """The table of :func:`compute_brdf_lut`, read from (or written atomically to) ``cache_dir``."""
    if cache_dir is None:
        return compute_brdf_lut(config)
    path = Path(cache_dir) / f"lut_{config.resolution}_{config.num_samples}.pt"
    if path.is_file():
        try:  # plain tensors only: a cache folder is user-writable, nothing in it may run
            table = load_state(path, what="BRDF table cache")
        except ValueError as err:
            log.warning("%s; computing it again", err)
            table = None
        if isinstance(table, Tensor) and table.shape == (config.resolution, config.resolution, 2):
            return table
    table = compute_brdf_lut(config)
    save_atomic(table, path)
    return table


def lookup_brdf_lut(table: Tensor,  # [R, R, 2]
                    n_dot_v: Tensor,  # [M]
                    roughness: Tensor,  # [M]
                    ) -> Tensor:  # [M, 2]
    """Bilinear ``(A, B)`` at each ``(n.v, roughness)`` (clamped to the table's texel centres)."""
    check_tensor(table, "table", shape=[None, None, 2], floating=True)
    texture = table.permute(2, 0, 1)[None].to(n_dot_v)  # [1, 2, R(n.v), R(roughness)]
    # grid_sample: x indexes the width (roughness), y the height (n.v); [-1, 1] spans the texel edges
    grid = torch.stack([roughness * 2.0 - 1.0, n_dot_v * 2.0 - 1.0], dim=-1).view(1, 1, -1, 2)
    out = F.grid_sample(texture, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out[0, :, 0].T
