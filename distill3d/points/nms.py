"""Greedy non-maximum suppression with rotated boxes.

Boxes are visited in decreasing score; a box is kept unless its rotated IoU (BEV by default, as
for KITTI-style detectors whose boxes sit on the ground) with an already kept box exceeds
``iou_threshold``. The IoU matrix is computed once for all pairs (:mod:`.boxes`), the greedy pass
is a loop over at most ``max_candidates`` rows.
"""
from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from torch import Tensor

from distill3d.points.boxes import bev_iou, check_boxes, iou_3d
from distillcore.checks import check_tensor


def rotated_nms(
    boxes: Tensor,  # [N, 7]
    scores: Tensor,  # [N]
    iou_threshold: float,
    *,
    max_candidates: int = 512,
    max_keep: int | None = None,
    mode: Literal["bev", "3d"] = "bev",
) -> Tensor:  # [K] long, indices into boxes, by decreasing score
    """Indices of the boxes kept by greedy rotated NMS (see the module docstring)."""
    check_boxes(boxes)
    check_tensor(scores, "scores", shape=(boxes.shape[0],), floating=True, nonempty=False)
    if not 0.0 <= iou_threshold <= 1.0:
        raise ValueError(f"iou_threshold must be in [0, 1], got {iou_threshold}")
    if mode not in ("bev", "3d"):
        raise ValueError(f"mode must be 'bev' or '3d', got {mode!r}")
    if boxes.shape[0] == 0:
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    order = scores.argsort(descending=True)[:max_candidates]
    candidates = boxes[order]
    # The greedy pass runs on a NumPy copy of the overlap matrix: as torch ops, each visited row cost
    # a tensor read and an in-place OR (two dispatches and a sync), a per-scan cost that does not
    # shrink with the detector's width.
    overlaps = ((bev_iou if mode == "bev" else iou_3d)(candidates, candidates) > iou_threshold).cpu().numpy()
    suppressed = np.zeros(len(order), dtype=bool)
    keep: list[int] = []
    for i in range(len(order)):
        if suppressed[i]:
            continue
        keep.append(i)
        if max_keep is not None and len(keep) >= max_keep:
            break
        suppressed |= overlaps[i]
    return order[torch.tensor(keep, dtype=torch.long, device=boxes.device)]


def batched_rotated_nms(
    boxes: Tensor,  # [N, 7]
    scores: Tensor,  # [N]
    labels: Tensor,  # [N] long
    iou_threshold: float,
    **kwargs,
) -> Tensor:  # [K] long
    """Class-wise :func:`rotated_nms`: boxes of different labels never suppress each other.

    Boxes are shifted apart per label (the standard offset trick) so one NMS pass serves all
    classes.
    """
    check_tensor(labels, "labels", shape=(boxes.shape[0],), nonempty=False)
    if boxes.shape[0] == 0:
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    extent = (boxes[:, :3].abs().max() + boxes[:, 3:6].max()) * 2 + 1
    shifted = boxes.clone()
    shifted[:, 0] = shifted[:, 0] + labels.to(boxes.dtype) * extent
    return rotated_nms(shifted, scores, iou_threshold, **kwargs)


__all__ = ["rotated_nms", "batched_rotated_nms"]
