"""Soft code assignment distillation (VQGraph, Yang et al. 2024).

A teacher embedding :math:`h^T_n` and a student embedding :math:`h^S_m` are both scored against one
codebook :math:`\\{c_k\\}_{k=1}^K` with the SAME similarity

.. math::
    \\mathrm{sim}_{cos}(x, c_k) = \\frac{x \\cdot c_k}{\\lVert x \\rVert \\lVert c_k \\rVert}
    \\qquad \\text{or} \\qquad
    \\mathrm{sim}_{L2}(x, c_k) = -\\lVert x - c_k \\rVert_2^2,

turned into soft assignments :math:`p(x) = \\mathrm{softmax}_k(\\mathrm{sim}(x, c_k) / \\tau)`, and
the student matches the teacher row of the same node:

.. math::
    \\mathcal{L}_{SCA} = \\frac{1}{M} \\sum_{m=1}^{M}
        \\mathrm{KL}\\big(p(h^T_{\\mathrm{index}_m}) \\,\\|\\, p(h^S_m)\\big).

The codebook and the teacher side are targets (detached); gradients reach the student embeddings.

Fixed with respect to the reference VQGraph code (``train_and_eval.py``), each one tested:

- the reference scores the student with :math:`-\\lVert x - c \\rVert_2` (``-torch.cdist``) while the
  teacher's stored assignments come from a different score, so a perfect student does not reach
  zero loss; here one ``similarity`` scores both sides;
- it passes probabilities as the target of ``KLDivLoss(log_target=True)``, which reads them as
  log-probabilities; here both sides are log-probabilities and ``log_target=True`` is right;
- it indexes the stored teacher assignments by a position in a subset of nodes as if it were a
  node id; here ``index`` holds node ids into ``teacher_emb`` and is checked against its size.
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from distillcore.checks import check_positive, check_same_size, check_tensor
from distillcore.kd import kl_per_row

Similarity = Literal["cosine", "l2"]
SIMILARITIES = ("cosine", "l2")
# Guards cosine normalisation against all-zero rows (F.normalize's default).
NORMALIZE_EPS = 1e-12


def _check_similarity(similarity: str) -> None:
    if similarity not in SIMILARITIES:
        raise ValueError(f"similarity must be one of {SIMILARITIES}, got {similarity!r}")


def _check_embeddings(x: Tensor, name: str, codebook: Tensor) -> None:
    check_tensor(x, name, ndim=2, floating=True)
    check_same_size({f"{name}.shape[1]": x.shape[1], "codebook.shape[1]": codebook.shape[1]}, "the embedding size d")


def _similarity(x: Tensor, codebook: Tensor, similarity: str) -> Tensor:
    if similarity == "cosine":
        return F.normalize(x, dim=-1, eps=NORMALIZE_EPS) @ F.normalize(codebook, dim=-1, eps=NORMALIZE_EPS).T
    # ||x - c||^2 = ||x||^2 - 2 x.c + ||c||^2 without the [N, K, d] difference tensor; clamp the
    # tiny negatives that cancellation can produce.
    squared = x.pow(2).sum(-1, keepdim=True) - 2.0 * x @ codebook.T + codebook.pow(2).sum(-1)
    return -squared.clamp_min(0.0)


def code_similarity(
    x: Tensor,  # [N, d]
    codebook: Tensor,  # [K, d]
    similarity: Similarity = "cosine",
) -> Tensor:  # [N, K]
    """Cosine similarity or negative squared L2 distance of every row of ``x`` to every code."""
    _check_similarity(similarity)
    check_tensor(codebook, "codebook", ndim=2, floating=True)
    _check_embeddings(x, "x", codebook)
    return _similarity(x, codebook, similarity)


def soft_code_assignment_kl(
    teacher_emb: Tensor,  # [N, d]
    student_emb: Tensor,  # [M, d]
    codebook: Tensor,  # [K, d]
    temperature: float,
    similarity: Similarity = "cosine",
    index: Tensor | None = None,  # [M] long, node ids into teacher_emb
) -> Tensor:  # []
    """Soft code assignment KL, see the module docstring for the formula.

    Args:
        teacher_emb: teacher node embeddings for all ``N`` nodes (target, detached).
        student_emb: student embeddings of the ``M`` nodes in the batch.
        codebook: the teacher's codebook (detached).
        temperature: softening temperature :math:`\\tau > 0` (the ``temperature`` of every other KD loss).
        similarity: ``"cosine"`` or ``"l2"`` (negative squared distance), used for both sides.
        index: node id of each student row in ``teacher_emb``; ``None`` means ``M == N`` and row
            ``m`` of the student is node ``m``.
    """
    _check_similarity(similarity)
    check_tensor(codebook, "codebook", ndim=2, floating=True)
    _check_embeddings(teacher_emb, "teacher_emb", codebook)
    _check_embeddings(student_emb, "student_emb", codebook)
    t = check_positive(temperature, "temperature")
    if index is None:
        check_same_size(
            {"teacher_emb.shape[0]": teacher_emb.shape[0], "student_emb.shape[0]": student_emb.shape[0]},
            "the number of nodes (pass index= to map student rows to teacher node ids)",
        )
        teacher_rows = teacher_emb
    else:
        check_tensor(index, "index", shape=(student_emb.shape[0],), dtype=(torch.int64, torch.int32))
        if bool((index < 0).any()) or bool((index >= teacher_emb.shape[0]).any()):
            raise ValueError(
                f"index must hold node ids in [0, {teacher_emb.shape[0]}) (teacher_emb.shape[0]), "
                f"got values in [{int(index.min())}, {int(index.max())}]"
            )
        teacher_rows = teacher_emb[index.long()]

    codebook = codebook.detach()
    teacher_log_probs = F.log_softmax(_similarity(teacher_rows.detach(), codebook, similarity) / t, dim=-1)
    student_log_probs = F.log_softmax(_similarity(student_emb, codebook, similarity) / t, dim=-1)
    return kl_per_row(student_log_probs, teacher_log_probs).mean()


__all__ = ["code_similarity", "soft_code_assignment_kl", "SIMILARITIES"]
