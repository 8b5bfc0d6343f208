"""Stage 1 of the rasterizer: EWA projection of 3D Gaussians to screen-space 2D Gaussians.

For a Gaussian with mean ``mu``, rotation ``R(q)`` and scales ``s`` seen by a camera with world-to-camera
rotation ``W`` and translation ``w`` (OpenCV convention: x right, y down, z forward) and pinhole
intrinsics ``fx, fy, cx, cy``:

.. math::

    \\Sigma_{3D} = R S S^T R^T, \\qquad t = W \\mu + w,

    J = \\begin{pmatrix} f_x / t_z & 0 & -f_x \\tilde t_x / t_z^2 \\\\
                         0 & f_y / t_z & -f_y \\tilde t_y / t_z^2 \\end{pmatrix},
    \\qquad \\Sigma_{2D} = J W \\Sigma_{3D} W^T J^T + \\epsilon_{2D} I,

where ``t~x, t~y`` are ``tx, ty`` clamped to the view frustum widened by 30% on each side (as in 3DGS and
gsplat: a Gaussian far outside the image would otherwise get an exploding Jacobian). The EWA low-pass
``eps2d * I`` makes every splat at least about a pixel wide. Outputs per (camera, Gaussian):

- ``means2d = (fx tx / tz + cx, fy ty / tz + cy)``, with pixel ``(x, y)`` centred at ``(x + 0.5, y + 0.5)``;
- ``conics = inverse(Sigma_2D)`` stored as ``(a, b, c)`` meaning ``[[a, b], [b, c]]``;
- ``radii = ceil(3 sqrt(lambda_max(Sigma_2D)))`` on both axes, 0 for culled Gaussians: depth not in
  ``(near, far)``, singular covariance, a 2D variance of ``MAX_VARIANCE_2D`` or more (a splat so large
  that its det and radius overflow), or the box ``mean2d +- r`` entirely outside the image;
- ``compensations = sqrt(max(0, det(Sigma_2D - eps2d I) / det(Sigma_2D)))`` (the anti-aliasing
  opacity factor of Mip-Splatting / gsplat's "antialiased" mode).
"""
from __future__ import annotations

import torch
from torch import Tensor

from distill3d.render.validation import check_cameras, check_geometry

# Splat radius in standard deviations along the major axis (3DGS).
RADIUS_SIGMAS = 3.0
# Tangent-space clamp of the Jacobian: the frustum is widened by this fraction of tan(fov/2) per side.
FRUSTUM_CLAMP_MARGIN = 0.3
# Splats with a 2D variance at or above this (pixels^2; over 10^8 pixels wide) are culled: their det, conic
# and integer radius would overflow float32 / int32. Must equal kMaxVariance2D in csrc/include/projection_math.h.
MAX_VARIANCE_2D = 1e16


def quat_to_rotmat(quats: Tensor) -> Tensor:  # [N, 4] wxyz, unit -> [N, 3, 3]
    """Rotation matrices of unit quaternions ``(w, x, y, z)``."""
    w, x, y, z = quats.unbind(-1)
    return torch.stack(
        [
            1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
            2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
            2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
        ],
        dim=-1,
    ).reshape(quats.shape[:-1] + (3, 3))


def covariance_3d(quats: Tensor, scales: Tensor) -> Tensor:  # [N, 4], [N, 3] -> [N, 3, 3]
    """``Sigma = R S S^T R^T`` with ``R`` from the (normalised inside) quaternions and ``S = diag(scales)``."""
    rotation_scale = quat_to_rotmat(torch.nn.functional.normalize(quats, dim=-1)) * scales[..., None, :]
    return rotation_scale @ rotation_scale.transpose(-1, -2)


def _safe(x: Tensor, ok: Tensor) -> Tensor:
    """``x`` where ``ok`` else 1: divisions by culled values must not create NaN gradients."""
    return torch.where(ok, x, torch.ones_like(x))


def project_gaussians(
    means: Tensor,  # [N, 3]
    quats: Tensor,  # [N, 4] wxyz, any non-zero norm
    scales: Tensor,  # [N, 3]
    viewmats: Tensor,  # [C, 4, 4] world -> camera
    Ks: Tensor,  # [C, 3, 3]
    width: int,
    height: int,
    eps2d: float = 0.3,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Projects N Gaussians into C cameras (torch reference, differentiable by autograd).

    Returns ``(radii [C, N, 2] int32, means2d [C, N, 2], depths [C, N], conics [C, N, 3],
    compensations [C, N])``. Culled Gaussians have ``radii == 0``; their ``means2d`` and ``conics`` are
    set to 0 and receive no gradient.
    """
    check_geometry(means, quats, scales)
    check_cameras(viewmats, Ks, width, height)
    return project_gaussians_unchecked(means, quats, scales, viewmats, Ks, width, height, eps2d, near_plane, far_plane)


def project_gaussians_unchecked(
    means: Tensor,  # [N, 3]
    quats: Tensor,  # [N, 4]
    scales: Tensor,  # [N, 3]
    viewmats: Tensor,  # [C, 4, 4]
    Ks: Tensor,  # [C, 3, 3]
    width: int,
    height: int,
    eps2d: float = 0.3,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """:func:`project_gaussians` without input checks, for callers that validated already (``rasterize``)."""
    rotation, translation = viewmats[:, :3, :3], viewmats[:, :3, 3]
    means_cam = torch.einsum("cij,nj->cni", rotation, means) + translation[:, None, :]  # [C, N, 3]
    covars_cam = rotation[:, None] @ covariance_3d(quats, scales)[None] @ rotation.transpose(-1, -2)[:, None]
    tx, ty, tz = means_cam.unbind(-1)  # [C, N] each
    in_depth = (tz > near_plane) & (tz < far_plane)
    tz = _safe(tz, in_depth)

    fx, fy = Ks[:, 0, 0, None], Ks[:, 1, 1, None]  # [C, 1]
    cx, cy = Ks[:, 0, 2, None], Ks[:, 1, 2, None]
    margin_x = FRUSTUM_CLAMP_MARGIN * 0.5 * width / fx
    margin_y = FRUSTUM_CLAMP_MARGIN * 0.5 * height / fy
    tx_clamped = tz * torch.clamp(tx / tz, min=-(cx / fx + margin_x), max=(width - cx) / fx + margin_x)
    ty_clamped = tz * torch.clamp(ty / tz, min=-(cy / fy + margin_y), max=(height - cy) / fy + margin_y)
    zeros = torch.zeros_like(tz)
    jacobian = torch.stack(
        [fx / tz, zeros, -fx * tx_clamped / tz**2, zeros, fy / tz, -fy * ty_clamped / tz**2], dim=-1
    ).reshape(tz.shape + (2, 3))
    cov2d = jacobian @ covars_cam @ jacobian.transpose(-1, -2)  # [C, N, 2, 2]

    a, b, c = cov2d[..., 0, 0], 0.5 * (cov2d[..., 0, 1] + cov2d[..., 1, 0]), cov2d[..., 1, 1]
    det_no_blur = a * c - b * b
    a, c = a + eps2d, c + eps2d
    det = a * c - b * b
    valid = in_depth & (det > 0) & (a < MAX_VARIANCE_2D) & (c < MAX_VARIANCE_2D)
    det = _safe(det, valid)
    compensations = torch.sqrt(torch.clamp(det_no_blur / det, min=0.0))
    conics = torch.stack([c / det, -b / det, a / det], dim=-1)

    means2d = torch.stack([fx * tx / tz + cx, fy * ty / tz + cy], dim=-1)  # [C, N, 2]
    half_trace = 0.5 * (a + c)
    lambda_max = half_trace + torch.sqrt(torch.clamp(half_trace**2 - det, min=0.0))
    radius = torch.ceil(RADIUS_SIGMAS * torch.sqrt(lambda_max.detach()))
    mx, my = means2d.detach().unbind(-1)
    on_screen = (mx + radius > 0) & (mx - radius < width) & (my + radius > 0) & (my - radius < height)
    visible = valid & on_screen
    radii = torch.where(visible, radius, torch.zeros_like(radius)).to(torch.int32)
    radii = radii[..., None].expand(tz.shape + (2,)).contiguous()

    keep = visible[..., None]
    means2d = torch.where(keep, means2d, torch.zeros_like(means2d))
    conics = torch.where(keep, conics, torch.zeros_like(conics))
    compensations = torch.where(visible, compensations, torch.zeros_like(compensations))
    return radii, means2d, means_cam[..., 2], conics, compensations
