"""Gaussian normals: the shortest axis of each Gaussian, flipped to face the camera.

A flat Gaussian ``Sigma = R diag(s)^2 R^T`` approximates a surface patch whose normal is the column of
``R`` with the smallest scale (GaussianShader, GS-IR):

    a_i = R_i[:, argmin_k s_ik],     n_i = normalize(sign(a_i . (c - mu_i)) a_i + delta_i)

with camera centre ``c``, Gaussian centre ``mu_i`` and an optional learned residual ``delta_i`` (zero
when unused). Per-pixel normals are these splatted as feature channels and re-normalised.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

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
