"""The VQGraph stages for graphs past full-batch memory, on ``nproc`` local ranks (or a torchrun job).

1. mini-batch teacher (``minibatch``), data-parallel over seed shards;
2. layer-wise inference of the teacher over all nodes in chunks (``layerwise``) on rank 0, written as
   memory-mapped ``logits.npy`` / ``embedding.npy`` / ``codes.npy`` with the weights ``teacher.pt``;
3. each MLP student (``trainer.train_student``), data-parallel over node shards, reading those files.

Ranks hand results back through files (a tensor returned from a spawned rank is shared memory that
dies with the rank): stage 1 returns the fit history and the paths of stage 2, stage 3 saves each
student with ``MLPStudent.save``.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from distillcore import dist
from distillcore.serialization import load_state, save_atomic
from graphdistill.sampling import CSRGraph, NeighborSampler
from graphdistill.vqgraph.config import VQGraphConfig
from graphdistill.vqgraph.layerwise import LayerwiseOutputs, layerwise_inference, load_targets
from graphdistill.vqgraph.minibatch import classify_block, encode_blocks, train_teacher_minibatch
from graphdistill.vqgraph.student import MLPStudent
from graphdistill.vqgraph.teacher import VQGNNTeacher
from graphdistill.vqgraph.trainer import TeacherRun, train_student


def _teacher_rank(x, csr, y, train_nodes, val_nodes, num_classes, config: VQGraphConfig, seed, work: Path,
                  checkpoint, progress):
    teacher, result = train_teacher_minibatch(x, csr, y, train_nodes, val_nodes, num_classes, config.teacher,
                                              config.teacher_train, config.minibatch, seed=seed,
                                              checkpoint=checkpoint, progress=progress)
    if not dist.is_main():
        return None
    outputs = layerwise_inference(teacher, x, csr, work, config.minibatch.chunk_size)
    save_atomic(teacher.state_dict(), work / "teacher.pt")
    return result, outputs


def train_teacher_scaled(
    x: Tensor,  # [N, F]
    csr: CSRGraph,
    y: Tensor,  # [N]
    train_nodes: Tensor,
    val_nodes: Tensor,
    num_classes: int,
    config: VQGraphConfig,
    work: str | Path,
    *,
    nproc: int = 1,
    dist_timeout_s: float = dist.DEFAULT_TIMEOUT_S,
    seed: int = 0,
    checkpoint: str | Path | None = None,
    progress: bool = True,
) -> TeacherRun:
    """Stages 1-2 (module docstring); the returned targets are memory-mapped from ``work``."""
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    result, outputs = dist.launch(_teacher_rank, nproc, x, csr, y, train_nodes, val_nodes, num_classes, config, seed,
                                  work, checkpoint, progress, timeout_s=dist_timeout_s)
    teacher = VQGNNTeacher(x.shape[1], num_classes, config.teacher)
    teacher.load_state_dict(load_state(work / "teacher.pt", what="teacher weights"))
    targets = load_targets(outputs, teacher.codebook, config.teacher.similarity)
    return TeacherRun(teacher.eval(), result, targets, outputs.codebook_usage)


def _student_rank(x, y, train_nodes, val_nodes, num_classes, mode, config: VQGraphConfig, outputs: LayerwiseOutputs,
                  codebook, seed, checkpoint, path: Path, progress):
    targets = load_targets(outputs, codebook, config.teacher.similarity) if mode != "mlp" else None
    student, result = train_student(x, y, train_nodes, val_nodes, num_classes, mode, config.student, config.distill,
                                    config.student_train, targets, seed=seed, checkpoint=checkpoint, progress=progress)
    if dist.is_main():
        student.save(path)
        return result


def train_student_scaled(x, y, train_nodes, val_nodes, num_classes: int, mode: str, config: VQGraphConfig,
                         teacher: TeacherRun, work: str | Path, *, nproc: int = 1,
                         dist_timeout_s: float = dist.DEFAULT_TIMEOUT_S, seed: int = 0,
                         checkpoint=None, progress: bool = True):
    """Stage 3 for one student ``mode`` on ``nproc`` ranks; returns ``(student, FitResult)``."""
    path = Path(work) / f"student_{mode}.pt"
    outputs = LayerwiseOutputs(*(Path(work) / name for name in ("logits.npy", "embedding.npy", "codes.npy")),
                               teacher.codebook_usage)
    result = dist.launch(_student_rank, nproc, x, y, train_nodes, val_nodes, num_classes, mode, config, outputs,
                         teacher.targets.codebook, seed, checkpoint, path, progress, timeout_s=dist_timeout_s)
    return MLPStudent.load(path).eval(), result


@torch.no_grad()
def exact_teacher_logits(teacher: VQGNNTeacher, x: Tensor, csr: CSRGraph, nodes: Tensor,
                         batch_size: int = 4096) -> Tensor:  # [n, C]
    """The teacher's logits of ``nodes`` from their whole ``L``-hop neighbourhoods (no sampling): for a few
    nodes (held-out ones) without a full-graph forward."""
    teacher.eval()
    sampler, degree = NeighborSampler(csr, (-1,) * teacher.config.num_layers), csr.degree()
    parts = []
    for chunk in nodes.split(batch_size):
        sub = sampler.sample(chunk)
        quantized = teacher.quantizer(encode_blocks(teacher, sub, x, degree)).quantized
        parts.append(classify_block(teacher, quantized, sub, degree))
    return torch.cat(parts) if parts else x.new_zeros(0, teacher.num_classes)


__all__ = ["exact_teacher_logits", "train_student_scaled", "train_teacher_scaled"]
