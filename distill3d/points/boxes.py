"""Oriented 3D boxes: corners, point membership and rotated-box IoU (bird's-eye view and 3D).

A box is ``[x, y, z, l, w, h, yaw]`` in the LiDAR frame: ``(x, y, z)`` its centre, ``l`` its extent
along its heading, ``w`` across, ``h`` up, and ``yaw`` the heading's angle from +x towards +y.

The bird's-eye-view (BEV) intersection of two rectangles is a convex polygon whose vertices are the
corners of each rectangle that lie inside the other plus the crossings of their edges. Sorting those
candidates by angle around their centroid and applying the shoelace formula

.. math::
    A = \\tfrac12 \\Big| \\sum_i (x_i y_{i+1} - x_{i+1} y_i) \\Big|

gives its area for all pairs at once, with no per-pair Python loop. Then

.. math::
    \\mathrm{IoU}_{BEV} = \\frac{A_\\cap}{l_a w_a + l_b w_b - A_\\cap}, \\qquad
    \\mathrm{IoU}_{3D} = \\frac{A_\\cap\\, h_\\cap}{V_a + V_b - A_\\cap\\, h_\\cap}

with :math:`h_\\cap` the overlap of the two vertical extents.
"""
from __future__ import annotations

import torch
from torch import Tensor

from distillcore.checks import check_tensor

BOX_DIM = 7
# Tolerance (metres) for "point on an edge counts as inside" and for parallel edges; keeps the
# intersection of identical or touching boxes exact in float32.
GEOMETRY_EPS = 1e-5


def check_boxes(boxes: Tensor, name: str = "boxes", *, allow_empty: bool = True) -> Tensor:
    """Checks ``boxes`` is ``[M, 7]``, finite, with strictly positive sizes."""
    check_tensor(boxes, name, ndim=2, floating=True, nonempty=not allow_empty)
    if boxes.shape[-1] != BOX_DIM:
        raise ValueError(f"{name} must have shape [M, 7] (x, y, z, l, w, h, yaw), got {list(boxes.shape)}")
    if boxes.numel() and bool((boxes[:, 3:6] <= 0).any()):
        bad = int((boxes[:, 3:6] <= 0).any(dim=1).sum())
        raise ValueError(f"{name} has {bad} box(es) with a zero or negative size (l, w, h must be > 0)")
    return boxes


def bev_corners(boxes: Tensor) -> Tensor:  # [M, 4, 2]
    """Counter-clockwise BEV corners of ``boxes`` ``[M, 7]``."""
    half_l, half_w = boxes[:, 3:4] / 2, boxes[:, 4:5] / 2
    local_x = torch.cat([half_l, -half_l, -half_l, half_l], dim=1)
    local_y = torch.cat([half_w, half_w, -half_w, -half_w], dim=1)
    cos, sin = torch.cos(boxes[:, 6:7]), torch.sin(boxes[:, 6:7])
    x = boxes[:, 0:1] + cos * local_x - sin * local_y
    y = boxes[:, 1:2] + sin * local_x + cos * local_y
    return torch.stack([x, y], dim=-1)


def corners_3d(boxes: Tensor) -> Tensor:  # [M, 8, 3]
    """The 8 corners: the 4 BEV corners at the bottom, then the same 4 at the top."""
    bev = bev_corners(boxes)
    bottom = (boxes[:, 2] - boxes[:, 5] / 2)[:, None, None].expand(-1, 4, 1)
    top = (boxes[:, 2] + boxes[:, 5] / 2)[:, None, None].expand(-1, 4, 1)
    return torch.cat([torch.cat([bev, bottom], -1), torch.cat([bev, top], -1)], dim=1)


def to_box_frame(points: Tensor, boxes: Tensor) -> Tensor:  # [P, M, 3]
    """Coordinates of ``points`` ``[P, 3]`` in each box's own frame (centre origin, heading +x)."""
    d = points[:, None, :] - boxes[None, :, :3]
    cos, sin = torch.cos(boxes[:, 6]), torch.sin(boxes[:, 6])
    local_x = cos * d[..., 0] + sin * d[..., 1]
    local_y = -sin * d[..., 0] + cos * d[..., 1]
    return torch.stack([local_x, local_y, d[..., 2]], dim=-1)


def points_in_boxes(points: Tensor, boxes: Tensor, margin: float = 0.0) -> Tensor:  # [P, M] bool
    """Whether each point ``[P, 3+]`` lies inside each box ``[M, 7]`` grown by ``margin`` metres."""
    check_tensor(points, "points", ndim=2, floating=True, nonempty=False)
    check_boxes(boxes)
    local = to_box_frame(points[:, :3], boxes)
    half = boxes[None, :, 3:6] / 2 + margin
    return (local.abs() <= half).all(dim=-1)


def _cross(a: Tensor, b: Tensor) -> Tensor:
    return a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]


def _inside_convex(points: Tensor, polygon: Tensor) -> Tensor:
    """``points`` [P, n, 2] inside counter-clockwise ``polygon`` [P, 4, 2] -> [P, n] bool."""
    edge = torch.roll(polygon, -1, dims=1) - polygon  # [P, 4, 2]
    rel = points[:, :, None, :] - polygon[:, None, :, :]  # [P, n, 4, 2]
    return (_cross(edge[:, None], rel) >= -GEOMETRY_EPS).all(dim=-1)


def convex_quad_intersection_area(quad_a: Tensor, quad_b: Tensor) -> Tensor:  # [P]
    """Area of the intersection of counter-clockwise convex quads ``[P, 4, 2]``, pairwise by row."""
    start_a, start_b = quad_a, quad_b
    dir_a = torch.roll(quad_a, -1, dims=1) - quad_a  # [P, 4, 2]
    dir_b = torch.roll(quad_b, -1, dims=1) - quad_b
    # a0 + t da = b0 + u db for every edge pair.
    da, db = dir_a[:, :, None, :], dir_b[:, None, :, :]  # [P, 4, 1, 2], [P, 1, 4, 2]
    offset = start_b[:, None, :, :] - start_a[:, :, None, :]  # [P, 4, 4, 2]
    denom = _cross(da, db)  # [P, 4, 4]
    parallel = denom.abs() < GEOMETRY_EPS
    safe = torch.where(parallel, torch.ones_like(denom), denom)
    t = _cross(offset, db) / safe
    u = _cross(offset, da) / safe
    crossing_ok = ~parallel & (t >= -GEOMETRY_EPS) & (t <= 1 + GEOMETRY_EPS) & (u >= -GEOMETRY_EPS) & (u <= 1 + GEOMETRY_EPS)
    crossings = (start_a[:, :, None, :] + t[..., None] * da).reshape(-1, 16, 2)

    candidates = torch.cat([quad_a, quad_b, crossings], dim=1)  # [P, 24, 2]
    valid = torch.cat([_inside_convex(quad_a, quad_b), _inside_convex(quad_b, quad_a), crossing_ok.reshape(-1, 16)], dim=1)
    count = valid.sum(dim=1)
    centroid = (candidates * valid[..., None]).sum(1) / count.clamp(min=1)[:, None]
    rel = candidates - centroid[:, None, :]
    angle = torch.atan2(rel[..., 1], rel[..., 0])
    # Invalid candidates sort last and are replaced by the first valid vertex: they then add
    # zero-area triangles to the shoelace sum.
    angle = torch.where(valid, angle, torch.full_like(angle, 4 * torch.pi))
    order = angle.argsort(dim=1)
    sorted_pts = torch.gather(rel, 1, order[..., None].expand(-1, -1, 2))
    sorted_valid = torch.gather(valid, 1, order)
    sorted_pts = torch.where(sorted_valid[..., None], sorted_pts, sorted_pts[:, :1, :])
    area = 0.5 * _cross(sorted_pts, torch.roll(sorted_pts, -1, dims=1)).sum(dim=1).abs()
    return torch.where(count >= 3, area, torch.zeros_like(area))


def _pairwise_bev_intersection(boxes_a: Tensor, boxes_b: Tensor) -> Tensor:  # [N, M]
    n, m = boxes_a.shape[0], boxes_b.shape[0]
    inter = boxes_a.new_zeros(n, m)
    if n == 0 or m == 0:
        return inter
    # Only pairs whose circumscribed circles meet can intersect: in a scene most pairs are far
    # apart, so the polygon clipping runs on a small subset.
    radius_a = 0.5 * torch.hypot(boxes_a[:, 3], boxes_a[:, 4])
    radius_b = 0.5 * torch.hypot(boxes_b[:, 3], boxes_b[:, 4])
    near = torch.cdist(boxes_a[:, :2], boxes_b[:, :2]) <= radius_a[:, None] + radius_b[None, :] + GEOMETRY_EPS
    ia, ib = near.nonzero(as_tuple=True)
    if len(ia):
        inter[ia, ib] = convex_quad_intersection_area(bev_corners(boxes_a)[ia], bev_corners(boxes_b)[ib])
    return inter


def bev_iou(boxes_a: Tensor, boxes_b: Tensor) -> Tensor:  # [N, M]
    """Pairwise rotated IoU in bird's-eye view of ``boxes_a`` ``[N, 7]`` and ``boxes_b`` ``[M, 7]``."""
    check_boxes(boxes_a, "boxes_a")
    check_boxes(boxes_b, "boxes_b")
    inter = _pairwise_bev_intersection(boxes_a, boxes_b)
    area_a = (boxes_a[:, 3] * boxes_a[:, 4])[:, None]
    area_b = (boxes_b[:, 3] * boxes_b[:, 4])[None, :]
    return inter / (area_a + area_b - inter).clamp(min=GEOMETRY_EPS)


def iou_3d(boxes_a: Tensor, boxes_b: Tensor) -> Tensor:  # [N, M]
    """Pairwise rotated 3D IoU (yaw about z only, as in KITTI) of ``[N, 7]`` and ``[M, 7]`` boxes."""
    check_boxes(boxes_a, "boxes_a")
    check_boxes(boxes_b, "boxes_b")
    inter_bev = _pairwise_bev_intersection(boxes_a, boxes_b)
    top = torch.minimum((boxes_a[:, 2] + boxes_a[:, 5] / 2)[:, None], (boxes_b[:, 2] + boxes_b[:, 5] / 2)[None])
    bottom = torch.maximum((boxes_a[:, 2] - boxes_a[:, 5] / 2)[:, None], (boxes_b[:, 2] - boxes_b[:, 5] / 2)[None])
    inter = inter_bev * (top - bottom).clamp(min=0)
    vol_a = boxes_a[:, 3:6].prod(dim=1)[:, None]
    vol_b = boxes_b[:, 3:6].prod(dim=1)[None, :]
    return inter / (vol_a + vol_b - inter).clamp(min=GEOMETRY_EPS)


__all__ = [
    "BOX_DIM", "check_boxes", "bev_corners", "corners_3d", "to_box_frame", "points_in_boxes",
    "convex_quad_intersection_area", "bev_iou", "iou_3d",
]
