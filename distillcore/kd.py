"""Knowledge-distillation KL divergence with temperature (Hinton et al., 2015).

.. math::
    \\mathcal{L}_{KD} = T^2 \\, \\frac{\\sum_n m_n w_n \\,
        \\mathrm{KL}\\big(\\mathrm{softmax}(t_n / T) \\,\\|\\, \\mathrm{softmax}(s_n / T)\\big)}
        {\\sum_n m_n w_n},
    \\qquad
    \\mathrm{KL}(p \\,\\|\\, q) = \\sum_k p_k (\\log p_k - \\log q_k)

for student logits :math:`s_n`, teacher logits :math:`t_n`, mask :math:`m_n` and per-sample weight
:math:`w_n`. The :math:`T^2` factor keeps the gradient magnitude independent of :math:`T` (the soft
targets' gradients scale as :math:`1/T^2`), so the loss can be mixed with a hard-label loss
without retuning its weight when :math:`T` changes.

With ``log_probs=True`` both inputs are already log-probabilities (e.g. a cached ``log_softmax`` of
the teacher): they are used as given, the temperature does not divide them, and :math:`T^2` still
scales the result (pass ``temperature=1`` for a plain KL).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from distillcore.checks import check_positive, check_same_size, check_tensor
from distillcore.reduction import check_mask_and_weight, masked_weighted_mean

# Largest |logsumexp| accepted for rows that claim to be log-probabilities: float32 round-off on a
# few thousand classes stays well below the first; half precision gets a few ulps of its own.
LOG_PROB_NORMALIZATION_TOL = 1e-3
LOG_PROB_NORMALIZATION_ULPS = 16


def kl_per_row(
    student_log_probs: Tensor,  # [N, K]
    teacher_log_probs: Tensor,  # [N, K]
) -> Tensor:  # [N]
    """:math:`\\mathrm{KL}(p_t \\,\\|\\, p_s)` per row, both sides given as log-probabilities.

    ``F.kl_div(input, target)`` computes KL(target || input) and takes ``input`` as
    log-probabilities; ``log_target=True`` says the *target* is a log-probability as well. Passing
    a log-probability target without it would read it as a probability and return a wrong value.
    """
    return F.kl_div(student_log_probs, teacher_log_probs, reduction="none", log_target=True).sum(dim=-1)


def _check_log_probs(x: Tensor, name: str) -> None:
    worst = float(torch.logsumexp(x.detach().float(), dim=-1).abs().max())
    tolerance = max(LOG_PROB_NORMALIZATION_TOL, LOG_PROB_NORMALIZATION_ULPS * torch.finfo(x.dtype).eps)
    if worst > tolerance:
        raise ValueError(
            f"{name} must hold log-probabilities when log_probs=True (each row's logsumexp = 0), "
            f"got a row with |logsumexp| = {worst:.3g}"
        )


def kd_kl_loss(
    student_logits: Tensor,  # [N, K]
    teacher_logits: Tensor,  # [N, K]
    temperature: float = 1.0,
    *,
    log_probs: bool = False,
    mask: Tensor | None = None,  # [N] bool
    weight: Tensor | None = None,  # [N]
) -> Tensor:  # []
    """Temperature-scaled KD loss, see the module docstring for the formula.

    Args:
        student_logits: student scores (or log-probabilities with ``log_probs=True``), ``[N, K]``.
        teacher_logits: teacher scores (or log-probabilities), ``[N, K]``. Treated as the target:
            gradients flow to it only if the caller did not detach it.
        temperature: softening temperature :math:`T > 0`.
        log_probs: inputs are already log-probabilities; the temperature then only sets the
            :math:`T^2` factor.
        mask: rows that take part, ``[N]`` bool.
        weight: non-negative per-row weights, ``[N]``.

    Returns:
        The scalar loss; 0 when no row is selected.
    """
    check_tensor(student_logits, "student_logits", ndim=2, floating=True)
    check_tensor(teacher_logits, "teacher_logits", ndim=2, floating=True)
    check_same_size(
        {"student_logits.shape[0]": student_logits.shape[0], "teacher_logits.shape[0]": teacher_logits.shape[0]},
        "the number of rows N",
    )
    check_same_size(
        {"student_logits.shape[1]": student_logits.shape[1], "teacher_logits.shape[1]": teacher_logits.shape[1]},
        "the number of classes K",
    )
    t = check_positive(temperature, "temperature")
    check_mask_and_weight(mask, weight, (student_logits.shape[0],))

    if log_probs:
        _check_log_probs(student_logits, "student_logits")
        _check_log_probs(teacher_logits, "teacher_logits")
        student_log_probs, teacher_log_probs = student_logits, teacher_logits
    else:
        student_log_probs = F.log_softmax(student_logits / t, dim=-1)
        teacher_log_probs = F.log_softmax(teacher_logits / t, dim=-1)
    per_row = kl_per_row(student_log_probs, teacher_log_probs)
    return t * t * masked_weighted_mean(per_row, mask, weight)


__all__ = ["kd_kl_loss", "kl_per_row"]
