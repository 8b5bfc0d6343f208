"""Real object meshes that ship with pybullet (``pybullet_data``), normalised for scene building.

Their native scales and up axes differ wildly (the duck is y-up and about 2.6 units long, the
teddy z-up and under one unit), so each mesh is turned z-up, its longer horizontal side put along
+x (the box heading), centred on its bounding box and scaled uniformly to a requested length. The
bounding box of the normalised mesh is then the exact oriented 3D box of every placed copy.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import Literal

import numpy as np

from distillcore.extras import require_extra


@dataclass(frozen=True)
class MeshSpec:
    """A mesh file inside pybullet's data folder and its up axis."""

    file: str
    up_axis: Literal["y", "z"] = "z"


def pybullet_data_path() -> str:
    return require_extra("pybullet_data", "points").getDataPath()  # pybullet's data folder has the meshes


@functools.lru_cache(maxsize=None)
def _unit_mesh(spec: MeshSpec) -> tuple[np.ndarray, np.ndarray]:
    """Vertices ``[V, 3]`` (z-up, centred, length 1 along +x) and triangles ``[T, 3]`` of ``spec``."""
    path = os.path.join(pybullet_data_path(), spec.file)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"mesh {spec.file!r} not found in pybullet's data folder {pybullet_data_path()}")
    mesh = require_extra("open3d", "points").io.read_triangle_mesh(path)
    vertices = np.asarray(mesh.vertices, dtype=np.float64)
    triangles = np.asarray(mesh.triangles, dtype=np.int32)
    if len(triangles) == 0:
        raise ValueError(f"mesh {spec.file!r} has no triangles")
    if spec.up_axis == "y":  # (x, y, z)_y-up -> (x, -z, y)_z-up, a proper rotation about x
        vertices = np.stack([vertices[:, 0], -vertices[:, 2], vertices[:, 1]], axis=1)
    extent = vertices.max(0) - vertices.min(0)
    if extent[1] > extent[0]:  # longer horizontal side along +x: rotate 90 degrees about z
        vertices = np.stack([vertices[:, 1], -vertices[:, 0], vertices[:, 2]], axis=1)
    lo, hi = vertices.min(0), vertices.max(0)
    vertices = (vertices - (lo + hi) / 2) / (hi - lo)[0]
    return vertices, triangles


def normalized_mesh(spec: MeshSpec, length: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(vertices [V, 3], triangles [T, 3], size [3] = l, w, h)`` of ``spec`` scaled to ``length``,
    centred on the origin of its box frame."""
    vertices, triangles = _unit_mesh(spec)
    scaled = vertices * length
    return scaled, triangles, scaled.max(0) - scaled.min(0)


def place(vertices: np.ndarray, center: np.ndarray, yaw: float) -> np.ndarray:
    """Vertices ``[V, 3]`` of a box-frame mesh rotated by ``yaw`` about z and moved to ``center``."""
    c, s = np.cos(yaw), np.sin(yaw)
    rot = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    return vertices @ rot.T + center


__all__ = ["MeshSpec", "pybullet_data_path", "normalized_mesh", "place"]
