"""Deferred image-based shading of per-pixel materials under an environment light (split sum).

For a pixel with unit normal n, direction to the camera v, albedo a, roughness r, metallic m:

    diffuse  = (1 - m) a E(n) / pi                       E: SH irradiance (``sh_irradiance.py``)
    specular = P(reflect(v, n), r) (F0 A(n.v, r) + B(n.v, r))
                                                         P: pre-filtered light (``prefilter.py``)
                                                         (A, B): BRDF table (``brdf_lut.py``)
    F0 = lerp(0.04, a, m),   reflect(v, n) = 2 (n.v) n - v,   L_out = diffuse + specular  (linear HDR)

With visibility (``visibility.py``), the occluded irradiance is removed and the specular term scaled by
the visibility around the reflected direction, both splatted from the Gaussians:

    diffuse  = (1 - m) a max(E(n) - E_blocked, 0) / pi,     specular *= V_spec

Images are then tone-mapped to sRGB with ``distill3d.data.colorspace.linear_to_srgb`` (the same
transfer the scene renderer used), so the comparison with photos happens in their own space.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from torch import Tensor

from .brdf import COSINE_EPS, base_reflectance
from .brdf_lut import lookup_brdf_lut
from .prefilter import PrefilterConfig, prefilter_levels, sample_prefiltered
from .sh_irradiance import project_sh, sh_irradiance
from .visibility import LightBins, light_bins


@dataclass
class PreparedLight:
    """What shading needs of one environment: its SH radiance ``[9, 3]``, pre-filtered levels and, for
    visibility, its light gathered on the visibility directions."""
    sh: Tensor
    levels: list[Tensor]
    bins: LightBins | None = None


@dataclass
class Shading:
    diffuse: Tensor  # [M, 3] linear radiance
    specular: Tensor  # [M, 3]

    @property
    def radiance(self) -> Tensor:
        return self.diffuse + self.specular


def prepare_light(faces: Tensor,  # [6, R, R, 3] radiance
                  config: PrefilterConfig = PrefilterConfig(),
                  directions: Tensor | None = None,  # [D, 3] visibility directions (None: no visibility)
                  ) -> PreparedLight:
    """SH projection and pre-filtering, done once per environment and render."""
    bins = light_bins(faces, directions) if directions is not None else None
    return PreparedLight(project_sh(faces), prefilter_levels(faces, config), bins)


def reflect(view_dirs: Tensor, normals: Tensor) -> Tensor:
    """Mirror direction ``2 (n.v) n - v`` of ``view_dirs [M, 3]`` about ``normals [M, 3]``."""
    return 2.0 * (normals * view_dirs).sum(-1, keepdim=True) * normals - view_dirs


def shade(normals: Tensor,  # [M, 3] unit
          view_dirs: Tensor,  # [M, 3] unit, surface -> camera
          albedo: Tensor,  # [M, 3]
          roughness: Tensor,  # [M, 1]
          metallic: Tensor,  # [M, 1]
          light: PreparedLight,
          brdf_table: Tensor,  # [R, R, 2] from brdf_lut.brdf_lut
          occluded: Tensor | None = None,  # [M, 3] E_blocked (None: nothing occluded)
          specular_visibility: Tensor | None = None,  # [M, 1] V_spec (None: 1)
          ) -> Shading:
    """The split-sum shading of the module doc."""
    n_dot_v = (normals * view_dirs).sum(-1).clamp(COSINE_EPS, 1.0)
    irradiance = sh_irradiance(light.sh, normals)
    if occluded is not None:
        irradiance = irradiance - occluded
    irradiance = irradiance.clamp(min=0.0)  # order-2 ringing can dip below 0
    diffuse = (1.0 - metallic) * albedo * irradiance / math.pi
    scale_bias = lookup_brdf_lut(brdf_table, n_dot_v, roughness[:, 0])
    f0 = base_reflectance(albedo, metallic)
    prefiltered = sample_prefiltered(light.levels, reflect(view_dirs, normals), roughness[:, 0])
    specular = prefiltered * (f0 * scale_bias[:, :1] + scale_bias[:, 1:])
    if specular_visibility is not None:
        specular = specular * specular_visibility
    return Shading(diffuse, specular)
