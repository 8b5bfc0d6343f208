"""A raw-point detector: PointNet++ set abstraction and feature propagation with a point-wise head
(the first stage of PointRCNN, Shi et al., 2019).

- **Input**: each scan is cropped to the detection range and resampled to ``num_points`` points
  (once per batch in :meth:`PointDetector.preprocess`, so teacher and student see the same points).
- **Set abstraction** (Qi et al., 2017): farthest point sampling picks centres, a ball query groups
  ``k`` neighbours of each, a shared MLP maps ``[(p_j - c) / r, f_j]`` and a max over the group gives
  the centre's feature: :math:`f_c = \\max_{j \\in \\mathcal N(c)} \\mathrm{MLP}([(p_j - c)/r, f_j])`.
- **Feature propagation**: features flow back to the denser level by inverse-distance weighting of
  the 3 nearest coarse points, :math:`f(p) = \\sum_i w_i f_i / \\sum_i w_i`, :math:`w_i = 1/\\lVert p - p_i\\rVert^2`,
  concatenated with the skip features and passed through an MLP; the last level is the input points.
- **Point-wise head** (stage 1): per point, softmax logits over background + classes (focal loss; a
  point is foreground if it lies inside a ground-truth box) and a vote, the offset from the point to
  its object's centre (Hough voting, VoteNet, Qi et al., 2019): :math:`v = p + \\Delta p`.
- **Proposal head** (stage 2): the ``proposals`` points most confident of being foreground cast their
  votes; the input points around each vote are grouped as in set abstraction, now centred on the vote,
  :math:`g_v = \\max_{j \\in \\mathcal N(v)} \\mathrm{MLP}([(p_j - v)/r, x_j])` with :math:`x_j` the
  point's own input features (intensity, height), and an MLP on :math:`g_v` gives class logits and
  the box code of :mod:`.box_coder` relative to :math:`v`. A vote inside a ground-truth box is a
  positive for that box (inside it grown by ``ignore_margin``: ignored), as for the points of
  stage 1. Class-wise rotated NMS merges the proposals.

Why two stages (measured on the simulated scans: 800 training scans, 600 steps, median heading error
of the boxes predicted for duck points or votes of 100 validation scans): a point-wise box head
regresses the box from context that sits on one side of the object and did not learn the heading
(0.66 rad; chance is 0.79); grouping the 32 raw points nearest to the vote learned it (0.33 rad), the
128 nearest better (0.14 rad). Grouping the backbone's per-point features instead of the raw ones was
worse (0.55 rad; both together 0.58), which is why the proposal stage reads raw points, as PointRCNN's
refinement stage reads canonical raw coordinates.

The per-point features are what distillation compares. ``width`` multiplies every channel count.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from distill3d.points.box_coder import CODE_SIZE, decode_boxes, encode_boxes
from distill3d.points.boxes import points_in_boxes
from distill3d.points.detector import (
    Detections, Detector, DetectorOutput, PostProcessConfig, check_point_batch, range_indices, rank_normalizer, scaled,
    select_detections,
)
from distill3d.points.sampling import ball_group, farthest_point_sample, gather_rows, native_cpu_kernels, nearest_neighbours

INTERPOLATION_NEIGHBOURS = 3


@dataclass
class PointDetectorConfig:
    num_classes: int = 2
    point_range: tuple[float, ...] = (0.0, -12.8, -3.0, 25.6, 12.8, 1.0)
    num_points: int = 2048
    width: float = 1.0
    sa_centres: tuple[int, ...] = (256, 64)
    sa_neighbours: tuple[int, ...] = (16, 16)
    sa_radius: tuple[float, ...] = (2.0, 5.0)
    sa_channels: tuple[tuple[int, ...], ...] = ((32, 32, 64), (64, 64, 128))
    fp_channels: tuple[tuple[int, ...], ...] = ((128, 128), (64, 64))  # coarse-to-fine
    head_channels: int = 32
    proposals: int = 128  # stage-1 points, most confident first, whose votes become box proposals
    proposal_neighbours: int = 128  # about a whole duck at 2048 points per scan (32 gave 0.33 rad heading error, 128 0.14)
    proposal_radius: float = 2.5  # metres around a vote: covers the largest object class
    proposal_channels: tuple[int, ...] = (32, 64)  # (64, 128): 0.12 rad, 1.8x slower training
    focal_gamma: float = 2.0
    reg_weight: float = 1.0
    ignore_margin: float = 0.2  # points this close outside a box are neither foreground nor background
    postprocess: PostProcessConfig = field(default_factory=lambda: PostProcessConfig(score_threshold=0.3, nms_iou=0.1))


def shared_mlp(channels: list[int], dims: int) -> nn.Sequential:
    """``Layer -> BatchNorm -> ReLU`` blocks shared over all points: 1x1 convolutions over ``[B, C, N]``
    (``dims=1``) or linear layers over rows ``[R, C]`` (``dims=0``; the same function and statistics,
    and on a CPU 2-4x faster than 1x1 convolutions on ``[B, C, S, k]`` groups, whose channel-first
    copies and small matrix products do not shrink with width)."""
    layers = []
    for cin, cout in zip(channels[:-1], channels[1:]):
        layer = nn.Linear(cin, cout, bias=False) if dims == 0 else nn.Conv1d(cin, cout, 1, bias=False)
        layers += [layer, nn.BatchNorm1d(cout), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


def group_points(xyz: Tensor, feats: Tensor, centres: Tensor, group: Tensor, radius: float) -> Tensor:
    """PointNet++'s group rows :math:`[(p_j - c)/r, f_j]` for the neighbours :math:`j` of each centre :math:`c`.

    On CPU tensors that need no gradient, one pass of the native kernel (``csrc/cpu/points_group_cpu.h``)
    writes each row, with the float arithmetic of the torch version (two gathers, a subtraction, a
    division and a concatenation over all ``S k`` rows: 4-5x slower on the detector's groups, a cost that
    does not shrink with its width); elsewhere the torch version.

    Shapes:
        xyz ``[B, N, 3]``, feats ``[B, N, C]``, centres ``[B, S, 3]``, group ``[B, S, k]`` int64 into ``N``
        -> ``[B, S, k, 3 + C]``.
    """
    kernels = native_cpu_kernels(xyz, feats, centres, differentiable=True)
    if kernels is not None:
        return kernels.group_points(xyz, feats, centres, group, radius)
    rel = (gather_rows(xyz, group) - centres[:, :, None]) / radius
    return torch.cat([rel, gather_rows(feats, group)], dim=-1)


class GroupedPointNet(nn.Module):
    """:math:`g_c = \\max_{j \\in \\mathcal N(c)} \\mathrm{MLP}([(p_j - c)/r, f_j])` over the ball query
    :math:`\\mathcal N(c)` of each centre: the grouping of set abstraction and of the proposal head."""

    def __init__(self, k: int, radius: float, in_channels: int, channels: list[int]):
        super().__init__()
        self.k, self.radius = k, radius
        self.mlp = shared_mlp([in_channels + 3] + channels, dims=0)

    def forward(self, centres: Tensor, xyz: Tensor, feats: Tensor) -> Tensor:
        """``centres`` [B, S, 3], ``xyz`` [B, N, 3], ``feats`` [B, N, C] -> [B, S, C']."""
        group = ball_group(centres, xyz, self.k, self.radius)  # [B, S, k]
        grouped = group_points(xyz, feats, centres, group, self.radius)  # [B, S, k, 3 + C]
        b, s, k, c = grouped.shape
        return self.mlp(grouped.view(-1, c)).view(b, s, k, -1).amax(dim=2)


class SetAbstraction(nn.Module):
    def __init__(self, num_centres: int, k: int, radius: float, in_channels: int, channels: list[int]):
        super().__init__()
        self.num_centres = num_centres
        self.group = GroupedPointNet(k, radius, in_channels, channels)

    def forward(self, xyz: Tensor, feats: Tensor) -> tuple[Tensor, Tensor]:
        """``xyz`` [B, N, 3], ``feats`` [B, N, C] -> centres [B, S, 3], features [B, S, C']."""
        centres = gather_rows(xyz, farthest_point_sample(xyz, self.num_centres))
        return centres, self.group(centres, xyz, feats)


class FeaturePropagation(nn.Module):
    def __init__(self, in_channels: int, channels: list[int]):
        super().__init__()
        self.mlp = shared_mlp([in_channels] + channels, dims=0)

    def forward(self, xyz_fine: Tensor, xyz_coarse: Tensor, feats_coarse: Tensor, skip: Tensor) -> Tensor:
        dist, idx = nearest_neighbours(xyz_fine, xyz_coarse, INTERPOLATION_NEIGHBOURS)
        weight = 1.0 / dist.clamp(min=1e-8)
        weight = weight / weight.sum(-1, keepdim=True)
        interpolated = (gather_rows(feats_coarse, idx) * weight[..., None]).sum(2)
        rows = torch.cat([interpolated, skip], -1)  # [B, N, C]
        return self.mlp(rows.view(-1, rows.shape[-1])).view(*rows.shape[:2], -1)


def softmax_focal_loss(logits: Tensor, target: Tensor, weight: Tensor, gamma: float) -> Tensor:
    """:math:`-(1 - p_t)^\\gamma \\log p_t` per row, weighted, normalised by the foreground count of the
    whole batch (over all ranks, :func:`.detector.rank_normalizer`)."""
    log_p = F.log_softmax(logits, -1).gather(1, target[:, None])[:, 0]
    loss = -(1 - log_p.exp()).pow(gamma) * log_p * weight
    return loss.sum() / rank_normalizer((target > 0).sum())


class PointDetector(Detector):
    def __init__(self, cfg: PointDetectorConfig):
        super().__init__()
        if len({len(cfg.sa_centres), len(cfg.sa_neighbours), len(cfg.sa_radius), len(cfg.sa_channels), len(cfg.fp_channels)}) != 1:
            raise ValueError("sa_centres, sa_neighbours, sa_radius, sa_channels and fp_channels need one entry per level")
        self.cfg = cfg
        self.num_classes = cfg.num_classes
        w = cfg.width
        in_feats = 2  # intensity and height: the point's own features besides its position
        skips, sa, cin = [in_feats], [], in_feats
        for s, k, r, ch in zip(cfg.sa_centres, cfg.sa_neighbours, cfg.sa_radius, cfg.sa_channels):
            ch = [scaled(c, w) for c in ch]
            sa.append(SetAbstraction(s, k, r, cin, ch))
            cin = ch[-1]
            skips.append(cin)
        fp = []
        for level, ch in enumerate(cfg.fp_channels):
            ch = [scaled(c, w) for c in ch]
            fp.append(FeaturePropagation(cin + skips[-2 - level], ch))
            cin = ch[-1]
        self.sa, self.fp = nn.ModuleList(sa), nn.ModuleList(fp)
        self._feature_channels = cin
        head = scaled(cfg.head_channels, w)
        self.head_shared = shared_mlp([cin, head], dims=1)
        self.classifier = nn.Conv1d(head, cfg.num_classes + 1, 1)
        self.vote = nn.Conv1d(head, 3, 1)
        proposal = [scaled(c, w) for c in cfg.proposal_channels]
        self.proposal_group = GroupedPointNet(cfg.proposal_neighbours, cfg.proposal_radius, in_feats, proposal)
        self.proposal_shared = shared_mlp([proposal[-1], head], dims=1)
        self.proposal_classifier = nn.Conv1d(head, cfg.num_classes + 1, 1)
        self.proposal_regression = nn.Conv1d(head, CODE_SIZE, 1)

    @property
    def feature_channels(self) -> int:
        return self._feature_channels

    def preprocess(self, points: list[Tensor], generator: torch.Generator | None = None) -> Tensor:  # [B, N, 4]
        """Crops and resamples each scan to ``num_points`` (random without replacement when it has
        enough points, else with; ``generator`` makes it reproducible)."""
        check_point_batch(points)
        out = []
        for i, p in enumerate(points):
            inside = range_indices(p, self.cfg.point_range, i)  # resampled from, without copying the crop
            n = self.cfg.num_points
            if len(inside) >= n:
                idx = torch.randperm(len(inside), generator=generator)[:n]
            else:
                idx = torch.cat([torch.arange(len(inside)), torch.randint(len(inside), (n - len(inside),), generator=generator)])
            out.append(p.index_select(0, inside[idx.to(p.device)]))
        return torch.stack(out)

    def forward(self, points: Tensor, *, distill_only: bool = False) -> DetectorOutput:
        if points.dim() != 3 or points.shape[-1] != 4:
            raise ValueError(f"points must be [B, N, 4] from preprocess(), got {list(points.shape)}")
        xyz = points[..., :3].contiguous()
        feats = torch.stack([points[..., 3], points[..., 2]], dim=-1)
        levels = [(xyz, feats)]
        for sa in self.sa:
            levels.append(sa(*levels[-1]))
        coarse_xyz, coarse = levels[-1]
        for level, fp in enumerate(self.fp):
            fine_xyz, skip = levels[-2 - level]
            coarse = fp(fine_xyz, coarse_xyz, coarse, skip)
            coarse_xyz = fine_xyz
        shared = self.head_shared(coarse.transpose(1, 2))
        logits = self.classifier(shared).transpose(1, 2)  # [B, N, K + 1]
        offsets = self.vote(shared).transpose(1, 2)  # [B, N, 3]
        importance = torch.softmax(logits, -1)[..., 1:].amax(-1)
        head = {"logits": logits, "offsets": offsets, "xyz": xyz}
        if distill_only:  # distillation reads stage 1 only
            return DetectorOutput(features=coarse, importance=importance,
                                  response_logits=logits.reshape(-1, logits.shape[-1]), head=head)
        # The proposal stage starts from the votes without moving them: the offset is trained by
        # its own loss, and the box code is then a correction relative to a fixed reference.
        seeds = importance.detach().topk(min(self.cfg.proposals, xyz.shape[1]), dim=1).indices
        votes = gather_rows(xyz + offsets.detach(), seeds)  # [B, M, 3]
        proposal = self.proposal_shared(self.proposal_group(votes, xyz, feats).transpose(1, 2))
        return DetectorOutput(
            features=coarse,
            importance=importance,
            response_logits=logits.reshape(-1, logits.shape[-1]),
            head={**head, "votes": votes,
                  "proposal_logits": self.proposal_classifier(proposal).transpose(1, 2),  # [B, M, K + 1]
                  "proposal_regression": self.proposal_regression(proposal).transpose(1, 2)},  # [B, M, 8]
        )

    def targets(self, xyz: Tensor, boxes: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(class [N] with 0 = background, codes [N, 8], weight [N])`` of points or votes ``xyz``
        ``[N, 3]`` of one scan: the box a point lies in, its code relative to the point, and weight 0
        for points just outside a box (within ``ignore_margin``)."""
        n = xyz.shape[0]
        cls = torch.zeros(n, dtype=torch.long, device=xyz.device)
        codes = torch.zeros(n, CODE_SIZE, device=xyz.device)
        weight = torch.ones(n, device=xyz.device)
        if len(boxes) == 0:
            return cls, codes, weight
        boxes = boxes.to(xyz)
        inside = points_in_boxes(xyz, boxes)
        near = points_in_boxes(xyz, boxes, margin=self.cfg.ignore_margin)
        fg = inside.any(1)
        owner = inside.float().argmax(1)
        cls[fg] = labels.to(xyz.device)[owner[fg]] + 1
        codes[fg] = encode_boxes(boxes[owner[fg]], xyz[fg], xyz.new_ones(3))
        weight[near.any(1) & ~fg] = 0.0
        return cls, codes, weight

    def _stage_loss(self, logits: Tensor, regression: Tensor, xyz: Tensor, boxes: list[Tensor], labels: list[Tensor]) -> tuple[Tensor, Tensor]:
        """Focal loss of ``logits`` [B, N, K + 1] and smooth-L1 loss of ``regression`` [B, N, D] on
        the first D entries of the foreground codes, for points or votes ``xyz`` [B, N, 3]."""
        cls, codes, weight = zip(*(self.targets(xyz[b], boxes[b], labels[b]) for b in range(len(boxes))))
        cls, codes, weight = torch.cat(cls), torch.cat(codes), torch.cat(weight)
        cls_loss = softmax_focal_loss(logits.reshape(-1, logits.shape[-1]), cls, weight, self.cfg.focal_gamma)
        fg = cls > 0
        reg = regression.reshape(-1, regression.shape[-1])
        # mean over the foreground rows of the batch (an empty selection keeps the graph, gives 0)
        reg_loss = (F.smooth_l1_loss(reg[fg], codes[fg, : reg.shape[1]], reduction="sum")
                    / rank_normalizer(fg.sum() * reg.shape[1]))
        return cls_loss, reg_loss

    def loss(self, out: DetectorOutput, boxes: list[Tensor], labels: list[Tensor]) -> dict[str, Tensor]:
        head = out.head
        cls, vote = self._stage_loss(head["logits"], head["offsets"], head["xyz"], boxes, labels)
        proposal_cls, proposal_reg = self._stage_loss(head["proposal_logits"], head["proposal_regression"], head["votes"], boxes, labels)
        return {"cls": cls, "vote": self.cfg.reg_weight * vote, "proposal_cls": proposal_cls, "reg": self.cfg.reg_weight * proposal_reg}

    @torch.no_grad()
    def decode(self, out: DetectorOutput) -> list[Detections]:
        probs = torch.softmax(out.head["proposal_logits"], -1)[..., 1:]
        scores, labels = probs.max(-1)
        votes = out.head["votes"]
        boxes = decode_boxes(out.head["proposal_regression"], votes, votes.new_ones(3))
        return [select_detections(boxes[b], scores[b], labels[b], self.cfg.postprocess) for b in range(len(boxes))]


__all__ = ["PointDetectorConfig", "PointDetector", "group_points", "GroupedPointNet", "SetAbstraction", "FeaturePropagation", "softmax_focal_loss"]
