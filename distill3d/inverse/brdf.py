"""Cook-Torrance microfacet BRDF with the GGX (Trowbridge-Reitz) distribution.

With unit normal n, view v, light l, half vector h = normalize(v + l), perceptual roughness r and
``alpha = r^2`` (Disney / UE4 remapping):

    D(h)   = alpha^2 / (pi ((n.h)^2 (alpha^2 - 1) + 1)^2)                      GGX normal distribution
    G1(x)  = (n.x) / ((n.x)(1 - k) + k)                                       Schlick-GGX (Smith)
    G      = G1(v) G1(l),   k = alpha / 2 (image-based light), (r + 1)^2 / 8 (analytic lights)
    F      = F0 + (1 - F0)(1 - v.h)^5,   F0 = lerp(0.04, albedo, metallic)   Schlick Fresnel
    f(l,v) = (1 - metallic) albedo / pi + D G F / (4 (n.l)(n.v))

``D`` is normalised so that its projected area is one: ``int_Omega D(h) (n.h) dh = 1``.
"""
from __future__ import annotations

import math
from typing import Literal

from torch import Tensor

DIELECTRIC_F0 = 0.04  # reflectance at normal incidence of common dielectrics (index of refraction ~1.5)
COSINE_EPS = 1e-6  # floor of the cosines in denominators: grazing directions stay finite


def roughness_to_alpha(roughness: Tensor) -> Tensor:
    """``alpha = r^2``: perceptual roughness to the GGX width."""
    return roughness * roughness


def ggx_distribution(n_dot_h: Tensor, roughness: Tensor) -> Tensor:
    """GGX normal distribution ``D`` (module doc) for cosines ``n.h`` and roughness ``r`` (broadcast)."""
    a2 = roughness_to_alpha(roughness) ** 2
    c = n_dot_h.clamp(0.0, 1.0)
    return a2 / (math.pi * (c * c * (a2 - 1.0) + 1.0) ** 2)


def smith_k(roughness: Tensor, light: Literal["ibl", "direct"] = "ibl") -> Tensor:
    """Schlick's ``k`` of the Smith term: ``alpha / 2`` for image-based lighting, ``(r + 1)^2 / 8`` for
    analytic lights (Karis 2013, the direct-light remapping avoids over-dark rough surfaces)."""
    if light == "ibl":
        return roughness_to_alpha(roughness) / 2.0
    if light == "direct":
        return (roughness + 1.0) ** 2 / 8.0
    raise ValueError(f"light must be 'ibl' or 'direct', got {light!r}")


def smith_g1(n_dot_x: Tensor, k: Tensor) -> Tensor:
    """Schlick-GGX masking ``G1 = (n.x) / ((n.x)(1 - k) + k)``."""
    c = n_dot_x.clamp(min=0.0)
    return c / (c * (1.0 - k) + k).clamp(min=COSINE_EPS)


def smith_geometry(n_dot_v: Tensor, n_dot_l: Tensor, roughness: Tensor,
                   light: Literal["ibl", "direct"] = "ibl") -> Tensor:
    """Smith shadowing-masking ``G = G1(v) G1(l)``."""
    k = smith_k(roughness, light)
    return smith_g1(n_dot_v, k) * smith_g1(n_dot_l, k)


def fresnel_schlick(v_dot_h: Tensor, f0: Tensor) -> Tensor:
    """Schlick's Fresnel ``F = F0 + (1 - F0)(1 - v.h)^5``."""
    return f0 + (1.0 - f0) * (1.0 - v_dot_h.clamp(0.0, 1.0)) ** 5


def base_reflectance(albedo: Tensor, metallic: Tensor, dielectric_f0: float = DIELECTRIC_F0) -> Tensor:
    """``F0 = lerp(0.04, albedo, metallic)``: dielectrics reflect 4 %, metals tint by their albedo."""
    return dielectric_f0 + (albedo - dielectric_f0) * metallic


def cook_torrance(normals: Tensor,  # [..., 3] unit
                  view_dirs: Tensor,  # [..., 3] unit, surface -> camera
                  light_dirs: Tensor,  # [..., 3] unit, surface -> light
                  albedo: Tensor,  # [..., 3]
                  roughness: Tensor,  # [..., 1]
                  metallic: Tensor,  # [..., 1]
                  light: Literal["ibl", "direct"] = "direct") -> Tensor:  # [..., 3]
    """The full BRDF ``f(l, v)`` of the module doc (zero below the horizon)."""
    half = view_dirs + light_dirs
    half = half / half.norm(dim=-1, keepdim=True).clamp(min=COSINE_EPS)
    n_dot_v = (normals * view_dirs).sum(-1, keepdim=True)
    n_dot_l = (normals * light_dirs).sum(-1, keepdim=True)
    n_dot_h = (normals * half).sum(-1, keepdim=True)
    v_dot_h = (view_dirs * half).sum(-1, keepdim=True)
    d = ggx_distribution(n_dot_h, roughness)
    g = smith_geometry(n_dot_v, n_dot_l, roughness, light)
    f = fresnel_schlick(v_dot_h, base_reflectance(albedo, metallic))
    specular = d * g * f / (4.0 * n_dot_l.clamp(min=COSINE_EPS) * n_dot_v.clamp(min=COSINE_EPS))
    diffuse = (1.0 - metallic) * albedo / math.pi
    visible = ((n_dot_l > 0) & (n_dot_v > 0)).to(albedo.dtype)
    return (diffuse + specular) * visible
