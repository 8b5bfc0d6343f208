"""Training-time augmentation of scans: flip, global rotation, global scaling, ground-truth sampling.

All geometric transforms act on points and boxes together so the labels stay exact:

- flip about the x axis: :math:`y \\to -y`, :math:`\\text{yaw} \\to -\\text{yaw}`;
- rotation by :math:`\\phi` about z: :math:`(x, y) \\to R_\\phi (x, y)`, :math:`\\text{yaw} \\to \\text{yaw} + \\phi`;
- scaling by :math:`s`: :math:`xyz \\to s\\, xyz`, box sizes :math:`\\to s\\,` sizes;
- ground-truth sampling (SECOND): objects cut from other training scans, with their points, are
  pasted where they overlap no existing box; the scan's own points inside a pasted box are removed
  first so the pasted object is not buried in foreign points.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from distillcore.checks import check_range

from distill3d.points.boxes import bev_iou, points_in_boxes
from distill3d.points.scan import Scan


@dataclass
class AugmentConfig:
    flip_prob: float = 0.5
    rotation_range: float = np.pi / 4  # uniform in [-range, range]
    scale_range: tuple[float, float] = (0.95, 1.05)
    gt_sampling: bool = False
    gt_sampling_max_objects: int = 4

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        check_range(self.flip_prob, "augment.flip_prob", 0, 1)
        check_range(self.rotation_range, "augment.rotation_range", 0)
        low, high = self.scale_range
        check_range(low, "augment.scale_range[0]", 0, low_open=True)
        if not high >= low:
            raise ValueError(f"augment.scale_range must be (low, high) with 0 < low <= high, got {self.scale_range}")
        check_range(self.gt_sampling_max_objects, "augment.gt_sampling_max_objects", 0, integer=True)


def _replace(scan: Scan, points: np.ndarray, boxes: np.ndarray, **changes) -> Scan:
    return Scan(points.astype(np.float32), boxes.astype(np.float32), changes.get("labels", scan.labels),
                changes.get("occlusion", scan.occlusion), scan.frame_id)


def flip_y(scan: Scan) -> Scan:
    points, boxes = scan.points.copy(), scan.boxes.copy()
    points[:, 1] *= -1
    boxes[:, 1] *= -1
    boxes[:, 6] *= -1
    return _replace(scan, points, boxes)


def rotate_z(scan: Scan, angle: float) -> Scan:
    c, s = np.cos(angle), np.sin(angle)
    rot = np.array([[c, -s], [s, c]])
    points, boxes = scan.points.copy(), scan.boxes.copy()
    points[:, :2] = points[:, :2] @ rot.T
    boxes[:, :2] = boxes[:, :2] @ rot.T
    boxes[:, 6] = (boxes[:, 6] + angle + np.pi) % (2 * np.pi) - np.pi
    return _replace(scan, points, boxes)


def scale(scan: Scan, factor: float) -> Scan:
    points, boxes = scan.points.copy(), scan.boxes.copy()
    points[:, :3] *= factor
    boxes[:, :6] *= factor
    return _replace(scan, points, boxes)


@dataclass
class GroundTruthDatabase:
    """Objects cut out of training scans: their boxes ``[K, 7]``, labels, occlusion and points."""

    boxes: np.ndarray
    labels: np.ndarray
    occlusion: np.ndarray
    points: list[np.ndarray]

    @classmethod
    def from_scans(cls, scans: list[Scan]) -> "GroundTruthDatabase":
        boxes, labels, occlusion, points = [], [], [], []
        for scan in scans:
            if len(scan.boxes) == 0:
                continue
            inside = points_in_boxes(torch.from_numpy(scan.points[:, :3]), torch.from_numpy(scan.boxes)).numpy()
            for j in range(len(scan.boxes)):
                if inside[:, j].any():
                    boxes.append(scan.boxes[j])
                    labels.append(scan.labels[j])
                    occlusion.append(scan.occlusion[j])
                    points.append(scan.points[inside[:, j]])
        if not boxes:
            raise ValueError("ground-truth sampling needs at least one labelled object with points")
        return cls(np.stack(boxes), np.array(labels), np.array(occlusion), points)


def paste_objects(scan: Scan, db: GroundTruthDatabase, count: int, rng: np.random.Generator) -> Scan:
    """Pastes up to ``count`` database objects that overlap no box of ``scan`` (nor each other)."""
    picks = rng.choice(len(db.boxes), size=min(count, len(db.boxes)), replace=False)
    boxes = scan.boxes
    chosen = []
    for k in picks:
        candidate = db.boxes[k : k + 1]
        if len(boxes) == 0 or float(bev_iou(torch.from_numpy(candidate), torch.from_numpy(boxes)).max()) == 0.0:
            boxes = np.concatenate([boxes, candidate])
            chosen.append(k)
    if not chosen:
        return scan
    new_boxes = db.boxes[chosen]
    covered = points_in_boxes(torch.from_numpy(scan.points[:, :3]), torch.from_numpy(new_boxes)).any(dim=1).numpy()
    points = np.concatenate([scan.points[~covered]] + [db.points[k] for k in chosen])
    return _replace(scan, points, boxes, labels=np.concatenate([scan.labels, db.labels[chosen]]),
                    occlusion=np.concatenate([scan.occlusion, db.occlusion[chosen]]))


def augment(scan: Scan, cfg: AugmentConfig, rng: np.random.Generator, db: GroundTruthDatabase | None = None) -> Scan:
    """One random augmentation of ``scan`` (ground-truth sampling first, on the un-moved scan)."""
    if cfg.gt_sampling:
        if db is None:
            raise ValueError("AugmentConfig.gt_sampling is on but no GroundTruthDatabase was given")
        scan = paste_objects(scan, db, cfg.gt_sampling_max_objects, rng)
    if rng.random() < cfg.flip_prob:
        scan = flip_y(scan)
    if cfg.rotation_range > 0:
        scan = rotate_z(scan, float(rng.uniform(-cfg.rotation_range, cfg.rotation_range)))
    if cfg.scale_range != (1.0, 1.0):
        scan = scale(scan, float(rng.uniform(*cfg.scale_range)))
    return scan


__all__ = ["AugmentConfig", "flip_y", "rotate_z", "scale", "GroundTruthDatabase", "paste_objects", "augment"]
