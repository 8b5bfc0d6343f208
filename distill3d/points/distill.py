"""Distillation losses between a teacher and a student detector of the same family.

**PointDistiller** (Zhang et al., CVPR 2023), local distillation with reweighting:

1. pick the ``N`` most important local structures (BEV cells / points) by the teacher's confidence
   :math:`s_i` (its max class probability there);
2. around each, build a kNN graph of ``k`` neighbours in *teacher feature space*;
3. pass teacher and student features through EdgeConv adapters (:mod:`.edgeconv`) to a common width
   over that same graph, :math:`G^T_i` and :math:`G^S_i`;
4. match them (max-pooled per structure, or edge by edge with ``pool_edges=False``) with the
   importance-reweighted MSE of :func:`distillcore.reweight.reweighted_structured_loss`,
   :math:`\\frac{1}{NC}\\sum_i N\\,\\mathrm{softmax}(s/T)_i \\lVert G^T_i - G^S_i\\rVert^2`.

``N``, ``k`` and ``T`` come from :class:`PointDistillerConfig` (the reference hard-codes them) and the
reweighting is applied for both detector families (the reference computes it for its point detector,
PointRCNN, but never multiplies it into the loss).

The teacher side is never trained: the reweighted loss treats it as a target (detached), and a
trainable teacher adapter could shrink both sides to a constant and the loss to zero. By default the
target is the teacher's own edge features ``[x_i, x_j - x_i]`` (``teacher_adapter="none"``), matched
edge by edge; a fixed random EdgeConv (``"random"``) is the alternative. The defaults (N = 256 of the
1024 BEV cells, k = 16, unpooled edges, raw teacher target) were chosen on the benchmark's
validation scans, where the first version (N = 64, k = 8, max-pooled, random teacher adapter) did
not beat training without KD (see ``benchmarks/pointdistiller.py``).

**Baselines**: FitNet (Romero et al., 2015) — a linear adapter maps every student feature to the
teacher's width, plain MSE over all local features; response KD (Hinton et al., 2015) — KL between
the softened class distributions of the two heads at every location; and no KD.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from torch import Tensor, nn

from distill3d.points.detector import DetectorOutput
from distill3d.points.edgeconv import EdgeConv, edge_inputs
from distill3d.points.sampling import gather_rows
from distillcore.checks import check_choice, check_range
from distillcore.knn import knn
from distillcore.feature import feature_distill_loss
from distillcore.kd import kd_kl_loss
from distillcore.reweight import reweighted_structured_loss

METHODS = ("pointdistiller", "fitnet", "kd", "none")
Method = Literal["pointdistiller", "fitnet", "kd", "none"]


@dataclass
class PointDistillerConfig:
    num_important: int = 256  # N local structures per scan
    neighbours: int = 16  # k of the kNN graph in teacher feature space
    temperature: float = 0.5  # T of the importance reweighting
    adapter_channels: int = 32  # the common width both EdgeConv adapters map to
    adapter_hidden: tuple[int, ...] = (64,)
    # True: one max-pooled EdgeConv feature per local structure; False: every edge of the local graph
    # is matched (as in the reference code), a k times larger target that keeps each neighbour relation
    pool_edges: bool = False
    # "none": the target is the teacher's own edge features [x_i, x_j - x_i] and the student's
    # EdgeConv maps to their width (2 x teacher channels); "random": a fixed random EdgeConv maps the
    # teacher to ``adapter_channels`` (see the module doc)
    teacher_adapter: Literal["none", "random"] = "none"
    weight: float = 1.0

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        """Raises ValueError naming the first field outside its range."""
        for name in ("num_important", "neighbours", "adapter_channels"):
            check_range(getattr(self, name), f"pointdistiller.{name}", 1, integer=True)
        for i, width in enumerate(self.adapter_hidden):
            check_range(width, f"pointdistiller.adapter_hidden[{i}]", 1, integer=True)
        check_range(self.temperature, "pointdistiller.temperature", 0, low_open=True)
        check_range(self.weight, "pointdistiller.weight", 0)
        check_choice(self.teacher_adapter, "pointdistiller.teacher_adapter", ("none", "random"))


@dataclass
class DistillConfig:
    method: Method = "pointdistiller"
    pointdistiller: PointDistillerConfig = field(default_factory=PointDistillerConfig)
    fitnet_weight: float = 1.0
    kd_weight: float = 1.0
    kd_temperature: float = 2.0

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        check_choice(self.method, "method", ("pointdistiller", "fitnet", "kd", "none"))
        check_range(self.fitnet_weight, "fitnet_weight", 0)
        check_range(self.kd_weight, "kd_weight", 0)
        check_range(self.kd_temperature, "kd_temperature", 0, low_open=True)
        self.pointdistiller.validate()


class DistillLoss(nn.Module):
    """Base: checks that both outputs carry the feature widths the loss was built for."""

    def __init__(self, teacher_channels: int, student_channels: int):
        super().__init__()
        self.teacher_channels, self.student_channels = teacher_channels, student_channels

    def check(self, teacher: DetectorOutput, student: DetectorOutput) -> None:
        if teacher.features.shape[-1] != self.teacher_channels:
            raise ValueError(
                f"teacher features have {teacher.features.shape[-1]} channels but the distiller was built for "
                f"{self.teacher_channels}: the teacher checkpoint does not match the configured teacher width"
            )
        if student.features.shape[-1] != self.student_channels:
            raise ValueError(f"student features have {student.features.shape[-1]} channels, the distiller expects {self.student_channels}")
        if teacher.features.shape[:2] != student.features.shape[:2]:
            raise ValueError(
                f"teacher {list(teacher.features.shape[:2])} and student {list(student.features.shape[:2])} must have the same "
                "[B, M] local structures (same detector family, same grid / point count)"
            )


class PointDistillerLoss(DistillLoss):
    """Steps 1-4 of the module docstring."""

    def __init__(self, teacher_channels: int, student_channels: int, cfg: PointDistillerConfig):
        super().__init__(teacher_channels, student_channels)
        self.cfg = cfg
        if cfg.teacher_adapter not in ("random", "none"):
            raise ValueError(f"teacher_adapter must be 'random' or 'none', got {cfg.teacher_adapter!r}")
        if cfg.teacher_adapter == "random":
            self.teacher_adapter = EdgeConv(teacher_channels, cfg.adapter_channels, cfg.adapter_hidden).requires_grad_(False)
            out_channels = cfg.adapter_channels
        else:
            self.teacher_adapter = None
            out_channels = 2 * teacher_channels
        self.student_adapter = EdgeConv(student_channels, out_channels, cfg.adapter_hidden)

    def teacher_graph(self, features: Tensor, centres: Tensor, neighbours: Tensor) -> Tensor:
        """``[B, N, C']`` (pooled) or ``[B, N, k, C']`` teacher-side local graph features."""
        pool = self.cfg.pool_edges
        if self.teacher_adapter is not None:
            return self.teacher_adapter(features, centres, neighbours, aggregate=pool)
        edges = edge_inputs(features, centres, neighbours)
        return edges.amax(dim=2) if pool else edges

    def select(self, teacher: DetectorOutput) -> tuple[Tensor, Tensor, Tensor]:
        """``(centres [B, N], neighbours [B, N, k], scores [B, N])`` from the teacher alone."""
        importance = teacher.importance.detach()
        n = min(self.cfg.num_important, importance.shape[1])
        scores, centres = importance.topk(n, dim=1)
        features = teacher.features.detach()
        _, neighbours = knn(gather_rows(features, centres), features, min(self.cfg.neighbours, features.shape[1]))
        return centres, neighbours, scores

    def forward(self, teacher: DetectorOutput, student: DetectorOutput) -> Tensor:
        self.check(teacher, student)
        centres, neighbours, scores = self.select(teacher)
        pool = self.cfg.pool_edges
        graph_t = self.teacher_graph(teacher.features.detach(), centres, neighbours)
        graph_s = self.student_adapter(student.features, centres, neighbours, aggregate=pool)
        if not pool:  # [B, N, k, C] -> [B, N, k C]: the reweighting stays per local structure
            graph_t, graph_s = graph_t.flatten(2), graph_s.flatten(2)
        return self.cfg.weight * reweighted_structured_loss(graph_t, graph_s, scores, self.cfg.temperature)


class FitNetLoss(DistillLoss):
    def __init__(self, teacher_channels: int, student_channels: int, weight: float):
        super().__init__(teacher_channels, student_channels)
        self.weight = weight
        self.adapter = nn.Linear(student_channels, teacher_channels)

    def forward(self, teacher: DetectorOutput, student: DetectorOutput) -> Tensor:
        self.check(teacher, student)
        s = self.adapter(student.features).reshape(-1, self.teacher_channels)
        t = teacher.features.detach().reshape(-1, self.teacher_channels)
        return self.weight * feature_distill_loss(s, t, kind="mse")


class ResponseKDLoss(DistillLoss):
    def __init__(self, teacher_channels: int, student_channels: int, weight: float, temperature: float):
        super().__init__(teacher_channels, student_channels)
        self.weight, self.temperature = weight, temperature

    def forward(self, teacher: DetectorOutput, student: DetectorOutput) -> Tensor:
        self.check(teacher, student)
        return self.weight * kd_kl_loss(student.response_logits, teacher.response_logits.detach(), self.temperature)


# The DistillConfig fields each method's loss reads (build_distill_loss below)
LOSS_FIELDS = {"pointdistiller": ("pointdistiller",), "fitnet": ("fitnet_weight",), "kd": ("kd_weight", "kd_temperature"),
               "none": ()}


def loss_settings(cfg: DistillConfig) -> dict:
    """The fields of ``cfg`` that the loss of ``cfg.method`` reads: configs that agree on them train alike."""
    return {"method": cfg.method, **{name: getattr(cfg, name) for name in LOSS_FIELDS[cfg.method]}}


def build_distill_loss(cfg: DistillConfig, teacher_channels: int, student_channels: int) -> DistillLoss | None:
    """The loss module of ``cfg.method`` (``None`` for ``"none"``); its adapters train with the student."""
    if cfg.method == "pointdistiller":
        return PointDistillerLoss(teacher_channels, student_channels, cfg.pointdistiller)
    if cfg.method == "fitnet":
        return FitNetLoss(teacher_channels, student_channels, cfg.fitnet_weight)
    if cfg.method == "kd":
        return ResponseKDLoss(teacher_channels, student_channels, cfg.kd_weight, cfg.kd_temperature)
    if cfg.method == "none":
        return None
    raise ValueError(f"unknown distillation method {cfg.method!r}; choose one of {METHODS}")


__all__ = ["METHODS", "PointDistillerConfig", "DistillConfig", "DistillLoss", "PointDistillerLoss", "FitNetLoss",
           "ResponseKDLoss", "build_distill_loss", "loss_settings"]
