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

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from distillcore.serialization import write_bytes_atomic, write_text_atomic

from distill3d.points.boxes import corners_3d
from distill3d.points.scan import POINT_DIM, Scan

# Calibration of the simulated sensor rig: the camera sits at the LiDAR origin looking along +x
# with KITTI's P2 intrinsics (so the written files have KITTI's shapes and conventions).
VELO_TO_CAM_AXES = np.array([[0.0, -1.0, 0.0, 0.0], [0.0, 0.0, -1.0, 0.0], [1.0, 0.0, 0.0, 0.0]])
KITTI_P2 = np.array([[721.5377, 0.0, 609.5593, 44.85728], [0.0, 721.5377, 172.854, 0.2163791], [0.0, 0.0, 1.0, 0.002745884]])
KITTI_IMAGE_SIZE = (1242, 375)  # width, height: clips the 2D boxes written to label_2
LAYOUT_FOLDERS = ("training", "testing", "ImageSets")  # what a data set root holds of its own


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
    write_text_atomic(path, "".join(f"{k}: {' '.join(f'{v:.12e}' for v in m.ravel())}\n" for k, m in rows))


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
    ``class_names`` (``DontCare`` and other types are skipped); scores are 1 without a score column.
    The training-side view of :func:`parse_kitti_objects`."""
    objects = parse_kitti_objects(text, class_names, calib, source)
    keep = objects["labels"] >= 0  # drop the neighbouring types only the official evaluation reads
    return objects["boxes"][keep], objects["labels"][keep], objects["occlusion"][keep], objects["scores"][keep]


# a box of the key type is ignored (neither found nor missed) when evaluating the value class (devkit)
KITTI_NEIGHBORS = {"Van": "Car", "Person_sitting": "Pedestrian"}


def parse_kitti_objects(text: str, class_names: tuple[str, ...], calib: Calibration, source: str = "label") -> dict:
    """Everything the official evaluation reads from ``label_2`` text: for the lines of ``class_names`` and
    their neighbouring types (:data:`KITTI_NEIGHBORS`, label -1 with ``neighbor_of`` set) the LiDAR
    ``boxes`` [M, 7], ``labels``, ``occlusion``, ``truncation``, image ``boxes_2d`` [M, 4], ``scores`` and
    ``neighbor_of`` [M]; and the ``dontcare`` image boxes [K, 4]. Other types are skipped."""
    rows, dontcare = [], []
    for n, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) not in (15, 16):
            raise ValueError(f"{source}:{n}: a KITTI label line has 15 or 16 fields, got {len(parts)}")
        values = [float(v) for v in parts[1:]]
        if parts[0] == "DontCare":
            dontcare.append(values[3:7])
            continue
        neighbor = KITTI_NEIGHBORS.get(parts[0])
        if parts[0] not in class_names and neighbor not in class_names:
            continue
        label = class_names.index(parts[0]) if parts[0] in class_names else -1
        rows.append((label, class_names.index(neighbor) if label < 0 else -1, values))
    out = {"dontcare": np.array(dontcare, np.float64).reshape(-1, 4)}
    if not rows:
        out.update(boxes=np.zeros((0, 7), np.float32), labels=np.zeros(0, np.int64), occlusion=np.zeros(0, np.int64),
                   truncation=np.zeros(0), boxes_2d=np.zeros((0, 4)), scores=np.zeros(0, np.float32),
                   neighbor_of=np.zeros(0, np.int64))
        return out
    values = np.array([v for _, _, v in rows])
    out.update(
        boxes=boxes_from_camera(values[:, 10:13], values[:, 7:10], values[:, 13], calib),
        labels=np.array([r[0] for r in rows], np.int64), neighbor_of=np.array([r[1] for r in rows], np.int64),
        truncation=values[:, 0], occlusion=values[:, 1].astype(np.int64), boxes_2d=values[:, 3:7],
        scores=(values[:, 14] if values.shape[1] == 15 else np.ones(len(rows))).astype(np.float32),
    )
    return out


def kitti_frame(gt_text: str, pred_text: str, class_names: tuple[str, ...], calib: Calibration | None = None):
    """A :class:`~distill3d.points.metrics.FrameResult` for the official KITTI evaluation
    (:class:`~distill3d.points.metrics.KittiDifficultyConfig`) from a ``label_2`` ground-truth file's
    text and a detection file's text in the same format with a score column."""
    from distill3d.points.metrics import FrameResult

    calib = calib or Calibration()
    gt = parse_kitti_objects(gt_text, class_names, calib, "ground truth")
    pred = parse_kitti_objects(pred_text, class_names, calib, "detections")
    keep = pred["labels"] >= 0  # neighbour types among detections are not detections of a class
    return FrameResult(pred["boxes"][keep], pred["scores"][keep], pred["labels"][keep], gt["boxes"], gt["labels"],
                       gt["occlusion"], gt_boxes_2d=gt["boxes_2d"], gt_truncation=gt["truncation"],
                       gt_neighbor_of=gt["neighbor_of"], pred_boxes_2d=pred["boxes_2d"][keep],
                       dontcare_boxes_2d=gt["dontcare"])


def with_kitti_annotations(dataset: "KittiDataset", frames: list) -> list:
    """``frames`` (detections on ``dataset``'s scans, in its order, e.g. ``points.train.predict``) with what
    the official difficulty needs, read from each frame's ``label_2`` and ``calib`` files: ground-truth 2D
    boxes, truncation, neighbouring-class boxes and DontCare regions; the detections' 2D boxes are their
    3D boxes projected into the image (clipped to it), as a KITTI result file would hold them."""
    from distill3d.points.metrics import FrameResult

    if len(frames) != len(dataset):
        raise ValueError(f"{len(frames)} frames of detections for {len(dataset)} scans")
    out = []
    for frame_id, frame in zip(dataset.frame_ids, frames):
        label_path, calib_path = dataset.dir / "label_2" / f"{frame_id}.txt", dataset.dir / "calib" / f"{frame_id}.txt"
        if not label_path.is_file():
            raise FileNotFoundError(f"the official KITTI evaluation needs {label_path}")
        calib = read_calibration(calib_path) if calib_path.is_file() else Calibration()
        gt = parse_kitti_objects(label_path.read_text(), dataset.class_names, calib, str(label_path))
        boxes = np.asarray(frame.pred_boxes, dtype=np.float64).reshape(-1, 7)
        out.append(FrameResult(frame.pred_boxes, frame.pred_scores, frame.pred_labels, gt["boxes"], gt["labels"],
                               gt["occlusion"], gt_boxes_2d=gt["boxes_2d"], gt_truncation=gt["truncation"],
                               gt_neighbor_of=gt["neighbor_of"], dontcare_boxes_2d=gt["dontcare"],
                               pred_boxes_2d=_image_boxes(boxes, calib) if len(boxes) else np.zeros((0, 4))))
    return out


def evaluate_kitti_folders(label_dir: str | Path, result_dir: str | Path, class_names: tuple[str, ...],
                           iou_thresholds: tuple[float, ...], calib_dir: str | Path | None = None) -> dict[str, float]:
    """Official-difficulty AP (percent, :func:`distill3d.points.metrics.evaluate` keys) of the detection
    files in ``result_dir`` (``<frame>.txt``, KITTI label format with a score column; a missing file is a
    frame without detections) against the ``label_2`` files of ``label_dir``. ``calib_dir`` holds the
    frames' calibration (default: the simulator's; it only moves boxes between frames consistently)."""
    from distill3d.points.metrics import KittiDifficultyConfig, evaluate

    label_dir, result_dir = Path(label_dir), Path(result_dir)
    frames_ids = sorted(p.stem for p in label_dir.glob("*.txt"))
    if not frames_ids:
        raise FileNotFoundError(f"no label files (*.txt) in {label_dir}")
    frames = []
    for frame_id in frames_ids:
        calib = read_calibration(Path(calib_dir) / f"{frame_id}.txt") if calib_dir is not None else Calibration()
        result = result_dir / f"{frame_id}.txt"
        frames.append(kitti_frame((label_dir / f"{frame_id}.txt").read_text(),
                                  result.read_text() if result.is_file() else "", class_names, calib))
    return evaluate(frames, tuple(class_names), tuple(iou_thresholds), KittiDifficultyConfig())


def read_velodyne(path: Path) -> np.ndarray:  # [P, 4] float32
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"velodyne scan {path} not found")
    raw = np.fromfile(path, dtype=np.float32)
    if raw.size % POINT_DIM:
        raise ValueError(f"{path}: size {raw.size * 4} bytes is not a multiple of 16 (x, y, z, intensity float32)")
    return raw.reshape(-1, POINT_DIM)


def write_velodyne(path: Path, points: np.ndarray) -> None:
    write_bytes_atomic(path, np.ascontiguousarray(points, dtype=np.float32).tobytes())


class KittiDataset:
    """Scans and labels of a KITTI-layout folder (real KITTI or written by :func:`write_kitti_dataset`).

    Args:
        root: the folder holding ``training/`` (or ``testing/``) and optionally ``ImageSets/``.
        class_names: label types to keep, in class-index order (e.g. ``("Car", "Pedestrian", "Cyclist")``).
        split: an ``ImageSets/<split>.txt`` list of frame ids; without that file all scans of ``subset``.
        subset: ``"training"`` (has labels) or ``"testing"``.
        allow_missing_calib: read a frame without ``calib/<frame>.txt`` with the simulator's calibration and
            a ``training`` frame without ``label_2/<frame>.txt`` as one without objects. Off by default: a
            missing file is an error naming it, since silently defaulting either skews every box.
    """

    def __init__(self, root: str | Path, class_names: tuple[str, ...], split: str | None = None, subset: str = "training",
                 allow_missing_calib: bool = False):
        self.root, self.split = Path(root), split
        self.allow_missing_calib = bool(allow_missing_calib)
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
        label_path = self.dir / "label_2" / f"{frame}.txt"
        self._require(frame, [calib_path] + ([label_path] if self.dir.name == "training" else []))
        calib = read_calibration(calib_path) if calib_path.is_file() else Calibration()
        if label_path.is_file():
            boxes, labels, occlusion, _ = parse_label_lines(label_path.read_text(), self.class_names, calib, str(label_path))
        else:
            boxes, labels, occlusion = np.zeros((0, 7), np.float32), np.zeros(0, np.int64), np.zeros(0, np.int64)
        return Scan(points, boxes, labels, occlusion, frame).validate()

    def _require(self, frame: str, needed: list[Path]) -> None:
        """A missing file of ``needed`` is an error naming it, unless ``allow_missing_calib``."""
        missing = [str(path) for path in needed if not path.is_file()]
        if missing and not self.allow_missing_calib:
            raise FileNotFoundError(f"frame {frame}: {' and '.join(missing)} not found (pass --allow-missing-calib / "
                                    "allow_missing_calib=True to use the default calibration and no labels)")

    def scans(self) -> list[Scan]:
        return [self[i] for i in range(len(self))]

    def label_counts(self) -> Counter[str]:
        """How many objects of each type the ``label_2`` files of this split's frames hold, whatever
        ``class_names`` is (``DontCare`` regions left out), so a caller can tell a class the labels never
        mention from one that is merely rare. A missing label file is an error naming it, or with
        ``allow_missing_calib`` a frame without objects; ``testing`` frames have no labels."""
        counts: Counter[str] = Counter()
        for frame in self.frame_ids if self.dir.name == "training" else ():
            path = self.dir / "label_2" / f"{frame}.txt"
            self._require(frame, [path])
            if path.is_file():
                counts.update(parts[0] for parts in map(str.split, path.read_text().splitlines())
                              if parts and parts[0] != "DontCare")
        return counts


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
        write_text_atomic(base / "label_2" / f"{scan.frame_id}.txt",
                          format_label_lines(scan.boxes, scan.labels, scan.occlusion, class_names, calib))
    if split:
        (Path(root) / "ImageSets").mkdir(parents=True, exist_ok=True)
        write_text_atomic(Path(root) / "ImageSets" / f"{split}.txt", "".join(s.frame_id + "\n" for s in scans))


__all__ = [
    "Calibration", "read_calibration", "write_calibration", "boxes_to_camera", "boxes_from_camera",
    "format_label_lines", "parse_label_lines", "parse_kitti_objects", "kitti_frame", "with_kitti_annotations", "evaluate_kitti_folders", "KITTI_NEIGHBORS", "read_velodyne", "write_velodyne", "KittiDataset", "write_kitti_dataset",
    "LAYOUT_FOLDERS",
]
