"""Training of the VQ-GNN teacher and of the MLP student (plain MLP, GLNN or VQGraph distillation).

Student objective (``DistillConfig``), over a mini-batch :math:`B` of nodes of the training graph with
labelled subset :math:`B_L`:

.. math::
    \\mathcal{L} = \\alpha\\, \\mathrm{CE}(B_L) + \\beta\\, T^2\\, \\mathrm{KL}\\big(p^T_T \\,\\|\\, p^S_T\\big)
        + \\gamma\\, \\mathrm{KL}\\big(\\mathrm{softmax}(\\mathrm{sim}(z^T, C)/\\tau) \\,\\|\\,
          \\mathrm{softmax}(\\mathrm{sim}(e^S, C)/\\tau)\\big),

with the teacher's class probabilities :math:`p^T`, its code vectors :math:`z^T` and codebook
:math:`C`. ``"mlp"`` keeps the CE term (:math:`\\alpha = 1`), ``"glnn"`` CE + soft labels, ``"vqgraph"``
all three (GLNN and VQGraph use :math:`\\alpha = 0`, see ``DistillConfig``).
"""
from __future__ import annotations

import os
import random
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from distillcore import dist
from distillcore.code_assignment import soft_code_assignment_kl
from distillcore.kd import kd_kl_loss
from graphdistill.vqgraph.config import DistillConfig, StudentConfig, TeacherConfig, TrainConfig
from graphdistill.vqgraph.fit import FitResult, average_gradients, fit
from graphdistill.vqgraph.student import MLPStudent
from graphdistill.vqgraph.teacher import VQGNNTeacher

StudentMode = Literal["mlp", "glnn", "vqgraph"]
STUDENT_MODES = ("mlp", "glnn", "vqgraph")


@dataclass
class TeacherTargets:
    """What the student distils, for every node of the training graph (row i = node i)."""

    logits: Tensor  # [N, C]
    embedding: Tensor  # [N, code_dim]
    codebook: Tensor  # [K, code_dim]
    similarity: str


@dataclass
class TeacherRun:
    model: VQGNNTeacher
    fit: FitResult
    targets: TeacherTargets
    codebook_usage: dict  # codes_used, perplexity over the training graph at the kept epoch


def accuracy(logits: Tensor, labels: Tensor) -> float:
    return float((logits.argmax(-1) == labels).float().mean()) if labels.numel() else float("nan")


def seed_everything(seed: int) -> None:
    """Seeds torch and Python's ``random`` (PyG's negative sampling draws from the latter)."""
    torch.manual_seed(seed)
    random.seed(seed)


def train_teacher(
    x: Tensor,  # [N, F] features of the training graph
    edge_index: Tensor,  # [2, E] its edges
    y: Tensor,  # [N] labels (only train and val entries are read)
    train_nodes: Tensor,  # [n_train]
    val_nodes: Tensor,  # [n_val]
    num_classes: int,
    config: TeacherConfig,
    train_config: TrainConfig,
    *,
    seed: int = 0,
    checkpoint: str | os.PathLike | None = None,
    progress: bool = True,
) -> TeacherRun:
    """Trains the teacher + tokenizer full-batch on the given graph; keeps the best validation epoch."""
    if edge_index.size(1) == 0:
        raise ValueError("the training graph has no edges: a GNN teacher needs a graph (train the 'mlp' student instead)")
    seed_everything(seed)
    model = VQGNNTeacher(x.size(1), num_classes, config)
    optimizer = torch.optim.Adam(model.parameters(), lr=train_config.lr, weight_decay=train_config.weight_decay)

    def step() -> float:
        model.train()
        optimizer.zero_grad()
        out = model(x, edge_index)
        loss = F.cross_entropy(out.logits[train_nodes], y[train_nodes])
        loss = loss + sum(model.tokenizer_loss(out, x, edge_index).values())
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    @torch.no_grad()
    def evaluate() -> tuple[float, float]:
        model.eval()
        logits = model(x, edge_index).logits[val_nodes]
        return accuracy(logits, y[val_nodes]), float(F.cross_entropy(logits, y[val_nodes]))

    result = fit(model, optimizer, step, evaluate, train_config, checkpoint=checkpoint,
                 desc=f"teacher ({config.architecture})", progress=progress)
    model.eval()
    model.quantizer.reset_usage()
    with torch.no_grad():
        out = model(x, edge_index)
    targets = TeacherTargets(out.logits, out.embedding, model.codebook.detach().clone(), config.similarity)
    return TeacherRun(model, result, targets, model.quantizer.usage())


def train_student(
    x: Tensor,  # [N, F] features of the training graph's nodes
    y: Tensor,  # [N] labels (only train and val entries are read)
    train_nodes: Tensor,  # [n_train]
    val_nodes: Tensor,  # [n_val]
    num_classes: int,
    mode: StudentMode,
    config: StudentConfig,
    distill: DistillConfig,
    train_config: TrainConfig,
    targets: TeacherTargets | None = None,
    *,
    seed: int = 0,
    checkpoint: str | os.PathLike | None = None,
    progress: bool = True,
) -> tuple[MLPStudent, FitResult]:
    """Trains an MLP student on node features; ``targets`` rows are the same nodes as ``x`` rows.

    ``"mlp"`` trains on the labelled nodes only; ``"glnn"`` and ``"vqgraph"`` also on the teacher's
    outputs for every node of the training graph. ``x`` and the targets may be memory-mapped arrays
    (``layerwise.load_targets``): only each batch's rows are read. Run on every rank of a
    ``distillcore.dist`` job, each rank trains on its shard of every batch and gradients are averaged
    (checkpoints only in a single process).
    """
    if mode not in STUDENT_MODES:
        raise ValueError(f"mode must be one of {STUDENT_MODES}, got {mode!r}")
    if mode != "mlp" and targets is None:
        raise ValueError(f"mode {mode!r} distils a teacher: pass targets=")
    if targets is not None and targets.logits.size(0) != x.size(0):
        raise ValueError(f"targets cover {targets.logits.size(0)} nodes but x has {x.size(0)} rows")
    seed_everything(seed)
    code_dim = targets.codebook.size(1) if mode == "vqgraph" else None
    student = MLPStudent(x.size(1), num_classes, config, code_dim)
    optimizer = torch.optim.Adam(student.parameters(), lr=train_config.lr, weight_decay=train_config.weight_decay)
    pool = train_nodes if mode == "mlp" else torch.arange(x.size(0))
    labelled = torch.zeros(x.size(0), dtype=torch.bool)
    labelled[train_nodes] = True

    def batch_loss(nodes: Tensor) -> Tensor:
        if mode == "vqgraph":
            logits, code_emb = student.forward_with_code(x[nodes])
        else:
            logits = student(x[nodes])
        mask = labelled[nodes]
        loss = logits.new_zeros(())
        ce_weight = 1.0 if mode == "mlp" else distill.ce_weight  # the baseline has no other term
        if ce_weight > 0 and bool(mask.any()):
            loss = loss + ce_weight * F.cross_entropy(logits[mask], y[nodes][mask])
        if mode != "mlp":
            loss = loss + distill.soft_label_weight * kd_kl_loss(logits, targets.logits[nodes], distill.temperature)
        if mode == "vqgraph":
            loss = loss + distill.code_weight * soft_code_assignment_kl(
                targets.embedding, code_emb, targets.codebook, distill.code_temperature, targets.similarity, index=nodes
            )
        return loss

    ctx, epoch = dist.context(), [0]

    def batches() -> list[Tensor]:
        if not ctx.distributed:
            return list(torch.randperm(pool.numel()).split(train_config.batch_size))
        # data-parallel over node shards: one permutation on every rank, rank r keeps every R-th node of a batch
        epoch[0] += 1
        order = torch.randperm(pool.numel(), generator=dist.rank_generator(seed * 100003 + epoch[0]))
        return [b[ctx.rank::ctx.world_size] for b in order.split(train_config.batch_size) if b.numel() >= ctx.world_size]

    def step() -> float:
        student.train()
        total, count = 0.0, 0
        for batch in batches():
            optimizer.zero_grad()
            loss = batch_loss(pool[batch])
            loss.backward()
            average_gradients(student)
            optimizer.step()
            total, count = total + float(loss.detach()), count + 1
        return total / count

    @torch.no_grad()
    def evaluate() -> tuple[float, float]:
        student.eval()
        logits = student(x[val_nodes])
        return accuracy(logits, y[val_nodes]), float(F.cross_entropy(logits, y[val_nodes]))

    result = fit(student, optimizer, step, evaluate, train_config, checkpoint=None if ctx.distributed else checkpoint,
                 desc=f"student ({mode})", progress=progress and ctx.is_main)
    return student.eval(), result
