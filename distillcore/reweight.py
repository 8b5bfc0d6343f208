"""Reweighted structured feature loss (PointDistiller, Zhang et al. 2023).

Each of the ``N`` local structures (voxels or point groups) of sample ``b`` carries an importance
score :math:`s_{b,n}` (e.g. the teacher's detection confidence there). The weights

.. math::
    w_{b,n} = N \\cdot \\mathrm{softmax}_n(s_{b,n} / T)

average to 1 per sample, so uniform scores reduce the loss to the plain mean squared error, and
the loss is

.. math::
    \\mathcal{L} = \\frac{1}{B N C} \\sum_{b,n,c} w_{b,n} \\big(G^T_{b,n,c} - G^S_{b,n,c}\\big)^2 .

Weights and teacher features are targets (detached): the scores say where to look, they are not
trained through this loss. The reference PointDistiller code computes these weights for PointRCNN
but never multiplies them into the loss; here they always are (tested).
"""
from __future__ import annotations

import torch
from torch import Tensor

from distillcore.checks import check_positive, check_tensor


def importance_weights(
    scores: Tensor,  # [B, N]
    temperature: float,
) -> Tensor:  # [B, N]
    """:math:`w = N \\cdot \\mathrm{softmax}(s / T)` over the last dimension, detached."""
    check_tensor(scores, "scores", ndim=2, floating=True)
    t = check_positive(temperature, "temperature")
    return scores.shape[-1] * torch.softmax(scores.detach() / t, dim=-1)


def reweighted_structured_loss(
    teacher: Tensor,  # [B, N, C]
    student: Tensor,  # [B, N, C]
    scores: Tensor,  # [B, N]
    temperature: float,
) -> Tensor:  # []
    """Importance-reweighted MSE between teacher and student local features (formula above)."""
    check_tensor(teacher, "teacher", ndim=3, floating=True)
    check_tensor(student, "student", ndim=3, floating=True)
    if teacher.shape != student.shape:
        raise ValueError(
            f"teacher and student must have the same shape [B, N, C], got teacher {list(teacher.shape)} "
            f"and student {list(student.shape)}"
        )
    check_tensor(scores, "scores", shape=tuple(teacher.shape[:2]), floating=True)
    weights = importance_weights(scores, temperature)
    return (weights[..., None] * (teacher.detach() - student).pow(2)).mean()


__all__ = ["reweighted_structured_loss", "importance_weights"]
