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

Difficulties are cumulative bins by range and occlusion (:class:`DifficultyConfig`): easy is near and
unoccluded, moderate includes farther and partly occluded objects, hard everything up to
``hard_max_range`` with a known occlusion level.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from distill3d.points.boxes import bev_iou, iou_3d

DIFFICULTIES = ("easy", "moderate", "hard")
IOU_KINDS = ("bev", "3d")


@dataclass
class DifficultyConfig:
    """Upper bounds (inclusive) of BEV range (metres) and KITTI occlusion level per difficulty."""

    max_range: tuple[float, float, float] = (12.0, 20.0, 40.0)
    max_occlusion: tuple[int, int, int] = (0, 1, 2)
    num_recall_points: int = 40


@dataclass
class FrameResult:
    """Detections and ground truth of one frame (tensors or numpy arrays)."""

    pred_boxes: np.ndarray  # [D, 7]
    pred_scores: np.ndarray  # [D]
    pred_labels: np.ndarray  # [D]
    gt_boxes: np.ndarray  # [G, 7]
    gt_labels: np.ndarray  # [G]
    gt_occlusion: np.ndarray  # [G]


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


def _match_frame(iou: np.ndarray, order: np.ndarray, valid_gt: np.ndarray, ignored_gt: np.ndarray, threshold: float) -> np.ndarray:
    """Per detection (in ``order``): 1 TP, 0 FP, -1 ignored."""
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
    return outcome


def average_precision(
    frames: list[FrameResult], label: int, iou_threshold: float, kind: str, level: int, cfg: DifficultyConfig
) -> float:
    """AP (R40, in [0, 1]) of class ``label``; NaN when the difficulty holds no ground truth."""
    if kind not in IOU_KINDS:
        raise ValueError(f"kind must be one of {IOU_KINDS}, got {kind!r}")
    iou_fn = bev_iou if kind == "bev" else iou_3d
    scores, outcomes, num_gt = [], [], 0
    for f in frames:
        det = np.asarray(f.pred_labels) == label
        gt = np.asarray(f.gt_labels) == label
        valid = gt & difficulty_mask(np.asarray(f.gt_boxes).reshape(-1, 7), np.asarray(f.gt_occlusion), level, cfg)
        num_gt += int(valid.sum())
        if not det.any():
            continue
        boxes_d = torch.as_tensor(np.asarray(f.pred_boxes)[det], dtype=torch.float32)
        boxes_g = torch.as_tensor(np.asarray(f.gt_boxes).reshape(-1, 7), dtype=torch.float32)
        iou = iou_fn(boxes_d, boxes_g).numpy()
        frame_scores = np.asarray(f.pred_scores)[det]
        order = np.argsort(-frame_scores, kind="stable")
        outcomes.append(_match_frame(iou, order, valid, gt & ~valid, iou_threshold))
        scores.append(frame_scores[order])
    if not scores:
        return interpolated_ap(np.zeros(0), num_gt, cfg.num_recall_points)
    all_scores, all_outcomes = np.concatenate(scores), np.concatenate(outcomes)
    ranked = all_outcomes[np.argsort(-all_scores, kind="stable")]
    return interpolated_ap(ranked[ranked >= 0].astype(np.float64), num_gt, cfg.num_recall_points)


def evaluate(
    frames: list[FrameResult], class_names: tuple[str, ...], iou_thresholds: tuple[float, ...], cfg: DifficultyConfig | None = None
) -> dict[str, float]:
    """AP in percent per ``"<class>/<bev|3d>/<difficulty>"``, plus ``"mAP/<kind>/<difficulty>"``
    (the mean over classes that have ground truth there)."""
    cfg = cfg or DifficultyConfig()
    if len(iou_thresholds) != len(class_names):
        raise ValueError(f"need one IoU threshold per class: {len(class_names)} classes, {len(iou_thresholds)} thresholds")
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


__all__ = ["DIFFICULTIES", "DifficultyConfig", "FrameResult", "difficulty_mask", "interpolated_ap", "average_precision", "evaluate"]
