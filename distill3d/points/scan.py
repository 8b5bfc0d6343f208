"""One LiDAR scan with its labels, as numpy arrays (the unit that readers, writers, the simulator
and augmentation exchange), and its validation."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# x, y, z, intensity: the KITTI velodyne layout.
POINT_DIM = 4
# KITTI's occlusion levels: 0 fully visible, 1 partly occluded, 2 largely occluded, 3 unknown.
OCCLUSION_UNKNOWN = 3


@dataclass
class Scan:
    """A scan in the LiDAR frame (x forward, y left, z up; the sensor at the origin).

    Attributes:
        points: ``[P, 4]`` float32 ``x, y, z, intensity``.
        boxes: ``[M, 7]`` float32 ``x, y, z, l, w, h, yaw`` (centre, size, heading; see ``boxes.py``).
        labels: ``[M]`` int64 class indices into the data set's class names.
        occlusion: ``[M]`` int64 KITTI occlusion levels (0..3).
        frame_id: the file stem, e.g. ``"000042"``.
    """

    points: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    occlusion: np.ndarray
    frame_id: str = ""

    def validate(self) -> "Scan":
        """Raises ``ValueError`` naming the problem if the arrays are malformed; returns self."""
        where = f"scan {self.frame_id!r}" if self.frame_id else "scan"
        if self.points.ndim != 2 or self.points.shape[1] != POINT_DIM:
            raise ValueError(f"{where}: points must have shape [P, 4], got {list(self.points.shape)}")
        if self.points.shape[0] == 0:
            raise ValueError(f"{where}: the scan has no points")
        if not np.isfinite(self.points).all():
            raise ValueError(f"{where}: points have {int((~np.isfinite(self.points)).sum())} NaN/Inf values")
        m = self.boxes.shape[0]
        if self.boxes.ndim != 2 or self.boxes.shape[1] != 7:
            raise ValueError(f"{where}: boxes must have shape [M, 7], got {list(self.boxes.shape)}")
        if not np.isfinite(self.boxes).all():
            raise ValueError(f"{where}: boxes have NaN/Inf values")
        if m and (self.boxes[:, 3:6] <= 0).any():
            raise ValueError(f"{where}: {int((self.boxes[:, 3:6] <= 0).any(1).sum())} box(es) have a zero or negative size")
        if self.labels.shape != (m,) or self.occlusion.shape != (m,):
            raise ValueError(
                f"{where}: labels {list(self.labels.shape)} and occlusion {list(self.occlusion.shape)} must both be [{m}]"
            )
        return self


def empty_labels() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(boxes [0, 7], labels [0], occlusion [0])`` for a scan without objects."""
    return np.zeros((0, 7), np.float32), np.zeros(0, np.int64), np.zeros(0, np.int64)


__all__ = ["Scan", "POINT_DIM", "OCCLUSION_UNKNOWN", "empty_labels"]
