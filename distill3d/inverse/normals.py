"""Gaussian normals: the shortest axis of each Gaussian, flipped to face the camera.

A flat Gaussian ``Sigma = R diag(s)^2 R^T`` approximates a surface patch whose normal is the column of
``R`` with the smallest scale (GaussianShader, GS-IR):

    a_i = R_i[:, argmin_k s_ik],     n_i = normalize(sign(a_i . (c - mu_i)) a_i + delta_i)

with camera centre ``c``, Gaussian centre ``mu_i`` and an optional learned residual ``delta_i`` (zero
when unused). Per-pixel normals are these splatted as feature channels and re-normalised.

Without a camera (the de-shadowed albedo, ``PRDModel.deshadow_albedo``) the side is the one the training
cameras that see the Gaussian are on (:func:`camera_facing_signs`): the side of the surface the photos show.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from distill3d.data.cameras import camera_centers, project_points
from distill3d.render.projection import quat_to_rotmat


def shortest_axes(quats: Tensor,  # [N, 4] wxyz (normalised here)
                  scales: Tensor,  # [N, 3]
                  ) -> Tensor:  # [N, 3]
    """The unit axis of smallest scale of each Gaussian."""
    rotations = quat_to_rotmat(F.normalize(quats, dim=-1))  # columns are the axes
    index = scales.argmin(dim=-1)
    return rotations.gather(2, index[:, None, None].expand(-1, 3, 1))[..., 0]


def gaussian_normals(means: Tensor,  # [N, 3]
                     quats: Tensor,  # [N, 4]
                     scales: Tensor,  # [N, 3]
                     camera_center: Tensor,  # [3]
                     residual: Tensor | None = None,  # [N, 3]
                     ) -> Tensor:  # [N, 3]
    """Unit normals facing ``camera_center`` (module doc)."""
    axes = shortest_axes(quats, scales)
    facing = torch.where(((camera_center - means) * axes).sum(-1, keepdim=True) < 0, -axes, axes)
    return facing if residual is None else F.normalize(facing + residual, dim=-1)


def camera_facing_signs(means: Tensor,  # [N, 3]
                        axes: Tensor,  # [N, 3]
                        viewmats: Tensor,  # [C, 4, 4] world -> camera (OpenCV)
                        Ks: Tensor,  # [C, 3, 3]
                        width: int, height: int) -> Tensor:  # [N]
    """The side of each axis the cameras that see its Gaussian are on, by a vote over cameras:

        s_i = sign( sum_{j : mu_i in frustum_j} sign(a_i . (c_j - mu_i)) ),   s_i = +1 on a tie

    with ``c_j`` the camera centres; ``mu_i`` is in camera ``j``'s frustum when it lies in front of the
    camera and projects inside its ``width x height`` image. Occlusion is not traced: the vote of the
    cameras whose view of ``mu_i`` is blocked is outweighed where the surface is seen at all (a surface
    seen by no camera has no side in the photos). ``s_i a_i`` is the normal the renderer gives Gaussian
    ``i`` in most of the training views.

    Args:
        means: Gaussian centres ``mu_i``.
        axes: unit axes ``a_i`` (e.g. :func:`shortest_axes`), either sign.
        viewmats, Ks, width, height: the cameras and their image size.

    Shapes:
        means, axes ``[N, 3]``, viewmats ``[C, 4, 4]``, Ks ``[C, 3, 3]`` -> ``[N]`` of +1 / -1 (axes' dtype).
    """
    votes = torch.zeros(len(means), dtype=axes.dtype, device=axes.device)
    for viewmat, K, centre in zip(viewmats, Ks, camera_centers(viewmats).to(means)):  # O(N) memory per camera
        uv, depth = project_points(means, viewmat[None], K[None])  # [1, N, 2], [1, N]
        in_frustum = ((depth[0] > 0) & (uv[0, :, 0] >= 0) & (uv[0, :, 0] < width)
                      & (uv[0, :, 1] >= 0) & (uv[0, :, 1] < height))
        votes += in_frustum * torch.sign(((centre - means) * axes).sum(-1))
    return torch.where(votes < 0, -1.0, 1.0).to(axes.dtype)


def pixel_view_directions(viewmat: Tensor,  # [4, 4] world -> camera (OpenCV)
                          K: Tensor,  # [3, 3]
                          width: int, height: int) -> Tensor:  # [H, W, 3]
    """Unit world directions from each pixel centre's surface point towards the (pinhole) camera."""
    ys, xs = torch.meshgrid(torch.arange(height, dtype=K.dtype, device=K.device) + 0.5,
                            torch.arange(width, dtype=K.dtype, device=K.device) + 0.5, indexing="ij")
    pixels = torch.stack([xs, ys, torch.ones_like(xs)], dim=-1)
    rays_camera = pixels @ torch.linalg.inv(K).T
    rays_world = rays_camera @ viewmat[:3, :3]  # R^T d, as row vectors
    return -F.normalize(rays_world, dim=-1)
