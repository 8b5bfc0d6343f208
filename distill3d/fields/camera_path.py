"""A circular camera path around a scene, for videos of a trained field.

The orbit turns around the axis ``u`` through the cameras' focus ``c`` (``distill3d.data.points``),
with ``u`` the mean of the cameras' up directions (OpenCV ``-y``): camera ``k`` of ``F`` sits at

    e_k = c + h u + r (cos t_k a + sin t_k b),   t_k = 2 pi k / F,

where ``h`` and ``r`` are the training cameras' mean height above and distance around the axis and
``(a, b)`` span the plane orthogonal to ``u``; every camera looks at ``c``.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from distill3d.data import Scene
from distill3d.data.cameras import look_at_opengl, opengl_to_viewmat, rigid_inverse
from distill3d.data.points import camera_focus


def orbit_path(scene: Scene, num_frames: int) -> Tensor:
    """``viewmats [num_frames, 4, 4]`` orbiting the scene (intrinsics: reuse ``scene.Ks[0]``)."""
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    c2w = rigid_inverse(scene.viewmats.double())
    up = torch.nn.functional.normalize(-c2w[:, :3, 1].mean(0), dim=0)
    focus = camera_focus(scene.viewmats).double()
    offsets = c2w[:, :3, 3] - focus
    height = float((offsets @ up).mean())
    radial = offsets - (offsets @ up)[:, None] * up
    radius = float(radial.norm(dim=1).mean())
    a = torch.nn.functional.normalize(radial[0], dim=0)
    b = torch.linalg.cross(up, a, dim=0)
    t = torch.arange(num_frames, dtype=torch.float64) * (2 * math.pi / num_frames)
    eyes = focus + height * up + radius * (t.cos()[:, None] * a + t.sin()[:, None] * b)
    return opengl_to_viewmat(look_at_opengl(eyes, focus, up)).float()
