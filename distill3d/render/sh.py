"""Real spherical harmonics of degree 0..3: view-dependent colour of each Gaussian, as in 3DGS / gsplat.

For a unit view direction ``v = (x, y, z)`` (from the camera centre to the Gaussian) and coefficients
``k_j`` (``K >= (degree + 1)^2`` of them, the first used):

.. math::

    c(v) = \\sum_{j < (\\mathrm{degree}+1)^2} Y_j(v)\\, k_j, \\qquad
    Y_0 = C_0, \\ (Y_1, Y_2, Y_3) = C_1(-y, z, -x),\\ \\dots

with 3DGS's constants and sign conventions (the graphics convention without Condon-Shortley phase on
``m > 0``). The renderer then uses ``max(c(v) + 0.5, 0)`` as the colour, like 3DGS.
"""
from __future__ import annotations

import torch
from torch import Tensor

SH_C0 = 0.28209479177387814
SH_C1 = 0.4886025119029199
SH_C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396)
SH_C3 = (
    -0.5900435899266435, 2.890611442640554, -0.4570457994644658, 0.3731763325901154,
    -0.4570457994644658, 1.445305721320277, -0.5900435899266435,
)
MAX_SH_DEGREE = 3
# Offset that maps the zero-mean SH colour to [0, 1]-ish RGB (3DGS).
SH_COLOR_OFFSET = 0.5


def num_sh_bases(degree: int) -> int:
    """``(degree + 1)^2`` coefficients per channel."""
    return (degree + 1) ** 2


def sh_basis(degree: int, dirs: Tensor) -> Tensor:  # [..., 3] unit -> [..., (degree + 1)^2]
    """Real SH basis functions ``Y_j(dirs)`` up to ``degree`` (0..3)."""
    if not 0 <= degree <= MAX_SH_DEGREE:
        raise ValueError(f"sh_degree must be in [0, {MAX_SH_DEGREE}], got {degree}")
    x, y, z = dirs.unbind(-1)
    bases = [torch.full_like(x, SH_C0)]
    if degree >= 1:
        bases += [-SH_C1 * y, SH_C1 * z, -SH_C1 * x]
    if degree >= 2:
        xx, yy, zz = x * x, y * y, z * z
        bases += [
            SH_C2[0] * x * y,
            SH_C2[1] * y * z,
            SH_C2[2] * (2 * zz - xx - yy),
            SH_C2[3] * x * z,
            SH_C2[4] * (xx - yy),
        ]
    if degree >= 3:
        bases += [
            SH_C3[0] * y * (3 * xx - yy),
            SH_C3[1] * x * y * z,
            SH_C3[2] * y * (4 * zz - xx - yy),
            SH_C3[3] * z * (2 * zz - 3 * xx - 3 * yy),
            SH_C3[4] * x * (4 * zz - xx - yy),
            SH_C3[5] * z * (xx - yy),
            SH_C3[6] * x * (xx - 3 * yy),
        ]
    return torch.stack(bases, dim=-1)


def spherical_harmonics(degree: int, dirs: Tensor, coeffs: Tensor) -> Tensor:
    """SH colour ``[..., D]`` from directions ``[..., 3]`` (any length, normalised here) and ``coeffs [..., K, D]``."""
    if coeffs.shape[-2] < num_sh_bases(degree):
        raise ValueError(
            f"sh_degree {degree} needs {num_sh_bases(degree)} coefficients per channel, got {coeffs.shape[-2]}"
        )
    basis = sh_basis(degree, torch.nn.functional.normalize(dirs, dim=-1))
    return torch.einsum("...k,...kd->...d", basis, coeffs[..., : num_sh_bases(degree), :])


def sh_colors(
    degree: int,
    means: Tensor,  # [N, 3]
    coeffs: Tensor,  # [N, K, D]
    viewmats: Tensor,  # [C, 4, 4] world -> camera
) -> Tensor:
    """Per-camera colours ``[C, N, D] = max(SH(means - camera centre) + 0.5, 0)``."""
    camera_centres = torch.linalg.inv(viewmats)[:, :3, 3]  # [C, 3]
    dirs = means[None, :, :] - camera_centres[:, None, :]
    values = spherical_harmonics(degree, dirs, coeffs[None].expand(dirs.shape[0], -1, -1, -1))
    return torch.clamp(values + SH_COLOR_OFFSET, min=0.0)
