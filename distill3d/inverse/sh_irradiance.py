"""Diffuse irradiance of an environment light through order-2 spherical harmonics (Ramamoorthi &
Hanrahan 2001, "An efficient representation for irradiance environment maps").

Project the radiance on the 9 real SH basis functions ``Y_lm`` (l <= 2) by quadrature over the cube
texels ``omega_k`` with solid angles ``dOmega_k``:

    L_lm = sum_k L(omega_k) Y_lm(omega_k) dOmega_k

and the irradiance at normal n (the clamped-cosine convolution is diagonal in SH):

    E(n) = sum_lm A_l L_lm Y_lm(n),     A_0 = pi,  A_1 = 2 pi / 3,  A_2 = pi / 4.

Order 2 captures irradiance to within about 1 % on average (the paper's bound ~3 % worst case).
A constant environment L gives ``E = pi L`` for every normal, so a Lambertian albedo rho reflects
``rho E / pi = rho L``.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from distill3d.render.sh import sh_basis

from .cubemap import texel_directions, texel_solid_angles

SH_ORDER = 2
# clamped-cosine convolution coefficients A_l for l = 0, 1, 2 (each repeated over its 2l + 1 functions)
COSINE_LOBE = (math.pi, 2.0 * math.pi / 3.0, math.pi / 4.0)


def _band_weights(dtype: torch.dtype, device: torch.device) -> Tensor:
    return torch.tensor([COSINE_LOBE[l] for l in range(SH_ORDER + 1) for _ in range(2 * l + 1)], dtype=dtype,
                        device=device)


def project_sh(faces: Tensor,  # [6, R, R, C] radiance
               ) -> Tensor:  # [9, C]
    """SH coefficients ``L_lm`` of a cube map (module doc)."""
    resolution = faces.shape[1]
    dirs = texel_directions(resolution, faces.dtype).to(faces.device).reshape(-1, 3)
    weights = texel_solid_angles(resolution, faces.dtype).to(faces.device).reshape(-1, 1)
    basis = sh_basis(SH_ORDER, dirs)  # [K, 9]
    return basis.T @ (faces.reshape(-1, faces.shape[-1]) * weights)


def sh_irradiance(coeffs: Tensor,  # [9, C] radiance coefficients
                  normals: Tensor,  # [M, 3] unit
                  ) -> Tensor:  # [M, C]
    """Irradiance ``E(n)`` of the module doc."""
    basis = sh_basis(SH_ORDER, normals)  # [M, 9]
    return (basis * _band_weights(coeffs.dtype, coeffs.device)) @ coeffs
