"""Training, distillation, evaluation and checkpoints of the point-cloud detectors.

One loop serves teacher training, student training without KD, and distillation: with a teacher
the total loss is :math:`\\mathcal L_{det}(\\text{student}) + \\mathcal L_{KD}(\\text{teacher}, \\text{student})`,
the teacher frozen in eval mode and fed the very same preprocessed batch as the student. AdamW with a
one-cycle learning-rate schedule; checkpoints are written atomically (:mod:`distillcore.serialization`)
every ``checkpoint_every`` steps, hold only plain data (configs as dicts, RNG states as tensors / dicts
of ints; read with ``weights_only=True``) and training resumes from the last one.

**Several processes** (``torch.distributed``, :mod:`distillcore.dist`): data parallel over scans. Every
rank draws the same global batch from the same random streams (augmentation and point resampling run
on the whole batch, so the streams advance as on one rank) and trains on its ``batch_size / ranks``
scans; the student and the distillation adapters are wrapped in ``DistributedDataParallel`` (gradients
averaged), the frozen teacher is not (eval mode, a copy on each rank). BatchNorm layers become
:class:`.sync_batchnorm.RankSyncBatchNorm` for the run: ``torch.nn.SyncBatchNorm`` does not run on
CPU ranks, and per-rank statistics would make the result depend on the number of ranks. Losses
normalised by a count (positives, foreground points) divide by the count over all ranks
(:func:`.detector.rank_normalizer`), so with the statistics synchronised the ranks together optimise
exactly the single-process loss of the global batch. Rank 0 alone shows progress and writes
checkpoints. Evaluation splits the batches over the ranks and gathers the detections on rank 0,
which computes the AP once.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from distillcore import dist
from distillcore.checks import check_range
from distillcore.divergence import check_finite
from distillcore.runs import describe_mismatch
from distillcore.serialization import load_state, save_atomic

from distill3d.points.augment import AugmentConfig, GroundTruthDatabase, augment
from distill3d.points.detector import Detector, DetectorOutput, PostProcessConfig
from distill3d.points.distill import DistillConfig, build_distill_loss
from distill3d.points.metrics import DifficultyConfig, FrameResult, evaluate
from distill3d.points.pillars import PillarConfig, PillarDetector
from distill3d.points.point_detector import PointDetector, PointDetectorConfig
from distill3d.points.scan import Scan
from distill3d.points.sync_batchnorm import convert_rank_sync_batchnorm, revert_rank_sync_batchnorm

Family = Literal["pillars", "point"]
FAMILIES = ("pillars", "point")


@dataclass
class TrainConfig:
    # 2000 steps of 4 scans: at 1000 one seed in three of the 4x pillar student still stalled
    # (50 vs 77 BEV mAP); at 2000 the same seed reaches 83 (benchmarks/pointdistiller.py)
    steps: int = 2000
    batch_size: int = 4
    lr: float = 3e-3
    weight_decay: float = 1e-4
    warmup_fraction: float = 0.1
    grad_clip: float = 10.0
    seed: int = 0
    checkpoint_every: int = 100
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        """Raises ValueError naming the first field outside its range; ``train_detector`` calls it again."""
        check_range(self.steps, "steps", 1, integer=True)
        check_range(self.batch_size, "batch_size", 1, integer=True)
        check_range(self.lr, "lr", 0, low_open=True)
        check_range(self.weight_decay, "weight_decay", 0)
        check_range(self.warmup_fraction, "warmup_fraction", 0, 1, low_open=True, high_open=True)
        check_range(self.grad_clip, "grad_clip", 0, low_open=True)
        check_range(self.seed, "seed", 0, integer=True)
        check_range(self.checkpoint_every, "checkpoint_every", 1, integer=True)


def build_detector(family: Family, num_classes: int, width: float = 1.0) -> Detector:
    """A detector of ``family`` with default settings and channel multiplier ``width``."""
    if width <= 0:
        raise ValueError(f"width must be > 0, got {width}")
    if family == "pillars":
        return PillarDetector(PillarConfig(num_classes=num_classes, width=width))
    if family == "point":
        return PointDetector(PointDetectorConfig(num_classes=num_classes, width=width))
    raise ValueError(f"unknown detector family {family!r}; choose one of {FAMILIES}")


def family_of(model: Detector) -> Family:
    return "pillars" if isinstance(model, PillarDetector) else "point"


def _detector_from_config(family: Family, cfg: dict) -> Detector:
    cfg = dict(cfg)
    cfg["postprocess"] = PostProcessConfig(**cfg["postprocess"])
    return PillarDetector(PillarConfig(**cfg)) if family == "pillars" else PointDetector(PointDetectorConfig(**cfg))


def save_checkpoint(path: Path, model: Detector, meta: dict, **extra) -> None:
    """Writes ``path`` atomically: model config and weights, ``meta`` (class names, IoU thresholds,
    how it was trained) and any ``extra`` state (optimizer, step) for resuming."""
    state = {"family": family_of(model), "model_config": asdict(model.cfg), "state_dict": model.state_dict(), "meta": meta, **extra}
    save_atomic(state, path)


def load_checkpoint(path: Path) -> tuple[Detector, dict]:
    """``(detector in eval mode, checkpoint dict)``; clear errors for a missing or foreign file."""
    path = Path(path)
    state = load_state(path, what="detector checkpoint")
    if not isinstance(state, dict) or "family" not in state or "model_config" not in state:
        raise ValueError(f"{path} is not a distill3d points detector checkpoint")
    model = _detector_from_config(state["family"], state["model_config"])
    model.load_state_dict(state["state_dict"])
    return model.eval(), state


def _batch_tensors(scans: list[Scan], dtype: torch.dtype = torch.float32) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]:
    """Points (in the model's ``dtype``), boxes and labels of ``scans``."""
    return ([torch.from_numpy(s.points).to(dtype) for s in scans], [torch.from_numpy(s.boxes) for s in scans],
            [torch.from_numpy(s.labels) for s in scans])


def train_detector(
    model: Detector,
    scans: list[Scan],
    cfg: TrainConfig,
    checkpoint: Path | None = None,
    *,
    meta: dict | None = None,
    teacher: Detector | None = None,
    distill: DistillConfig | None = None,
    progress: bool = True,
) -> Detector:
    """Trains ``model`` on ``scans`` (distilling from ``teacher`` when given); resumes from
    ``checkpoint`` if it holds an unfinished run, and writes it as it goes."""
    cfg.validate()
    if not isinstance(scans, (list, tuple)) or not scans:
        raise ValueError(f"scans must be a non-empty list of Scan, got {type(scans).__name__}"
                         + (" (empty)" if isinstance(scans, (list, tuple)) else ""))
    for s in scans:
        s.validate()
        if s.labels.size and not 0 <= int(s.labels.min()) <= int(s.labels.max()) < model.num_classes:
            raise ValueError(f"scan {s.frame_id!r}: labels must be class ids 0..{model.num_classes - 1} of the "
                             f"{model.num_classes}-class model, got {int(s.labels.min())}..{int(s.labels.max())}")
    if teacher is not None and teacher.num_classes != model.num_classes:
        raise ValueError(f"the teacher has {teacher.num_classes} classes and the student {model.num_classes}: "
                         "distil between detectors of the same classes")
    ranks = dist.context()
    batch_size = min(cfg.batch_size, len(scans))
    if batch_size % ranks.world_size:
        raise ValueError(f"the batch of {batch_size} scans does not split evenly over {ranks.world_size} ranks: "
                         "choose a batch_size that is a multiple of the number of processes")
    share = slice(ranks.rank * batch_size // ranks.world_size, (ranks.rank + 1) * batch_size // ranks.world_size)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    generator = torch.Generator().manual_seed(cfg.seed)
    distill_loss = None
    if teacher is not None:
        if family_of(teacher) != family_of(model):
            raise ValueError(f"teacher is a {family_of(teacher)} detector, student a {family_of(model)} one: distill within a family")
        distill = distill or DistillConfig()
        distill_loss = build_distill_loss(distill, teacher.feature_channels, model.feature_channels)
        if distill_loss is not None:  # the adapters take the student's dtype (float64 students too)
            distill_loss = distill_loss.to(next(model.parameters()).dtype)
        teacher.eval().requires_grad_(False)
    if ranks.distributed:
        convert_rank_sync_batchnorm(model)
    params = list(model.parameters()) + (list(distill_loss.parameters()) if distill_loss is not None else [])
    optimizer = torch.optim.AdamW([p for p in params if p.requires_grad], lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.steps >= 3:
        # OneCycleLR divides by (warm-up steps - 1): a warm-up of one step or less (10 steps at 0.1) crashes it
        warmup = max(cfg.warmup_fraction, 2.0 / cfg.steps)
        schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=cfg.lr, total_steps=cfg.steps, pct_start=warmup)
    else:  # too short for a warm-up and a decay: a constant learning rate
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    database = GroundTruthDatabase.from_scans(scans) if cfg.augment.gt_sampling else None
    meta = dict(meta or {}, train_config=asdict(cfg), distill=asdict(distill) if distill_loss is not None else None)

    start = 0
    if checkpoint is not None and Path(checkpoint).is_file():
        state = load_state(checkpoint, what="detector checkpoint")
        if not isinstance(state, dict):
            raise ValueError(f"{checkpoint} is not a distill3d points detector checkpoint")
        stored, current = (state.get("meta") or {}).get("fingerprint"), meta.get("fingerprint")
        if stored is not None and current is not None:  # meta["fingerprint"]: distillcore.runs.run_fingerprint
            problem = describe_mismatch(stored, current)
            if problem:
                raise ValueError(f"{checkpoint} {problem}; use another --out or --overwrite")
        if state.get("step", cfg.steps) < cfg.steps and "optimizer" in state:
            model.load_state_dict(state["state_dict"])
            optimizer.load_state_dict(state["optimizer"])
            schedule.load_state_dict(state["schedule"])
            if distill_loss is not None and state.get("distill_state") is not None:
                distill_loss.load_state_dict(state["distill_state"])
            rng.bit_generator.state = state["numpy_rng"]
            generator.set_state(state["torch_rng"])
            start = state["step"]

    def save(step: int) -> None:
        if checkpoint is not None and ranks.is_main:
            save_checkpoint(checkpoint, model, meta, step=step, optimizer=optimizer.state_dict(), schedule=schedule.state_dict(),
                            distill_state=distill_loss.state_dict() if distill_loss is not None else None,
                            numpy_rng=rng.bit_generator.state, torch_rng=generator.get_state())

    model.train()
    # DDP broadcasts rank 0's weights once here; only modules with trainable parameters are wrapped
    student = DistributedDataParallel(model) if ranks.distributed else model
    adapters = distill_loss
    if ranks.distributed and distill_loss is not None and any(p.requires_grad for p in distill_loss.parameters()):
        adapters = DistributedDataParallel(distill_loss)
    bar = tqdm(range(start, cfg.steps), desc="distill" if teacher is not None else "train",
               disable=not (progress and ranks.is_main), initial=start, total=cfg.steps)
    for step in bar:
        picks = rng.choice(len(scans), size=batch_size, replace=False)
        batch = [augment(scans[i], cfg.augment, rng, database) for i in picks]
        points, boxes, labels = _batch_tensors(batch, next(model.parameters()).dtype)
        inputs = model.preprocess(points, generator)[share]
        boxes, labels = boxes[share], labels[share]
        out = student(inputs)
        losses = model.loss(out, boxes, labels)
        if distill_loss is not None:
            with torch.no_grad():
                teacher_out: DetectorOutput = teacher(inputs, distill_only=True)
            losses["kd"] = adapters(teacher_out, out)
        total = sum(losses.values())
        check_finite(step + 1, {"total loss": total, **losses} if not torch.isfinite(total) else None,
                     checkpoint=checkpoint, hint="lower the learning rate (--lr)")
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        optimizer.step()
        schedule.step()
        bar.set_postfix({k: f"{v.item():.3f}" for k, v in losses.items()})
        if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == cfg.steps:
            save(step + 1)
    if ranks.distributed:
        revert_rank_sync_batchnorm(model)
        dist.barrier()  # rank 0's last checkpoint is on disk before any rank returns
    return model.eval()


@torch.no_grad()
def predict(model: Detector, scans: list[Scan], batch_size: int = 4, seed: int = 0) -> list[FrameResult] | None:
    """Detections of ``model`` on ``scans`` next to their ground truth, in scan order.

    The point resampling of the batch starting at scan ``i`` is seeded with ``seed + i``, so the result
    does not depend on how batches are split over ranks. Under ``torch.distributed`` each rank predicts
    every ``world_size``-th batch and rank 0 gathers them: it returns all frames, the other ranks ``None``.
    """
    model.eval()
    ranks = dist.context()
    mine = {}
    for i in range(ranks.rank * batch_size, len(scans), batch_size * ranks.world_size):
        chunk = scans[i : i + batch_size]
        points, _, _ = _batch_tensors(chunk, next(model.parameters()).dtype)
        detections = model.decode(model(model.preprocess(points, dist.rank_generator(seed + i))))
        mine[i] = [FrameResult(det.boxes.numpy(), det.scores.numpy(), det.labels.numpy(), scan.boxes, scan.labels, scan.occlusion)
                   for scan, det in zip(chunk, detections)]
    gathered = dist.gather_objects(mine)
    if gathered is None:
        return None
    batches = {start: frames for part in gathered for start, frames in part.items()}
    return [frame for start in sorted(batches) for frame in batches[start]]


def evaluate_detector(model: Detector, scans: list[Scan], class_names: tuple[str, ...], iou_thresholds: tuple[float, ...],
                      difficulty: DifficultyConfig | None = None, batch_size: int = 4) -> dict[str, float]:
    """KITTI-style AP (R40, percent) of ``model`` on ``scans``, see :func:`.metrics.evaluate`. Under
    ``torch.distributed`` the ranks share the prediction, rank 0 computes the AP once and every rank
    returns it."""
    frames = predict(model, scans, batch_size)
    results = evaluate(frames, class_names, iou_thresholds, difficulty) if frames is not None else None
    return dist.broadcast_object(results)


__all__ = ["FAMILIES", "TrainConfig", "build_detector", "family_of", "save_checkpoint", "load_checkpoint",
           "train_detector", "predict", "evaluate_detector"]
