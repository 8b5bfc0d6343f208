"""KITTI object-detection layout: read and write scans, labels and calibration.

A data set root holds ``training/{velodyne,label_2,calib}/<frame>.{bin,txt,txt}`` and optionally
``ImageSets/<split>.txt`` (frame ids, one per line). ``velodyne`` is float32 ``x, y, z, intensity``;
a ``label_2`` line is ``type truncated occluded alpha x1 y1 x2 y2 h w l x y z rotation_y [score]`` in
the rectified camera frame, with ``(x, y, z)`` the bottom centre of the box. The LiDAR frame and the
rectified camera frame are related by :math:`p_{rect} = R_0 \\, T_{velo\\to cam} \\, p_{velo}`, and the
heading by :math:`\\text{yaw} = -\\text{rotation\\_y} - \\pi/2`. The simulator writes the same files, so
the loader that reads simulated scenes reads a user's real KITTI folder unchanged.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from distill3d.points.boxes import corners_3d
from distill3d.points.scan import POINT_DIM, Scan

# Calibration of the simulated sensor rig: the camera sits at the LiDAR origin looking along +x
# with KITTI's P2 intrinsics (so the written files have KITTI's shapes and conventions).
VELO_TO_CAM_AXES = np.array([[0.0, -1.0, 0.0, 0.0], [0.0, 0.0, -1.0, 0.0], [1.0, 0.0, 0.0, 0.0]])
KITTI_P2 = np.array([[721.5377, 0.0, 609.5593, 44.85728], [0.0, 721.5377, 172.854, 0.2163791], [0.0, 0.0, 1.0, 0.002745884]])
KITTI_IMAGE_SIZE = (1242, 375)  # width, height: clips the 2D boxes written to label_2


@dataclass
class Calibration:
    """KITTI calibration: projections ``P0..P3`` [3, 4], ``R0_rect`` [3, 3], ``Tr_velo_to_cam`` [3, 4]."""

    P: list[np.ndarray] = field(default_factory=lambda: [KITTI_P2.copy() for _ in range(4)])
    R0_rect: np.ndarray = field(default_factory=lambda: np.eye(3))
    Tr_velo_to_cam: np.ndarray = field(default_factory=lambda: VELO_TO_CAM_AXES.copy())
    Tr_imu_to_velo: np.ndarray = field(default_factory=lambda: np.eye(4)[:3])

    def velo_to_rect(self, xyz: np.ndarray) -> np.ndarray:  # [N, 3] -> [N, 3]
        return (np.c_[xyz, np.ones(len(xyz))] @ self.Tr_velo_to_cam.T) @ self.R0_rect.T

    def rect_to_velo(self, xyz: np.ndarray) -> np.ndarray:  # [N, 3] -> [N, 3]
        velo_to_rect = np.eye(4)
        velo_to_rect[:3, :4] = self.R0_rect @ self.Tr_velo_to_cam
        rect_to_velo = np.linalg.inv(velo_to_rect)
        return np.c_[xyz, np.ones(len(xyz))] @ rect_to_velo[:3].T


def read_calibration(path: Path) -> Calibration:
    values: dict[str, np.ndarray] = {}
    for line in Path(path).read_text().splitlines():
        if ":" in line:
            key, rest = line.split(":", 1)
            values[key.strip()] = np.array([float(v) for v in rest.split()])
    try:
        return Calibration(
            P=[values[f"P{i}"].reshape(3, 4) for i in range(4)],
            R0_rect=values["R0_rect"].reshape(3, 3),
            Tr_velo_to_cam=values["Tr_velo_to_cam"].reshape(3, 4),
            Tr_imu_to_velo=values.get("Tr_imu_to_velo", np.eye(4)[:3].ravel()).reshape(3, 4),
        )
    except KeyError as err:
        raise ValueError(f"calibration file {path} lacks {err.args[0]}") from err


def write_calibration(path: Path, calib: Calibration) -> None:
    rows = [(f"P{i}", p) for i, p in enumerate(calib.P)]
    rows += [("R0_rect", calib.R0_rect), ("Tr_velo_to_cam", calib.Tr_velo_to_cam), ("Tr_imu_to_velo", calib.Tr_imu_to_velo)]
    _atomic_write_text(path, "".join(f"{k}: {' '.join(f'{v:.12e}' for v in m.ravel())}\n" for k, m in rows))


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = Path(str(path) + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def boxes_to_camera(boxes: np.ndarray, calib: Calibration) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """LiDAR boxes ``[M, 7]`` -> ``(bottom centre [M, 3], h w l [M, 3], rotation_y [M])`` in the rectified camera frame."""
    bottom = boxes[:, :3].astype(np.float64).copy()
    bottom[:, 2] -= boxes[:, 5] / 2
    rotation_y = _wrap_angle(-boxes[:, 6].astype(np.float64) - np.pi / 2)
    return calib.velo_to_rect(bottom), boxes[:, [5, 4, 3]].astype(np.float64), rotation_y


def boxes_from_camera(location: np.ndarray, hwl: np.ndarray, rotation_y: np.ndarray, calib: Calibration) -> np.ndarray:
    """Inverse of :func:`boxes_to_camera`: ``[M, 7]`` LiDAR boxes."""
    center = calib.rect_to_velo(location)
    center[:, 2] += hwl[:, 0] / 2
    yaw = _wrap_angle(-rotation_y - np.pi / 2)
    return np.c_[center, hwl[:, 2], hwl[:, 1], hwl[:, 0], yaw].astype(np.float32)


def _wrap_angle(a: np.ndarray) -> np.ndarray:
    return (a + np.pi) % (2 * np.pi) - np.pi


def _image_boxes(boxes: np.ndarray, calib: Calibration) -> np.ndarray:  # [M, 4] x1 y1 x2 y2
    corners = corners_3d(torch.from_numpy(boxes.astype(np.float64))).numpy().reshape(-1, 3)
    rect = calib.velo_to_rect(corners)
    uvw = np.c_[rect, np.ones(len(rect))] @ calib.P[2].T
    uv = uvw[:, :2] / np.maximum(uvw[:, 2:3], 1e-3)
    uv = uv.reshape(-1, 8, 2)
    w, h = KITTI_IMAGE_SIZE
    return np.c_[uv[..., 0].min(1).clip(0, w - 1), uv[..., 1].min(1).clip(0, h - 1),
                 uv[..., 0].max(1).clip(0, w - 1), uv[..., 1].max(1).clip(0, h - 1)]


def format_label_lines(
    boxes: np.ndarray, labels: np.ndarray, occlusion: np.ndarray, class_names: tuple[str, ...], calib: Calibration,
    scores: np.ndarray | None = None,
) -> str:
    """``label_2`` text for boxes in the LiDAR frame (with a score column for predictions)."""
    location, hwl, rotation_y = boxes_to_camera(boxes, calib)
    alpha = _wrap_angle(rotation_y + np.arctan2(-boxes[:, 1], boxes[:, 0]))
    image_boxes = _image_boxes(boxes, calib) if len(boxes) else np.zeros((0, 4))
    lines = []
    for i in range(len(boxes)):
        fields = [class_names[int(labels[i])], "0.00", str(int(occlusion[i])), f"{alpha[i]:.2f}"]
        fields += [f"{v:.2f}" for v in image_boxes[i]] + [f"{v:.4f}" for v in hwl[i]] + [f"{v:.4f}" for v in location[i]]
        fields.append(f"{rotation_y[i]:.4f}")
        if scores is not None:
            fields.append(f"{scores[i]:.4f}")
        lines.append(" ".join(fields))
    return "".join(line + "\n" for line in lines)


def parse_label_lines(text: str, class_names: tuple[str, ...], calib: Calibration, source: str = "label") -> tuple[np.ndarray, ...]:
    """``(boxes [M, 7], labels [M], occlusion [M], scores [M])`` of the lines whose type is in
    ``class_names`` (``DontCare`` and other types are skipped); scores are 1 without a score column."""
    location, hwl, rotation_y, labels, occlusion, scores = [], [], [], [], [], []
    for n, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) not in (15, 16):
            raise ValueError(f"{source}:{n}: a KITTI label line has 15 or 16 fields, got {len(parts)}")
        if parts[0] not in class_names:
            continue
        values = [float(v) for v in parts[1:]]
        labels.append(class_names.index(parts[0]))
        occlusion.append(int(values[1]))
        hwl.append(values[7:10])
        location.append(values[10:13])
        rotation_y.append(values[13])
        scores.append(values[14] if len(values) == 15 else 1.0)
    if not labels:
        return np.zeros((0, 7), np.float32), np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    boxes = boxes_from_camera(np.array(location), np.array(hwl), np.array(rotation_y), calib)
    return boxes, np.array(labels, np.int64), np.array(occlusion, np.int64), np.array(scores, np.float32)


def read_velodyne(path: Path) -> np.ndarray:  # [P, 4] float32
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"velodyne scan {path} not found")
    raw = np.fromfile(path, dtype=np.float32)
    if raw.size % POINT_DIM:
        raise ValueError(f"{path}: size {raw.size * 4} bytes is not a multiple of 16 (x, y, z, intensity float32)")
    return raw.reshape(-1, POINT_DIM)


def write_velodyne(path: Path, points: np.ndarray) -> None:
    tmp = Path(str(path) + ".tmp")
    np.ascontiguousarray(points, dtype=np.float32).tofile(tmp)
    os.replace(tmp, path)


class KittiDataset:
    """Scans and labels of a KITTI-layout folder (real KITTI or written by :func:`write_kitti_dataset`).

    Args:
        root: the folder holding ``training/`` (or ``testing/``) and optionally ``ImageSets/``.
        class_names: label types to keep, in class-index order (e.g. ``("Car", "Pedestrian", "Cyclist")``).
        split: an ``ImageSets/<split>.txt`` list of frame ids; without that file all scans of ``subset``.
        subset: ``"training"`` (has labels) or ``"testing"``.
    """

    def __init__(self, root: str | Path, class_names: tuple[str, ...], split: str | None = None, subset: str = "training"):
        self.root = Path(root)
        self.class_names = tuple(class_names)
        self.dir = self.root / subset
        if not (self.dir / "velodyne").is_dir():
            raise FileNotFoundError(
                f"{self.dir / 'velodyne'} not found: expected a KITTI object-detection folder "
                f"(<root>/{subset}/velodyne/*.bin, label_2/*.txt, calib/*.txt)"
            )
        image_set = self.root / "ImageSets" / f"{split}.txt" if split else None
        if image_set is not None and image_set.is_file():
            self.frame_ids = [s.strip() for s in image_set.read_text().split() if s.strip()]
        elif split is not None and image_set is not None:
            raise FileNotFoundError(f"split file {image_set} not found")
        else:
            self.frame_ids = sorted(p.stem for p in (self.dir / "velodyne").glob("*.bin"))
        if not self.frame_ids:
            raise ValueError(f"no scans found under {self.dir / 'velodyne'}")

    def __len__(self) -> int:
        return len(self.frame_ids)

    def __getitem__(self, i: int) -> Scan:
        frame = self.frame_ids[i]
        points = read_velodyne(self.dir / "velodyne" / f"{frame}.bin")
        calib_path = self.dir / "calib" / f"{frame}.txt"
        calib = read_calibration(calib_path) if calib_path.is_file() else Calibration()
        label_path = self.dir / "label_2" / f"{frame}.txt"
        if label_path.is_file():
            boxes, labels, occlusion, _ = parse_label_lines(label_path.read_text(), self.class_names, calib, str(label_path))
        else:
            boxes, labels, occlusion = np.zeros((0, 7), np.float32), np.zeros(0, np.int64), np.zeros(0, np.int64)
        return Scan(points, boxes, labels, occlusion, frame).validate()

    def scans(self) -> list[Scan]:
        return [self[i] for i in range(len(self))]


def write_kitti_dataset(root: str | Path, scans: list[Scan], class_names: tuple[str, ...], split: str | None = None,
                        subset: str = "training", calib: Calibration | None = None) -> None:
    """Writes ``scans`` in KITTI layout (each file atomically) and, with ``split``, ``ImageSets/<split>.txt``."""
    calib = calib or Calibration()
    base = Path(root) / subset
    for sub in ("velodyne", "label_2", "calib"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    for scan in scans:
        scan.validate()
        if not scan.frame_id:
            raise ValueError("every scan needs a frame_id to be written")
        write_velodyne(base / "velodyne" / f"{scan.frame_id}.bin", scan.points)
        write_calibration(base / "calib" / f"{scan.frame_id}.txt", calib)
        _atomic_write_text(base / "label_2" / f"{scan.frame_id}.txt",
                           format_label_lines(scan.boxes, scan.labels, scan.occlusion, class_names, calib))
    if split:
        (Path(root) / "ImageSets").mkdir(parents=True, exist_ok=True)
        _atomic_write_text(Path(root) / "ImageSets" / f"{split}.txt", "".join(s.frame_id + "\n" for s in scans))


__all__ = [
    "Calibration", "read_calibration", "write_calibration", "boxes_to_camera", "boxes_from_camera",
    "format_label_lines", "parse_label_lines", "read_velodyne", "write_velodyne", "KittiDataset", "write_kitti_dataset",
]
