"""KITTI-style average precision with 40 recall points, in bird's-eye view and 3D.

For one class, one difficulty and one IoU kind, detections of all frames are ranked by score. In
each frame a detection matches the unmatched ground-truth box of its class with the highest IoU if
that IoU reaches the class threshold: a *true positive* if the box is in the difficulty, *ignored*
(neither TP nor FP) if the box is of that class but outside the difficulty (farther, more occluded,
or of unknown occlusion). Unmatched detections are false positives, except those whose best IoU
with an ignored box reaches the threshold. With precision :math:`p(r)` along the ranking,

.. math::
    AP_{R40} = \\frac{1}{40} \\sum_{i=1}^{40} \\max_{r \\ge i/40} p(r)

(KITTI's official metric since 2019, Simonelli et al.; recall 0 is excluded).

Difficulties of simulated scans are cumulative bins by range and occlusion (:class:`DifficultyConfig`):
easy is near and unoccluded, moderate includes farther and partly occluded objects, hard everything up
to ``hard_max_range`` with a known occlusion level. Real KITTI labels use the official definition
(:class:`KittiDifficultyConfig`, the devkit's ``evaluate_object.cpp``): 2D box height, occlusion and
truncation; boxes of the neighbouring class (Van for Car, Person_sitting for Pedestrian) are ignored;
detections lower than the height limit are dropped; and a detection that matches nothing but covers
a DontCare region is not a false positive. The matching stays the score-ordered one above (the devkit
assigns each ground-truth box the free detection of largest overlap and samples 41 score thresholds),
so where several detections compete for one box the two can differ slightly.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from distillcore.checks import check_range

from distill3d.points.boxes import bev_iou, iou_3d

DIFFICULTIES = ("easy", "moderate", "hard")
IOU_KINDS = ("bev", "3d")


@dataclass
class DifficultyConfig:
    """Upper bounds (inclusive) of BEV range (metres) and KITTI occlusion level per difficulty."""

    max_range: tuple[float, float, float] = (12.0, 20.0, 40.0)
    max_occlusion: tuple[int, int, int] = (0, 1, 2)
    num_recall_points: int = 40

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        if len(self.max_range) != 3 or len(self.max_occlusion) != 3:
            raise ValueError("max_range and max_occlusion need one value per difficulty (easy, moderate, hard)")
        for i, value in enumerate(self.max_range):
            check_range(value, f"max_range[{i}]", 0, low_open=True)
        check_range(self.num_recall_points, "num_recall_points", 1, integer=True)


def check_iou_thresholds(iou_thresholds, class_names) -> tuple[float, ...]:
    """One IoU threshold per class, each in (0, 1] (an IoU of 0 matches every box, above 1 none)."""
    if len(iou_thresholds) != len(class_names):
        raise ValueError(f"need one IoU threshold per class: {len(class_names)} classes, {len(iou_thresholds)} thresholds")
    for name, value in zip(class_names, iou_thresholds):
        check_range(value, f"IoU threshold of {name}", 0, 1, low_open=True)
    return tuple(float(v) for v in iou_thresholds)


@dataclass
class FrameResult:
    """Detections and ground truth of one frame (tensors or numpy arrays)."""

    pred_boxes: np.ndarray  # [D, 7]
    pred_scores: np.ndarray  # [D]
    pred_labels: np.ndarray  # [D]
    gt_boxes: np.ndarray  # [G, 7]
    gt_labels: np.ndarray  # [G]
    gt_occlusion: np.ndarray  # [G]
    # real KITTI labels (needed by KittiDifficultyConfig; from kitti_frame): image boxes x1 y1 x2 y2 in pixels
    gt_boxes_2d: np.ndarray | None = None  # [G, 4]
    gt_truncation: np.ndarray | None = None  # [G] in [0, 1]
    gt_neighbor_of: np.ndarray | None = None  # [G] class a box is ignored for (Van -> Car), -1: none
    pred_boxes_2d: np.ndarray | None = None  # [D, 4]
    dontcare_boxes_2d: np.ndarray | None = None  # [K, 4] DontCare regions


@dataclass
class KittiDifficultyConfig:
    """KITTI's official difficulties for real labels (the devkit's ``evaluate_object.cpp``).

    A ground-truth box is in difficulty ``level`` when its 2D box is taller than ``min_height[level]``
    pixels, its occlusion level is at most ``max_occlusion[level]`` and its truncation at most
    ``max_truncation[level]``; other boxes of the class are ignored (neither found nor missed).
    Detections whose 2D box is lower than ``min_height[level]`` are dropped.
    """

    min_height: tuple[float, float, float] = (40.0, 25.0, 25.0)
    max_occlusion: tuple[int, int, int] = (0, 1, 2)
    max_truncation: tuple[float, float, float] = (0.15, 0.30, 0.50)
    num_recall_points: int = 40

    def __post_init__(self):
        if not len(self.min_height) == len(self.max_occlusion) == len(self.max_truncation) == 3:
            raise ValueError("min_height, max_occlusion and max_truncation need one value per difficulty")
        check_range(self.num_recall_points, "num_recall_points", 1, integer=True)


def kitti_difficulty_mask(frame: FrameResult, level: int, cfg: KittiDifficultyConfig) -> np.ndarray:
    """Which ground-truth boxes of ``frame`` are in KITTI difficulty ``level`` (see the config)."""
    missing = [k for k in ("gt_boxes_2d", "gt_truncation") if getattr(frame, k) is None]
    if missing:
        raise ValueError(f"the official KITTI difficulty needs {missing} of every frame (read the labels with "
                         "kitti_frame), or use DifficultyConfig for simulated scans")
    boxes = np.asarray(frame.gt_boxes_2d, dtype=np.float64).reshape(-1, 4)
    height = boxes[:, 3] - boxes[:, 1]
    return ((height > cfg.min_height[level]) & (np.asarray(frame.gt_occlusion) <= cfg.max_occlusion[level])
            & (np.asarray(frame.gt_truncation) <= cfg.max_truncation[level]))


def dontcare_overlap(boxes_2d: np.ndarray, dontcare_2d: np.ndarray) -> np.ndarray:
    """[D] the largest share of each detection's 2D box covered by one DontCare box
    (intersection / detection area, the devkit's ``boxoverlap(det, dc, 0)``)."""
    det = np.asarray(boxes_2d, dtype=np.float64).reshape(-1, 4)
    dc = np.asarray(dontcare_2d, dtype=np.float64).reshape(-1, 4)
    if len(det) == 0 or len(dc) == 0:
        return np.zeros(len(det))
    width = np.minimum(det[:, None, 2], dc[None, :, 2]) - np.maximum(det[:, None, 0], dc[None, :, 0])
    height = np.minimum(det[:, None, 3], dc[None, :, 3]) - np.maximum(det[:, None, 1], dc[None, :, 1])
    area = np.maximum((det[:, 2] - det[:, 0]) * (det[:, 3] - det[:, 1]), 1e-12)
    return (np.clip(width, 0, None) * np.clip(height, 0, None) / area[:, None]).max(1)


def difficulty_mask(boxes: np.ndarray, occlusion: np.ndarray, level: int, cfg: DifficultyConfig) -> np.ndarray:
    """Which boxes belong to difficulty ``level`` (0 easy, 1 moderate, 2 hard; cumulative)."""
    distance = np.hypot(boxes[:, 0], boxes[:, 1])
    return (distance <= cfg.max_range[level]) & (occlusion <= cfg.max_occlusion[level])


def interpolated_ap(tp: np.ndarray, num_gt: int, num_recall_points: int) -> float:
    """AP from the TP flags (1 TP, 0 FP) of score-ranked detections, see the module docstring."""
    if num_gt == 0:
        return float("nan")
    if len(tp) == 0:
        return 0.0
    tp_cum = np.cumsum(tp)
    precision = tp_cum / np.arange(1, len(tp) + 1)
    recall = tp_cum / num_gt
    # Precision envelope: the best precision at this recall or any higher one.
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    levels = np.arange(1, num_recall_points + 1) / num_recall_points
    idx = np.searchsorted(recall, levels - 1e-9, side="left")
    reached = idx < len(recall)
    return float(np.where(reached, envelope[np.minimum(idx, len(recall) - 1)], 0.0).mean())


def _match_frame(iou: np.ndarray, order: np.ndarray, valid_gt: np.ndarray, ignored_gt: np.ndarray, threshold: float,
                 stuff: np.ndarray | None = None) -> np.ndarray:
    """Per detection (in ``order``): 1 TP, 0 FP, -1 ignored (matches an ignored box, or, when ``stuff``
    [D] gives its DontCare overlap, an unmatched detection covering a DontCare region beyond ``threshold``)."""
    outcome = np.zeros(len(order), dtype=np.int64)
    taken = np.zeros(iou.shape[1], dtype=bool)
    for rank, d in enumerate(order):
        candidates = np.where(valid_gt & ~taken, iou[d], -1.0)
        best = int(candidates.argmax()) if len(candidates) else -1
        if best >= 0 and candidates[best] >= threshold:
            taken[best] = True
            outcome[rank] = 1
        elif ignored_gt.any() and np.where(ignored_gt, iou[d], -1.0).max() >= threshold:
            outcome[rank] = -1
        elif stuff is not None and stuff[d] > threshold:
            outcome[rank] = -1
    return outcome


def average_precision(
    frames: list[FrameResult], label: int, iou_threshold: float, kind: str, level: int,
    cfg: DifficultyConfig | KittiDifficultyConfig
) -> float:
    """AP (R40, in [0, 1]) of class ``label``; NaN when the difficulty holds no ground truth.
    ``cfg``: :class:`DifficultyConfig` (simulated scans) or :class:`KittiDifficultyConfig` (real labels)."""
    if kind not in IOU_KINDS:
        raise ValueError(f"kind must be one of {IOU_KINDS}, got {kind!r}")
    iou_fn = bev_iou if kind == "bev" else iou_3d
    scores, outcomes, num_gt = [], [], 0
    for f in frames:
        det = np.asarray(f.pred_labels) == label
        gt = np.asarray(f.gt_labels) == label
        stuff = None
        if isinstance(cfg, KittiDifficultyConfig):
            valid = gt & kitti_difficulty_mask(f, level, cfg)
            neighbor = np.asarray(f.gt_neighbor_of) == label if f.gt_neighbor_of is not None else np.zeros_like(gt)
            ignored = (gt & ~valid) | neighbor
            if f.pred_boxes_2d is None:
                raise ValueError("the official KITTI difficulty needs pred_boxes_2d (2D boxes of the detections)")
            pred_2d = np.asarray(f.pred_boxes_2d, dtype=np.float64).reshape(-1, 4)
            det = det & (pred_2d[:, 3] - pred_2d[:, 1] >= cfg.min_height[level])  # too small to judge: dropped
            if f.dontcare_boxes_2d is not None:
                stuff = dontcare_overlap(pred_2d[det], f.dontcare_boxes_2d)
        else:
            valid = gt & difficulty_mask(np.asarray(f.gt_boxes).reshape(-1, 7), np.asarray(f.gt_occlusion), level, cfg)
            ignored = gt & ~valid
        num_gt += int(valid.sum())
        if not det.any():
            continue
        boxes_d = torch.as_tensor(np.asarray(f.pred_boxes)[det], dtype=torch.float32)
        boxes_g = torch.as_tensor(np.asarray(f.gt_boxes).reshape(-1, 7), dtype=torch.float32)
        iou = iou_fn(boxes_d, boxes_g).numpy()
        frame_scores = np.asarray(f.pred_scores)[det]
        order = np.argsort(-frame_scores, kind="stable")
        outcomes.append(_match_frame(iou, order, valid, ignored, iou_threshold, stuff))
        scores.append(frame_scores[order])
    if not scores:
        return interpolated_ap(np.zeros(0), num_gt, cfg.num_recall_points)
    all_scores, all_outcomes = np.concatenate(scores), np.concatenate(outcomes)
    ranked = all_outcomes[np.argsort(-all_scores, kind="stable")]
    return interpolated_ap(ranked[ranked >= 0].astype(np.float64), num_gt, cfg.num_recall_points)


def evaluate(
    frames: list[FrameResult], class_names: tuple[str, ...], iou_thresholds: tuple[float, ...],
    cfg: DifficultyConfig | KittiDifficultyConfig | None = None
) -> dict[str, float]:
    """AP in percent per ``"<class>/<bev|3d>/<difficulty>"``, plus ``"mAP/<kind>/<difficulty>"``
    (the mean over classes that have ground truth there)."""
    cfg = cfg or DifficultyConfig()
    iou_thresholds = check_iou_thresholds(iou_thresholds, class_names)
    results: dict[str, float] = {}
    for kind in IOU_KINDS:
        for level, difficulty in enumerate(DIFFICULTIES):
            per_class = []
            for label, name in enumerate(class_names):
                ap = 100.0 * average_precision(frames, label, iou_thresholds[label], kind, level, cfg)
                results[f"{name}/{kind}/{difficulty}"] = ap
                if not np.isnan(ap):
                    per_class.append(ap)
            results[f"mAP/{kind}/{difficulty}"] = float(np.mean(per_class)) if per_class else float("nan")
    return results


__all__ = ["DIFFICULTIES", "DifficultyConfig", "KittiDifficultyConfig", "FrameResult", "difficulty_mask",
           "kitti_difficulty_mask", "dontcare_overlap", "interpolated_ap", "average_precision", "evaluate"]
