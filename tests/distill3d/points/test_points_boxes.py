import math

import pytest
import torch

from distill3d.points.boxes import bev_iou, corners_3d, iou_3d, points_in_boxes
from distill3d.points.nms import batched_rotated_nms, rotated_nms


def box(x, y, z, l, w, h, yaw=0.0):
    return [x, y, z, l, w, h, yaw]


def test_axis_aligned_iou_hand_computed():
    a = torch.tensor([box(0, 0, 0, 2, 2, 2)])
    b = torch.tensor([box(1, 0, 0, 2, 2, 2), box(1, 1, 0.5, 2, 2, 1)])
    # shifted by 1 in x: overlap 1 x 2 = 2, union 4 + 4 - 2 = 6
    # second: BEV overlap 1 x 1 = 1 -> 1 / 7; height overlap 1 -> 3D 1 / (8 + 4 - 1)
    assert torch.allclose(bev_iou(a, b), torch.tensor([[1 / 3, 1 / 7]]), atol=1e-6)
    assert torch.allclose(iou_3d(a, b), torch.tensor([[1 / 3, 1 / 11]]), atol=1e-6)


def test_45_degree_square_iou_is_regular_octagon():
    a = torch.tensor([box(0, 0, 0, 2, 2, 2)])
    b = torch.tensor([box(0, 0, 0, 2, 2, 2, math.pi / 4)])
    octagon = 8 * (math.sqrt(2) - 1)  # intersection of a square and its 45-degree rotation (side 2)
    expected = octagon / (8 - octagon)
    assert bev_iou(a, b).item() == pytest.approx(expected, abs=1e-5)
    assert iou_3d(a, b).item() == pytest.approx(expected, abs=1e-5)


def test_rotated_rectangle_cross():
    # A 4x1 bar and the same bar turned 90 degrees overlap in a 1x1 square: IoU = 1 / 7
    a = torch.tensor([box(0, 0, 0, 4, 1, 1)])
    b = torch.tensor([box(0, 0, 0, 4, 1, 1, math.pi / 2)])
    assert bev_iou(a, b).item() == pytest.approx(1 / 7, abs=1e-5)


def test_disjoint_and_identical_and_heading_flip():
    a = torch.tensor([box(0, 0, 0, 2, 1, 1, 0.3)])
    b = torch.tensor([box(10, 0, 0, 2, 1, 1), box(0, 0, 0, 2, 1, 1, 0.3), box(0, 0, 0, 2, 1, 1, 0.3 + math.pi), box(0, 0, 5, 2, 1, 1, 0.3)])
    iou = bev_iou(a, b)[0]
    assert iou[0].item() == 0.0
    assert iou[1].item() == pytest.approx(1.0, abs=1e-5)
    assert iou[2].item() == pytest.approx(1.0, abs=1e-5)  # same rectangle, heading reversed
    assert iou_3d(a, b)[0, 3].item() == 0.0  # same footprint, no vertical overlap


def test_iou_is_symmetric_and_bounded():
    torch.manual_seed(0)
    boxes = torch.cat([torch.rand(30, 3) * 4, torch.rand(30, 3) * 2 + 0.5, torch.rand(30, 1) * 6], 1)
    iou = bev_iou(boxes, boxes)
    assert torch.allclose(iou, iou.T, atol=1e-5)
    assert torch.allclose(iou.diagonal(), torch.ones(30), atol=1e-4)
    assert bool((iou >= 0).all() and (iou <= 1 + 1e-5).all())


def test_points_in_rotated_box():
    b = torch.tensor([box(1, 1, 0, 4, 1, 2, math.pi / 2)])  # long along y after the turn
    pts = torch.tensor([[1.0, 2.9, 0.0], [2.9, 1.0, 0.0], [1.0, 1.0, 1.2]])
    assert points_in_boxes(pts, b)[:, 0].tolist() == [True, False, False]
    corners = corners_3d(b)[0]
    assert torch.allclose(corners[:, 2].unique(), torch.tensor([-1.0, 1.0]))


def test_zero_size_box_is_rejected():
    with pytest.raises(ValueError, match="zero or negative size"):
        bev_iou(torch.tensor([box(0, 0, 0, 0, 1, 1)]), torch.tensor([box(0, 0, 0, 1, 1, 1)]))
    with pytest.raises(ValueError, match="shape"):
        bev_iou(torch.zeros(2, 6), torch.zeros(2, 6))


def test_rotated_nms_keeps_best_of_overlapping_group():
    boxes = torch.tensor([
        box(0, 0, 0, 4, 2, 1), box(0.2, 0, 0, 4, 2, 1, 0.1),  # overlapping pair
        box(10, 0, 0, 4, 2, 1),  # alone
        box(0, 0, 0, 4, 2, 1, math.pi / 2),  # a cross over the first: IoU 4 / 12 = 1/3
    ])
    scores = torch.tensor([0.5, 0.9, 0.8, 0.7])
    assert rotated_nms(boxes, scores, 0.5).tolist() == [1, 2, 3]
    assert rotated_nms(boxes, scores, 0.3).tolist() == [1, 2]
    assert rotated_nms(boxes, scores, 0.5, max_keep=2).tolist() == [1, 2]


def test_batched_nms_does_not_suppress_across_classes():
    boxes = torch.tensor([box(0, 0, 0, 4, 2, 1), box(0, 0, 0, 4, 2, 1)])
    scores = torch.tensor([0.9, 0.8])
    assert batched_rotated_nms(boxes, scores, torch.tensor([0, 1]), 0.1).tolist() == [0, 1]
    assert batched_rotated_nms(boxes, scores, torch.tensor([0, 0]), 0.1).tolist() == [0]
