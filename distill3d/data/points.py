"""Initial point clouds for Gaussian splatting: sparse SfM points, points unprojected from depth, or
random points around the cameras' focus (no depth, no SfM: what a photo collection without COLMAP has).

``method="auto"`` picks the first available of: the scene's sparse points (COLMAP), its depth maps,
random. Random points fill the cube centred on the cameras' focus point ``c`` (the point nearest to
every optical axis in the least-squares sense, ``c = argmin_x sum_i |(I - d_i d_i^T)(x - o_i)|^2``) with
half-side ``random_radius * mean_i |o_i - c|`` (grey).

:func:`colors_from_views` gives a point the mean colour of the pixels it projects to in the views that
see it in front of the camera (occlusion ignored: an initial guess that beats grey, as SfM colours do).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from distillcore.checks import check_positive
from distill3d.data.cameras import project_points, rigid_inverse, unproject_depth
from distill3d.data.scene import Scene

METHODS = ("auto", "sparse", "depth", "random")


@dataclass(frozen=True)
class PointInitConfig:
    method: str = "auto"
    num_points: int = 20_000  # for "depth" (subsampled) and "random"
    random_radius: float = 0.4  # half-side of the random cube, as a fraction of the camera distance
    seed: int = 0


def camera_focus(viewmats: Tensor) -> Tensor:
    """The point ``[3]`` closest to all optical axes of ``viewmats [V, 4, 4]`` (least squares, formula above)."""
    c2w = rigid_inverse(viewmats.double())
    origins, dirs = c2w[:, :3, 3], c2w[:, :3, 2]  # OpenCV: the optical axis is the camera's +z
    proj = torch.eye(3, dtype=torch.float64) - dirs[:, :, None] * dirs[:, None, :]  # [V, 3, 3]
    focus = torch.linalg.lstsq(proj.sum(0), (proj @ origins[:, :, None]).sum(0)).solution[:, 0]
    return focus.to(viewmats.dtype)


def points_from_depth(scene: Scene, num_points: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """World points and colours ``([P, 3], [P, 3])`` unprojected from every pixel with depth > 0,
    subsampled uniformly to at most ``num_points``."""
    if scene.depths is None:
        raise ValueError(f"scene {scene.root} has no depth maps to unproject")
    points, colors = [], []
    for v in range(scene.num_views):
        depth = scene.depths[v, ..., 0]
        valid = depth > 0
        points.append(unproject_depth(depth.double(), scene.Ks[v].double(), scene.viewmats[v].double())[valid])
        colors.append(scene.images[v][valid])
    points, colors = torch.cat(points).float(), torch.cat(colors)
    if points.shape[0] == 0:
        raise ValueError("points_from_depth: no pixel has a positive depth")
    keep = torch.randperm(points.shape[0], generator=generator)[:num_points]
    return points[keep], colors[keep]


def colors_from_views(points: Tensor, scene: Scene, chunk: int = 8192) -> Tensor:
    """Colours ``[P, 3]``: the mean over views of the pixel each point projects to (nearest pixel), over
    the views where it lies in front of the camera and inside the image; grey (0.5) where none does.

    Shapes:
        points: ``[P, 3]`` world points; scene images ``[V, H, W, 3]``.
    """
    out = []
    for start in range(0, points.shape[0], chunk):
        uv, depth = project_points(points[start:start + chunk], scene.viewmats, scene.Ks)  # [V, P, 2], [V, P]
        col, row = uv[..., 0].floor().long(), uv[..., 1].floor().long()
        seen = (depth > 0) & (col >= 0) & (col < scene.width) & (row >= 0) & (row < scene.height)
        views = torch.arange(scene.num_views)[:, None].expand_as(col)
        pixels = scene.images[views, row.clamp(0, scene.height - 1), col.clamp(0, scene.width - 1)]  # [V, P, 3]
        total = (pixels * seen[..., None]).sum(0)
        count = seen.sum(0)[:, None]
        out.append(torch.where(count > 0, total / count.clamp_min(1), torch.full_like(total, 0.5)))
    return torch.cat(out)


def random_points(scene: Scene, num_points: int, radius: float, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """``num_points`` uniform points in the cube around the cameras' focus (module doc) and grey colours."""
    check_positive(radius, "random_radius")
    focus = camera_focus(scene.viewmats)
    half = radius * (scene.camera_centers() - focus).norm(dim=-1).mean()
    points = focus + half * (2.0 * torch.rand(num_points, 3, generator=generator) - 1.0)
    return points, torch.full((num_points, 3), 0.5)


def initial_points(scene: Scene, config: PointInitConfig = PointInitConfig()) -> tuple[Tensor, Tensor]:
    """Initial ``(points [P, 3], colors [P, 3])`` for a scene by ``config.method`` (see the module doc)."""
    if config.method not in METHODS:
        raise ValueError(f"point init method must be one of {METHODS}, got {config.method!r}")
    if config.num_points < 2:
        raise ValueError(f"num_points must be >= 2, got {config.num_points}")
    generator = torch.Generator().manual_seed(config.seed)
    method = config.method
    if method == "auto":
        method = "sparse" if scene.points is not None else "depth" if scene.depths is not None else "random"
    if method == "sparse":
        if scene.points is None:
            raise ValueError("point init 'sparse' needs the scene's sparse points (a COLMAP scene)")
        colors = scene.point_colors if scene.point_colors is not None else torch.full_like(scene.points, 0.5)
        return scene.points, colors
    if method == "depth":
        return points_from_depth(scene, config.num_points, generator)
    return random_points(scene, config.num_points, config.random_radius, generator)
