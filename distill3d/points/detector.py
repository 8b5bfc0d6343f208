"""What the training loop and the distillation losses need from a detector, and shared post-processing.

Both detector families (:mod:`.pillars`, :mod:`.point_detector`) return a :class:`DetectorOutput`
exposing the three things the distillation methods compare:

- ``features`` ``[B, M, C]``: the local features to distill (BEV cells of the pillar detector, points
  of the point detector) — PointDistiller and FitNet;
- ``importance`` ``[B, M]``: the detector's confidence that an object is there (max class
  probability), which PointDistiller uses to pick and reweight local structures;
- ``response_logits`` ``[R, K]``: categorical logits of the head for response KD.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from distill3d.points.nms import batched_rotated_nms
from distill3d.points.sampling import native_cpu_kernels
from distillcore import dist
from distillcore.checks import check_tensor


@dataclass
class DetectorOutput:
    features: Tensor  # [B, M, C]
    importance: Tensor  # [B, M]
    response_logits: Tensor  # [R, K]
    head: dict[str, Tensor] = field(default_factory=dict)


@dataclass
class Detections:
    boxes: Tensor  # [D, 7]
    scores: Tensor  # [D]
    labels: Tensor  # [D] long


@dataclass
class PostProcessConfig:
    score_threshold: float = 0.1
    pre_nms_top_k: int = 100
    nms_iou: float = 0.1  # BEV IoU above which the weaker of two same-class boxes is dropped
    max_detections: int = 50


def select_detections(boxes: Tensor, scores: Tensor, labels: Tensor, cfg: PostProcessConfig) -> Detections:
    """Score threshold, top-k, class-wise rotated NMS, cap: the last step of both detectors."""
    keep = scores >= cfg.score_threshold
    boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
    top = scores.argsort(descending=True)[: cfg.pre_nms_top_k]
    boxes, scores, labels = boxes[top], scores[top], labels[top]
    kept = batched_rotated_nms(boxes, scores, labels, cfg.nms_iou, max_keep=cfg.max_detections)
    return Detections(boxes[kept], scores[kept], labels[kept])


def check_point_batch(points: list[Tensor]) -> None:
    """Every scan of a batch is a non-empty, finite ``[P, 4]`` tensor."""
    if not isinstance(points, (list, tuple)) or not points:
        raise ValueError("points must be a non-empty list of [P, 4] tensors (one per scan)")
    for i, p in enumerate(points):
        check_tensor(p, f"points[{i}]", ndim=2, floating=True)
        if p.shape[1] != 4:
            raise ValueError(f"points[{i}] must have shape [P, 4] (x, y, z, intensity), got {list(p.shape)}")


def range_indices(points: Tensor, point_range: tuple[float, ...], scan_index: int) -> Tensor:
    """Indices, ascending, of the points of one scan inside ``point_range`` (x_min, y_min, z_min, x_max,
    y_max, z_max): :math:`lo_a \\le p_a < hi_a` on the three axes.

    On CPU tensors this is one pass of the native kernel (``csrc/cpu/points_prep_cpu.h``): the torch
    comparisons on the strided coordinate columns and the row reduction took about 1 ms of every scan
    on one thread, a cost that does not shrink with the detector's width.

    Shapes:
        points ``[P, C]`` (``C >= 3``) -> ``[K]`` int64, ``K >= 1`` (no point inside: ``ValueError``).
    """
    lo = points.new_tensor(point_range[:3])
    hi = points.new_tensor(point_range[3:])
    kernels = native_cpu_kernels(points)
    if kernels is not None:
        inside = kernels.crop_points(points, lo, hi)
    else:
        inside = ((points[:, :3] >= lo) & (points[:, :3] < hi)).all(dim=1).nonzero().squeeze(1)
    if inside.numel() == 0:
        raise ValueError(f"points[{scan_index}] has no point inside the detection range {tuple(point_range)}")
    return inside


def crop_to_range(points: Tensor, point_range: tuple[float, ...], scan_index: int) -> Tensor:
    """Points of one scan inside ``point_range``, in their order in the scan (:func:`range_indices`)."""
    return points.index_select(0, range_indices(points, point_range, scan_index))


def rank_normalizer(count: Tensor) -> Tensor:
    """The divisor of a loss summed over this rank's share of the batch:
    :math:`\\max(\\sum_r c_r, 1) / R` for a count :math:`c_r` on each of :math:`R` ranks (``count`` itself,
    at least 1, in one process). DDP averages the ranks' gradients, so the ranks' losses
    :math:`R\\, S_r / \\sum_r c_r` together optimise :math:`\\sum_r S_r / \\sum_r c_r`, the single-process
    loss of the global batch, where a per-rank ``S_r / c_r`` would weight scans by their rank's count."""
    ctx = dist.context()
    total = dist.all_reduce_sum(count.detach().to(torch.float32).reshape(()))
    return total.clamp(min=1.0) / ctx.world_size


def scaled(channels: int, width: float) -> int:
    """A layer width under a width multiplier (at least 4 channels)."""
    return max(4, int(round(channels * width)))


class Detector(nn.Module):
    """Interface of both detector families (see the module docstring)."""

    num_classes: int
    # set on inference copies by .fusion.fuse_for_inference: lay feature maps out channels-last
    inference_channels_last: bool = False

    def forward(self, inputs, *, distill_only: bool = False) -> DetectorOutput:
        """The model on preprocessed ``inputs``. ``distill_only``: a frozen teacher's pass, which may skip
        the heads that distillation does not read (``features``, ``importance`` and ``response_logits``
        are always computed)."""
        raise NotImplementedError

    def preprocess(self, points: list[Tensor], generator: torch.Generator | None = None):
        """Turns raw scans into the model input; done once per batch so a teacher and a student
        see exactly the same input."""
        raise NotImplementedError

    def loss(self, out: DetectorOutput, boxes: list[Tensor], labels: list[Tensor]) -> dict[str, Tensor]:
        raise NotImplementedError

    def decode(self, out: DetectorOutput) -> list[Detections]:
        raise NotImplementedError

    @property
    def feature_channels(self) -> int:
        raise NotImplementedError


__all__ = ["DetectorOutput", "Detections", "PostProcessConfig", "select_detections", "check_point_batch",
           "range_indices", "crop_to_range", "rank_normalizer", "scaled", "Detector"]
