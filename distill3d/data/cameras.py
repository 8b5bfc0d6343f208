"""Pinhole cameras: intrinsics, the OpenGL (Blender) and OpenCV conventions, projection.

Conventions used throughout distillkit (the rasterizer's, gsplat's):

* ``viewmats [C, 4, 4]`` map world to camera in the OpenCV convention (x right, y down, z forward).
* ``Ks [C, 3, 3]`` map camera points to pixels; pixel (i, j) has its centre at (i + 0.5, j + 0.5),
  as in COLMAP, so a centred principal point is ``cx = W / 2``.
* Blender ``transform_matrix`` entries are OpenGL camera-to-world matrices (x right, y up, z back):
  ``c2w_opencv = c2w_opengl @ diag(1, -1, -1, 1)`` and ``viewmat = inverse(c2w_opencv)``.

Projection of a world point ``p``:  ``q = viewmat @ [p, 1]``, ``(u, v) = (fx q_x / q_z + cx, fy q_y / q_z + cy)``,
depth = ``q_z`` (z-depth along the optical axis, what the rasterizer's depth channel renders).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from distillcore.checks import check_tensor

# diag(1, -1, -1, 1): flips y and z between OpenGL and OpenCV camera axes (an involution).
_GL_CV_FLIP = torch.tensor([1.0, -1.0, -1.0, 1.0])


def intrinsics_from_fov(fov_x: float, width: int, height: int, fov_y: float | None = None) -> Tensor:
    """Pinhole K [3, 3] (float64) from horizontal field of view (radians), principal point at the centre.

    ``fx = W / (2 tan(fov_x / 2))``; ``fy = fx`` (square pixels) unless ``fov_y`` is given.
    """
    if not 0.0 < fov_x < math.pi:
        raise ValueError(f"fov_x must be in (0, pi) radians, got {fov_x}")
    fx = 0.5 * width / math.tan(0.5 * fov_x)
    fy = fx if fov_y is None else 0.5 * height / math.tan(0.5 * fov_y)
    return torch.tensor([[fx, 0.0, 0.5 * width], [0.0, fy, 0.5 * height], [0.0, 0.0, 1.0]], dtype=torch.float64)


def rigid_inverse(m: Tensor) -> Tensor:
    """Inverse of rigid transforms ``[..., 4, 4]``: ``[R t; 0 1]^-1 = [R^T, -R^T t; 0 1]``."""
    rot_t = m[..., :3, :3].transpose(-1, -2)
    out = torch.zeros_like(m)
    out[..., :3, :3] = rot_t
    out[..., :3, 3] = -(rot_t @ m[..., :3, 3:4])[..., 0]
    out[..., 3, 3] = 1.0
    return out


def opengl_to_viewmat(c2w_opengl: Tensor) -> Tensor:
    """OpenGL camera-to-world ``[C, 4, 4]`` -> OpenCV world-to-camera ``viewmats [C, 4, 4]``."""
    check_tensor(c2w_opengl, "c2w_opengl", shape=[None, 4, 4], floating=True)
    return rigid_inverse(c2w_opengl * _GL_CV_FLIP.to(c2w_opengl))


def viewmat_to_opengl(viewmats: Tensor) -> Tensor:
    """OpenCV world-to-camera ``[C, 4, 4]`` -> OpenGL camera-to-world ``[C, 4, 4]`` (Blender's)."""
    check_tensor(viewmats, "viewmats", shape=[None, 4, 4], floating=True)
    return rigid_inverse(viewmats) * _GL_CV_FLIP.to(viewmats)


def look_at_opengl(eyes: Tensor, target: Tensor, up: Tensor) -> Tensor:
    """OpenGL camera-to-world ``[C, 4, 4]`` for cameras at ``eyes [C, 3]`` looking at ``target [3]``.

    The camera's -z axis points at the target; +x is ``normalize(forward x up)``; +y completes the frame.
    """
    check_tensor(eyes, "eyes", shape=[None, 3], floating=True)
    forward = torch.nn.functional.normalize(target.to(eyes) - eyes, dim=-1)
    right = torch.linalg.cross(forward, up.to(eyes).expand_as(forward), dim=-1)
    if bool((right.norm(dim=-1) < 1e-8).any()):
        raise ValueError("look_at_opengl: a camera looks along the up vector; choose another up")
    right = torch.nn.functional.normalize(right, dim=-1)
    cam_up = torch.linalg.cross(right, forward, dim=-1)
    c2w = torch.zeros(eyes.shape[0], 4, 4, dtype=eyes.dtype)
    c2w[:, :3, 0], c2w[:, :3, 1], c2w[:, :3, 2], c2w[:, :3, 3] = right, cam_up, -forward, eyes
    c2w[:, 3, 3] = 1.0
    return c2w


def camera_centers(viewmats: Tensor) -> Tensor:
    """World positions ``[C, 3]`` of cameras given ``viewmats [C, 4, 4]``: ``-R^T t``."""
    return rigid_inverse(viewmats)[:, :3, 3]


def project_points(points: Tensor, viewmats: Tensor, Ks: Tensor) -> tuple[Tensor, Tensor]:
    """Projects ``points [P, 3]`` into ``C`` cameras.

    Returns ``(uv [C, P, 2], depth [C, P])`` with uv in pixels (continuous, pixel centres at +0.5).
    """
    check_tensor(points, "points", shape=[None, 3], floating=True)
    check_tensor(viewmats, "viewmats", shape=[None, 4, 4], floating=True)
    check_tensor(Ks, "Ks", shape=[viewmats.shape[0], 3, 3], floating=True)
    cam = points.to(viewmats) @ viewmats[:, :3, :3].transpose(-1, -2) + viewmats[:, None, :3, 3]  # [C, P, 3]
    depth = cam[..., 2]
    pix = cam @ Ks.to(cam).transpose(-1, -2)
    return pix[..., :2] / depth[..., None], depth


def unproject_depth(depth: Tensor, K: Tensor, viewmat: Tensor) -> Tensor:
    """World points ``[H, W, 3]`` seen at pixel centres with z-depth ``depth [H, W]``.

    ``p_cam = depth * K^-1 [i + 0.5, j + 0.5, 1]``, ``p = viewmat^-1 p_cam``.
    """
    check_tensor(depth, "depth", ndim=2, floating=True)
    height, width = depth.shape
    jj, ii = torch.meshgrid(
        torch.arange(height, dtype=K.dtype) + 0.5, torch.arange(width, dtype=K.dtype) + 0.5, indexing="ij"
    )
    pix = torch.stack([ii, jj, torch.ones_like(ii)], dim=-1)  # [H, W, 3]
    rays = pix @ torch.linalg.inv(K).T
    cam = rays * depth.to(K)[..., None]
    c2w = rigid_inverse(viewmat.to(K))
    return cam @ c2w[:3, :3].T + c2w[:3, 3]
