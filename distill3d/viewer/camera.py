"""A pinhole camera for the viewer, and its conversion to and from viser's camera state.

viser reports a browser's camera as its pose in the world (``wxyz`` rotation, ``position``, OpenCV axes:
+z forward, +y down) and a vertical field of view; our rasterizer takes a world -> camera ``viewmat``
(OpenCV) and intrinsics. For a ``W x H`` image:

    c2w = [R(wxyz) | position],   viewmat = c2w^-1,   f = (H / 2) / tan(fov_y / 2),
    K = [[f, 0, W / 2], [0, f, H / 2], [0, 0, 1]]

(square pixels, principal point at the centre, as a browser canvas has).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy.spatial.transform import Rotation
from torch import Tensor

from distillcore.checks import check_range, check_tensor
from distill3d.data.cameras import rigid_inverse


@dataclass(frozen=True)
class ViewerCamera:
    """One view: ``viewmat [4, 4]`` world -> camera (OpenCV), ``K [3, 3]``, image ``width x height``.

    Shapes:
        viewmat: ``[4, 4]`` float32; K: ``[3, 3]`` float32.
    """

    viewmat: Tensor
    K: Tensor
    width: int
    height: int

    def __post_init__(self) -> None:
        check_tensor(self.viewmat, "viewmat", shape=[4, 4], floating=True)
        check_tensor(self.K, "K", shape=[3, 3], floating=True)
        check_range(self.width, "width", 1, integer=True)
        check_range(self.height, "height", 1, integer=True)

    @classmethod
    def from_pose(cls, wxyz, position, fov_y: float, width: int, height: int) -> "ViewerCamera":
        """The camera of a viser client: pose ``wxyz [4]`` (camera -> world rotation), ``position [3]``,
        vertical field of view ``fov_y`` (radians), image ``width x height`` (formula in the module doc)."""
        check_range(fov_y, "fov_y (radians)", 0, math.pi, low_open=True, high_open=True)
        w, x, y, z = (float(v) for v in np.asarray(wxyz, np.float64).reshape(4))
        c2w = np.eye(4)
        c2w[:3, :3] = Rotation.from_quat([x, y, z, w]).as_matrix()  # scipy is xyzw (and normalises)
        c2w[:3, 3] = np.asarray(position, np.float64).reshape(3)
        focal = 0.5 * height / math.tan(0.5 * fov_y)
        K = torch.tensor([[focal, 0.0, 0.5 * width], [0.0, focal, 0.5 * height], [0.0, 0.0, 1.0]])
        return cls(rigid_inverse(torch.from_numpy(c2w)).float(), K, int(width), int(height))

    def pose(self) -> tuple[np.ndarray, np.ndarray, float]:
        """``(wxyz [4], position [3], fov_y)`` that viser needs to show this camera (the inverse of
        :meth:`from_pose`; the horizontal field of view follows from the canvas' aspect ratio)."""
        c2w = rigid_inverse(self.viewmat.double()).numpy()
        x, y, z, w = Rotation.from_matrix(c2w[:3, :3]).as_quat()
        fov_y = 2.0 * math.atan(0.5 * self.height / float(self.K[1, 1]))
        return np.array([w, x, y, z]), c2w[:3, 3].copy(), fov_y

    def scaled(self, width: int, height: int) -> "ViewerCamera":
        """The same view at another image size: intrinsics scale with the image (``K`` rows 0 and 1)."""
        K = self.K.clone()
        K[0] *= width / self.width
        K[1] *= height / self.height
        return ViewerCamera(self.viewmat, K, int(width), int(height))

    @classmethod
    def from_scene(cls, scene, index: int) -> "ViewerCamera":
        """View ``index`` of a :class:`~distill3d.data.Scene`."""
        return cls(scene.viewmats[index].float(), scene.Ks[index].float(), scene.width, scene.height)


__all__ = ["ViewerCamera"]
