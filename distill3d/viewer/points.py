"""`distill3d points view`: a LiDAR scan with ground-truth and predicted 3D boxes in the browser.

The scan and its labels come from a KITTI-layout folder (``distill3d.points.kitti``); predictions are
the detector checkpoint's (``distill3d.points.train.predict``). With a teacher and a student both given,
two copies of the scene stand side by side, the teacher's shifted along -y by the scene's width plus a
margin, so the same object is seen with each model's boxes:

    offset = (0, -(max_y - min_y) - margin, 0)

Boxes are drawn as their 12 edges (``corners_3d`` of ``distill3d.points.boxes``); ground truth is green,
predictions of the student orange and of the teacher blue, kept above a score threshold.
"""
from __future__ import annotations

import pathlib
from dataclasses import dataclass

import numpy as np
import torch

from distill3d.points.boxes import corners_3d
from distill3d.points.scan import Scan

# corner index pairs of a box's 12 edges (corners_3d: 4 bottom corners, then the same 4 on top)
BOX_EDGES = np.array([(0, 1), (1, 2), (2, 3), (3, 0), (4, 5), (5, 6), (6, 7), (7, 4), (0, 4), (1, 5), (2, 6), (3, 7)])
GT_COLOR, STUDENT_COLOR, TEACHER_COLOR = (40, 200, 60), (255, 140, 0), (30, 120, 255)
SIDE_BY_SIDE_MARGIN = 5.0  # metres between the two copies


def box_segments(boxes: np.ndarray) -> np.ndarray:
    """Line segments ``[12 M, 2, 3]`` of the edges of ``boxes [M, 7]``."""
    if len(boxes) == 0:
        return np.zeros((0, 2, 3), np.float32)
    corners = corners_3d(torch.as_tensor(np.asarray(boxes, np.float32))).numpy()  # [M, 8, 3]
    return corners[:, BOX_EDGES].reshape(-1, 2, 3)


def height_colors(points: np.ndarray) -> np.ndarray:
    """uint8 ``[P, 3]`` colours of ``points [P, >=3]`` by height (matplotlib ``viridis`` over the 1-99% range)."""
    from matplotlib import colormaps

    z = points[:, 2]
    low, high = np.quantile(z, [0.01, 0.99]) if len(z) else (0.0, 1.0)
    t = np.clip((z - low) / max(high - low, 1e-6), 0, 1)
    return (colormaps["viridis"](t)[:, :3] * 255).astype(np.uint8)


@dataclass
class PointsPanel:
    """One copy of the scene: its points, the ground-truth and predicted box edges, and where it sits."""
    name: str
    points: np.ndarray  # [P, 3]
    colors: np.ndarray  # [P, 3] uint8
    gt_segments: np.ndarray  # [12 G, 2, 3]
    pred_segments: np.ndarray  # [12 D, 2, 3]
    pred_color: tuple[int, int, int]
    offset: np.ndarray  # [3]


def load_scan(scan_or_dir: str | pathlib.Path, class_names: tuple[str, ...], frame: int = 0, split: str | None = None,
              allow_missing_calib: bool = False) -> Scan:
    """A scan from a KITTI-layout folder (frame ``frame`` of ``split``) or one ``.bin`` file inside such a folder
    (``<root>/training/velodyne/<id>.bin``)."""
    from distill3d.points.kitti import KittiDataset

    path = pathlib.Path(scan_or_dir)
    if not path.exists():
        raise FileNotFoundError(f"no scan or data folder at {path}")
    if path.is_file():
        if path.suffix != ".bin" or path.parent.name != "velodyne":
            raise ValueError(f"{path}: give a KITTI folder or a <root>/training/velodyne/<id>.bin scan")
        dataset = KittiDataset(path.parents[2], class_names, subset=path.parents[1].name,
                               allow_missing_calib=allow_missing_calib)
        if path.stem not in dataset.frame_ids:
            raise ValueError(f"{path.stem} is not a frame of {path.parents[2]}")
        return dataset[dataset.frame_ids.index(path.stem)]
    dataset = KittiDataset(path, class_names, split=split, allow_missing_calib=allow_missing_calib)
    if not 0 <= frame < len(dataset):
        raise ValueError(f"--frame {frame} is out of range: the data set has {len(dataset)} scans")
    return dataset[frame]


def predicted_boxes(model, scan: Scan, score_threshold: float) -> np.ndarray:
    """Boxes ``[D, 7]`` the detector predicts on ``scan`` with a score of at least ``score_threshold``."""
    from distill3d.points.train import predict

    with torch.no_grad():
        result = predict(model, [scan], batch_size=1)[0]
    return np.asarray(result.pred_boxes)[np.asarray(result.pred_scores) >= score_threshold]


def points_panels(scan: Scan, predictions: dict[str, np.ndarray]) -> list[PointsPanel]:
    """One :class:`PointsPanel` per model (``name -> predicted boxes [D, 7]``, at most a student and a teacher),
    side by side (module doc)."""
    if not predictions or len(predictions) > 2:
        raise ValueError(f"give one or two models' predictions, got {len(predictions)}")
    xyz = np.asarray(scan.points[:, :3], np.float32)
    width = float(xyz[:, 1].max() - xyz[:, 1].min()) if len(xyz) else 0.0
    colors = height_colors(xyz)
    panels = []
    for i, (name, boxes) in enumerate(predictions.items()):
        offset = np.array([0.0, -i * (width + SIDE_BY_SIDE_MARGIN), 0.0], np.float32)
        panels.append(PointsPanel(name, xyz + offset, colors, box_segments(scan.boxes) + offset,
                                  box_segments(boxes) + offset, TEACHER_COLOR if name == "teacher" else STUDENT_COLOR,
                                  offset))
    return panels


def show_panels(server, panels: list[PointsPanel], point_size: float = 0.05) -> None:
    """Adds the panels to a viser server's scene (points, green ground truth, coloured predictions)."""
    for panel in panels:
        root = f"/{panel.name}"
        server.scene.add_point_cloud(f"{root}/points", panel.points, panel.colors, point_size=point_size)
        if len(panel.gt_segments):
            server.scene.add_line_segments(f"{root}/ground_truth", panel.gt_segments, GT_COLOR, thickness=0.05)
        if len(panel.pred_segments):
            server.scene.add_line_segments(f"{root}/predicted", panel.pred_segments, panel.pred_color, thickness=0.05)
        top = float(panel.points[:, 2].max()) if len(panel.points) else 0.0
        server.scene.add_label(f"{root}/label", panel.name, position=tuple(panel.offset + np.array([0.0, 0.0, top + 2.0])))


__all__ = ["PointsPanel", "box_segments", "height_colors", "load_scan", "predicted_boxes", "points_panels", "show_panels"]
