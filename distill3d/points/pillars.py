"""A PointPillars-style detector (Lang et al., 2019) with a center-heatmap head.

1. **Pillar feature net.** Points in range fall into vertical pillars of a ``pillar_size`` BEV grid.
   Each point gets :math:`(x, y, z, r, x - \\bar x, y - \\bar y, z - \\bar z, x - x_p, y - y_p)`
   (offsets to its pillar's point mean and to the pillar centre), a shared
   ``Linear -> BatchNorm -> ReLU``, and each pillar keeps the channel-wise maximum over its points
   (a scatter-max: no padding to a fixed number of points per pillar).
2. **Scatter** of pillar features onto a dense BEV canvas ``[B, C, H, W]``.
3. **2D backbone**: two strided conv blocks, each upsampled back to the first block's resolution and
   concatenated (PointPillars' / SECOND's RPN). These concatenated BEV features are what distillation
   compares (one "voxel" per head cell).
4. **Head**: per-class center heatmaps (CenterNet focal loss on Gaussian targets) and the box code of
   :mod:`.box_coder` at each centre cell; decoding takes heatmap peaks, then class-wise rotated NMS.

``width`` multiplies every channel count: 0.5 gives about 4x fewer parameters, 0.25 about 16x.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_scatter import scatter_mean

from distill3d.points.box_coder import CODE_SIZE, decode_boxes, encode_boxes
from distill3d.points.detector import (
    Detections, Detector, DetectorOutput, PostProcessConfig, check_point_batch, crop_to_range, rank_normalizer, scaled,
    select_detections,
)
from distill3d.points.sampling import native_cpu_kernels

POINT_FEATURES = 9
# Heatmap bias at init: sigmoid(-2.19) = 0.1, CenterNet's prior that keeps the focal loss stable early.
HEATMAP_PRIOR_BIAS = -2.19


@dataclass
class PillarConfig:
    num_classes: int = 2
    point_range: tuple[float, ...] = (0.0, -12.8, -3.0, 25.6, 12.8, 1.0)
    pillar_size: float = 0.4
    width: float = 1.0
    pfn_channels: int = 32
    block_channels: tuple[int, ...] = (32, 64)
    block_layers: tuple[int, ...] = (2, 2)
    upsample_channels: int = 32
    head_channels: int = 32
    gaussian_overlap: float = 0.1  # CenterNet: the IoU a box shifted by the radius keeps with the truth
    min_gaussian_radius: int = 1  # in head cells
    reg_weight: float = 2.0
    postprocess: PostProcessConfig = field(default_factory=PostProcessConfig)

    @property
    def grid_size(self) -> tuple[int, int]:  # (H, W) = (ny, nx)
        r, s = self.point_range, self.pillar_size
        return int(round((r[4] - r[1]) / s)), int(round((r[3] - r[0]) / s))

    @property
    def head_stride(self) -> int:
        return 2

    @property
    def cell_size(self) -> float:
        return self.pillar_size * self.head_stride


def conv_bn_relu(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def gaussian_radius(length: float, width: float, min_overlap: float) -> float:
    """CenterNet's radius (in cells) within which a shifted box keeps IoU >= ``min_overlap``
    (the smallest root of its three corner cases)."""
    a1, b1 = 1.0, length + width
    c1 = width * length * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 + math.sqrt(b1 ** 2 - 4 * a1 * c1)) / 2
    a2, b2 = 4.0, 2 * (length + width)
    c2 = (1 - min_overlap) * width * length
    r2 = (b2 + math.sqrt(b2 ** 2 - 4 * a2 * c2)) / 2
    a3, b3 = 4 * min_overlap, -2 * min_overlap * (length + width)
    c3 = (min_overlap - 1) * width * length
    r3 = (b3 + math.sqrt(b3 ** 2 - 4 * a3 * c3)) / 2
    return min(r1, r2, r3)


def focal_heatmap_loss(logits: Tensor, target: Tensor) -> Tensor:
    """CenterNet's penalty-reduced focal loss, normalised by the number of peaks (target == 1) of the
    whole batch (over all ranks, :func:`.detector.rank_normalizer`)."""
    p = torch.sigmoid(logits).clamp(1e-4, 1 - 1e-4)
    pos = target.eq(1).float()
    pos_loss = torch.log(p) * (1 - p).pow(2) * pos
    neg_loss = torch.log(1 - p) * p.pow(2) * (1 - target).pow(4) * (1 - pos)
    return -(pos_loss.sum() + neg_loss.sum()) / rank_normalizer(pos.sum())


def pillar_point_features(points: list[Tensor], cfg: PillarConfig) -> tuple[Tensor, Tensor]:
    """The pillar of every cropped point and its nine features (step 1 of the module docstring):
    :math:`i_x = \\mathrm{clamp}(\\lfloor (x - x_0) / s \\rfloor, 0, W - 1)` (likewise :math:`i_y`), and
    :math:`(x, y, z, r, x - \\bar x, y - \\bar y, z - \\bar z, x - x_p, y - y_p)` with the pillar's point
    mean :math:`\\bar p` and centre :math:`x_p = (i_x + 1/2) s + x_0`.

    On CPU tensors (that need no gradient) the native kernel computes both in two passes over the
    points (``csrc/cpu/points_prep_cpu.h``) with the float arithmetic of
    :func:`pillar_point_features_reference`, bit for bit: the torch version's dozen elementwise ops,
    scatter-mean and gather took about 1.2 ms of every scan, whatever the detector's width.

    Args:
        points: cropped scans (:meth:`PillarDetector.preprocess`).
        cfg: the grid (``point_range``, ``pillar_size``).

    Shapes:
        points ``B x [P_b, 4]`` -> cells ``[P]`` int64 (into the flattened ``[B, H, W]`` canvas) and
        features ``[P, 9]``, ``P = sum_b P_b``.
    """
    kernels = native_cpu_kernels(*points, differentiable=True)
    if kernels is None:
        return pillar_point_features_reference(points, cfg)
    h, w = cfg.grid_size
    counts = torch.tensor([len(p) for p in points])
    xyz_all = points[0] if len(points) == 1 else torch.cat(points)
    return tuple(kernels.pillar_point_features(xyz_all, counts, cfg.point_range[0], cfg.point_range[1], cfg.pillar_size, h, w))


def pillar_point_features_reference(points: list[Tensor], cfg: PillarConfig) -> tuple[Tensor, Tensor]:
    """:func:`pillar_point_features` in torch ops (any device, differentiable in the points)."""
    h, w = cfg.grid_size
    xyz_all = torch.cat(points)
    batch = torch.cat([torch.full((len(p),), i, dtype=torch.long, device=p.device) for i, p in enumerate(points)])
    ix = ((xyz_all[:, 0] - cfg.point_range[0]) / cfg.pillar_size).long().clamp(0, w - 1)
    iy = ((xyz_all[:, 1] - cfg.point_range[1]) / cfg.pillar_size).long().clamp(0, h - 1)
    flat = (batch * h + iy) * w + ix  # the point's cell in the flattened [B, H, W] canvas
    mean = scatter_mean(xyz_all[:, :3], flat, dim=0, dim_size=len(points) * h * w)
    center_x = (ix.to(xyz_all.dtype) + 0.5) * cfg.pillar_size + cfg.point_range[0]
    center_y = (iy.to(xyz_all.dtype) + 0.5) * cfg.pillar_size + cfg.point_range[1]
    feats = torch.cat([
        xyz_all, xyz_all[:, :3] - mean[flat],
        (xyz_all[:, 0] - center_x)[:, None], (xyz_all[:, 1] - center_y)[:, None],
    ], dim=1)
    return flat, feats


class PillarDetector(Detector):
    prefers_channels_last = True  # see .fusion: its 2D backbone runs faster on NHWC inference copies

    def __init__(self, cfg: PillarConfig):
        super().__init__()
        self.cfg = cfg
        self.num_classes = cfg.num_classes
        w = cfg.width
        pfn = scaled(cfg.pfn_channels, w)
        self.pfn = nn.Sequential(nn.Linear(POINT_FEATURES, pfn, bias=False), nn.BatchNorm1d(pfn), nn.ReLU(inplace=True))
        self.pfn_channels = pfn
        blocks, ups, cin = [], [], pfn
        up = scaled(cfg.upsample_channels, w)
        for i, (c, n) in enumerate(zip(cfg.block_channels, cfg.block_layers)):
            c = scaled(c, w)
            blocks.append(nn.Sequential(conv_bn_relu(cin, c, stride=2), *[conv_bn_relu(c, c) for _ in range(n)]))
            factor = 2 ** i  # back to the first block's resolution
            ups.append(nn.Sequential(
                nn.ConvTranspose2d(c, up, factor, factor, bias=False) if factor > 1 else nn.Conv2d(c, up, 1, bias=False),
                nn.BatchNorm2d(up), nn.ReLU(inplace=True),
            ))
            cin = c
        self.blocks, self.ups = nn.ModuleList(blocks), nn.ModuleList(ups)
        self._feature_channels = up * len(blocks)
        head = scaled(cfg.head_channels, w)
        self.head_shared = conv_bn_relu(self._feature_channels, head)
        self.heatmap = nn.Conv2d(head, cfg.num_classes, 1)
        self.regression = nn.Conv2d(head, CODE_SIZE, 1)
        nn.init.constant_(self.heatmap.bias, HEATMAP_PRIOR_BIAS)

    @property
    def feature_channels(self) -> int:
        return self._feature_channels

    def preprocess(self, points: list[Tensor], generator: torch.Generator | None = None) -> list[Tensor]:
        check_point_batch(points)
        return [crop_to_range(p, self.cfg.point_range, i) for i, p in enumerate(points)]

    def pillar_canvas(self, points: list[Tensor]) -> Tensor:  # [B, C, H, W]
        """Steps 1-2 of the module docstring for cropped scans."""
        h, w = self.cfg.grid_size
        flat, feats = pillar_point_features(points, self.cfg)
        cells = len(points) * h * w
        point_feats = self.pfn(feats)
        # Max over each pillar's points straight into the dense canvas (empty cells stay 0). torch's own
        # scatter_reduce rather than torch_scatter.scatter_max: on CPU the latter is single-threaded and
        # also computes arg-maxima, 16x slower on a 23k-point scan (8.9 ms vs 0.55 ms, 2 threads).
        canvas = point_feats.new_zeros(cells, point_feats.shape[1]).scatter_reduce(
            0, flat[:, None].expand_as(point_feats), point_feats, "amax", include_self=False)
        canvas = canvas.view(len(points), h, w, -1).permute(0, 3, 1, 2)  # an NHWC tensor seen as [B, C, H, W]
        # a channels-last inference copy (.fusion) keeps that layout for its NHWC convolutions
        return canvas.contiguous(memory_format=torch.channels_last if self.inference_channels_last else torch.contiguous_format)

    def forward(self, points: list[Tensor], *, distill_only: bool = False) -> DetectorOutput:
        x = self.pillar_canvas(points)
        multi = []
        for block, up in zip(self.blocks, self.ups):
            x = block(x)
            multi.append(up(x))
        bev = torch.cat(multi, dim=1)  # [B, C, h, w]
        shared = self.head_shared(bev)
        heatmap = self.heatmap(shared)
        b, k = heatmap.shape[:2]
        flat_heat = heatmap.permute(0, 2, 3, 1).reshape(-1, k)  # [B*h*w, K]
        # Per-class sigmoid as a two-way softmax over (0, logit): response KD then reuses kd_kl_loss.
        response = torch.stack([torch.zeros_like(flat_heat), flat_heat], dim=-1).reshape(-1, 2)
        return DetectorOutput(
            features=bev.flatten(2).transpose(1, 2),
            importance=torch.sigmoid(heatmap).amax(dim=1).flatten(1),
            response_logits=response,
            # distillation reads the heatmap only
            head={"heatmap": heatmap} if distill_only else {"heatmap": heatmap, "regression": self.regression(shared)},
        )

    def _cell_reference(self, iy: Tensor, ix: Tensor) -> Tensor:  # [M, 3]: cell corner, z = 0
        cfg = self.cfg
        return torch.stack([ix * cfg.cell_size + cfg.point_range[0], iy * cfg.cell_size + cfg.point_range[1], torch.zeros_like(ix)], -1)

    def _code_scale(self, like: Tensor) -> Tensor:
        return like.new_tensor([self.cfg.cell_size, self.cfg.cell_size, 1.0])

    def targets(self, boxes: list[Tensor], labels: list[Tensor], shape: tuple[int, int]) -> tuple[Tensor, Tensor, Tensor]:
        """``(heatmap [B, K, h, w], codes [B, 8, h, w], mask [B, h, w])`` for ground-truth boxes."""
        cfg = self.cfg
        h, w = shape
        heat = torch.zeros(len(boxes), cfg.num_classes, h, w)
        codes = torch.zeros(len(boxes), CODE_SIZE, h, w)
        mask = torch.zeros(len(boxes), h, w, dtype=torch.bool)
        ys, xs = torch.arange(h, dtype=torch.float32)[:, None], torch.arange(w, dtype=torch.float32)[None, :]
        for b, (bx, lb) in enumerate(zip(boxes, labels)):
            for box, label in zip(bx, lb):
                cx = (float(box[0]) - cfg.point_range[0]) / cfg.cell_size
                cy = (float(box[1]) - cfg.point_range[1]) / cfg.cell_size
                ix, iy = int(math.floor(cx)), int(math.floor(cy))
                if not (0 <= ix < w and 0 <= iy < h):
                    continue
                radius = max(cfg.min_gaussian_radius, int(gaussian_radius(
                    float(box[3]) / cfg.cell_size, float(box[4]) / cfg.cell_size, cfg.gaussian_overlap)))
                sigma = (2 * radius + 1) / 6
                blob = torch.exp(-((xs - ix) ** 2 + (ys - iy) ** 2) / (2 * sigma * sigma))
                blob = torch.where(((xs - ix).abs() <= radius) & ((ys - iy).abs() <= radius), blob, torch.zeros_like(blob))
                heat[b, int(label)] = torch.maximum(heat[b, int(label)], blob)
                ref = self._cell_reference(torch.tensor([float(iy)]), torch.tensor([float(ix)]))
                codes[b, :, iy, ix] = encode_boxes(box[None].float(), ref, self._code_scale(ref))[0]
                mask[b, iy, ix] = True
        return heat, codes, mask

    def loss(self, out: DetectorOutput, boxes: list[Tensor], labels: list[Tensor]) -> dict[str, Tensor]:
        heatmap, regression = out.head["heatmap"], out.head["regression"]
        heat_t, codes_t, mask = (t.to(heatmap.device) for t in self.targets(boxes, labels, tuple(heatmap.shape[2:])))
        cls = focal_heatmap_loss(heatmap, heat_t)
        pred = regression.permute(0, 2, 3, 1)[mask]
        target = codes_t.permute(0, 2, 3, 1)[mask]
        # mean absolute error over the batch's centre cells (an empty selection keeps the graph, gives 0)
        reg = (pred - target).abs().sum() / rank_normalizer(mask.sum() * CODE_SIZE)
        return {"cls": cls, "reg": self.cfg.reg_weight * reg}

    @torch.no_grad()
    def decode(self, out: DetectorOutput) -> list[Detections]:
        heat = torch.sigmoid(out.head["heatmap"])
        peaks = heat * (F.max_pool2d(heat, 3, 1, 1) == heat)
        b, k, h, w = heat.shape
        results = []
        for i in range(b):
            scores, flat = peaks[i].flatten().topk(min(self.cfg.postprocess.pre_nms_top_k, k * h * w))
            labels, cell = flat // (h * w), flat % (h * w)
            iy, ix = (cell // w).float(), (cell % w).float()
            codes = out.head["regression"][i].flatten(1)[:, cell].T
            ref = self._cell_reference(iy, ix)
            boxes = decode_boxes(codes, ref, self._code_scale(ref))
            results.append(select_detections(boxes, scores, labels, self.cfg.postprocess))
        return results


__all__ = ["PillarConfig", "PillarDetector", "pillar_point_features", "pillar_point_features_reference", "gaussian_radius", "focal_heatmap_loss"]
