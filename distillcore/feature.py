"""Feature-distillation losses between a student and a teacher feature map, and grid resizing.

Per location :math:`i` (a pixel of a ``[B, C, H, W]`` map or a row of an ``[N, C]`` set) with
student feature :math:`s_i \\in \\mathbb{R}^C` and teacher feature :math:`t_i`:

.. math::
    \\ell^{L1}_i = \\tfrac{1}{C} \\lVert s_i - t_i \\rVert_1, \\qquad
    \\ell^{MSE}_i = \\tfrac{1}{C} \\lVert s_i - t_i \\rVert_2^2, \\qquad
    \\ell^{cos}_i = 1 - \\frac{s_i}{\\max(\\lVert s_i \\rVert, \\epsilon)} \\cdot
                        \\frac{t_i}{\\max(\\lVert t_i \\rVert, \\epsilon)}

and the loss is their masked, weighted mean over locations (:mod:`distillcore.reduction`):
:math:`\\sum_i m_i w_i \\ell_i / \\sum_i m_i w_i`. Without mask and weight, L1 and MSE equal the
plain element mean (Feature 3DGS's ``l1_loss``).

:func:`resize_to` brings a student map onto the teacher's grid with ``F.interpolate``. With
``align_corners=False`` (the default) a pixel is a unit square and pixel centres map as
:math:`x_{src} = (x_{dst} + 0.5)\\, h / H - 0.5`, the right model for CNN feature maps whose cells
cover image patches; ``align_corners=True`` pins the centres of the corner pixels together,
:math:`x_{src} = x_{dst} (h - 1) / (H - 1)`. The choice is explicit because the two disagree by up to
half a source pixel.
"""
from __future__ import annotations

from typing import Literal

import torch.nn.functional as F
from torch import Tensor

from distillcore.checks import check_tensor
from distillcore.reduction import check_mask_and_weight, masked_weighted_mean

FeatureLossKind = Literal["l1", "mse", "cosine"]
FEATURE_LOSS_KINDS = ("l1", "mse", "cosine")
# Guards the cosine denominator against all-zero features (same default as F.cosine_similarity).
COSINE_EPS = 1e-8
RESIZE_MODES = ("bilinear", "bicubic", "nearest", "area")


def _per_location_loss(student: Tensor, teacher: Tensor, kind: str, channel_dim: int) -> Tensor:
    if kind == "l1":
        return (student - teacher).abs().mean(dim=channel_dim)
    if kind == "mse":
        return (student - teacher).pow(2).mean(dim=channel_dim)
    return 1.0 - F.cosine_similarity(student, teacher, dim=channel_dim, eps=COSINE_EPS)


def _location_shaped(x: Tensor | None, name: str, location_shape: tuple[int, ...]) -> Tensor | None:
    """Accepts a map mask/weight as ``[B, H, W]`` or ``[B, 1, H, W]`` and returns ``[B, H, W]``."""
    if not isinstance(x, Tensor):
        return x  # None, or a non-tensor that check_tensor reports by name
    if len(location_shape) == 3 and x.dim() == 4:
        if x.shape[1] != 1:
            raise ValueError(f"{name} must have shape [B, 1, H, W] or [B, H, W], got {list(x.shape)}")
        return x[:, 0]
    return x


def feature_distill_loss(
    student: Tensor,  # [B, C, H, W] or [N, C]
    teacher: Tensor,  # same shape as student
    kind: FeatureLossKind = "l1",
    *,
    mask: Tensor | None = None,  # [B, 1, H, W] / [B, H, W] or [N], bool
    weight: Tensor | None = None,  # same shape as mask
) -> Tensor:  # []
    """Feature-distillation loss, see the module docstring for the formulas.

    Args:
        student: student features, channels in dim 1: ``[B, C, H, W]`` maps or ``[N, C]`` rows.
        teacher: teacher features of the same shape (resize first with :func:`resize_to`).
        kind: ``"l1"``, ``"mse"`` or ``"cosine"``.
        mask: locations that take part, ``[B, 1, H, W]`` / ``[B, H, W]`` for maps, ``[N]`` for rows.
        weight: non-negative per-location weights, same shapes as ``mask``.

    Returns:
        The scalar loss; 0 when no location is selected.
    """
    if kind not in FEATURE_LOSS_KINDS:
        raise ValueError(f"kind must be one of {FEATURE_LOSS_KINDS}, got {kind!r}")
    check_tensor(student, "student", ndim=(2, 4), floating=True)
    check_tensor(teacher, "teacher", ndim=(2, 4), floating=True)
    if student.shape != teacher.shape:
        raise ValueError(
            f"student and teacher must have the same shape, got student {list(student.shape)} and "
            f"teacher {list(teacher.shape)} (resize the student map with distillcore.feature.resize_to)"
        )
    location_shape = (student.shape[0],) + tuple(student.shape[2:])
    mask = _location_shaped(mask, "mask", location_shape)
    weight = _location_shaped(weight, "weight", location_shape)
    check_mask_and_weight(mask, weight, location_shape)
    return masked_weighted_mean(_per_location_loss(student, teacher, kind, channel_dim=1), mask, weight)


def resize_to(
    student_map: Tensor,  # [B, C, h, w]
    size: tuple[int, int],  # (H, W)
    mode: str = "bilinear",
    align_corners: bool | None = False,
) -> Tensor:  # [B, C, H, W]
    """Resamples ``student_map`` onto an ``H x W`` grid (see the module docstring for the geometry).

    ``align_corners`` applies to ``"bilinear"`` and ``"bicubic"`` only; pass ``None`` for
    ``"nearest"`` and ``"area"``.
    """
    check_tensor(student_map, "student_map", ndim=4, floating=True)
    if mode not in RESIZE_MODES:
        raise ValueError(f"mode must be one of {RESIZE_MODES}, got {mode!r}")
    if not isinstance(size, (tuple, list)) or len(size) != 2 or any(int(s) != s or s <= 0 for s in size):
        raise ValueError(f"size must be two positive integers (H, W), got {size!r}")
    interpolating = mode in ("bilinear", "bicubic")
    if interpolating and align_corners is None:
        raise ValueError(f"align_corners must be True or False for mode={mode!r}")
    if not interpolating and align_corners is not None:
        raise ValueError(f"align_corners must be None for mode={mode!r}, got {align_corners}")
    size_hw = (int(size[0]), int(size[1]))
    if tuple(student_map.shape[-2:]) == size_hw:
        return student_map
    return F.interpolate(student_map, size=size_hw, mode=mode, align_corners=align_corners)


__all__ = ["feature_distill_loss", "resize_to", "FEATURE_LOSS_KINDS"]
