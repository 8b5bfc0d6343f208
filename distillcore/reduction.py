"""Masked, weighted mean: how every per-sample loss in distillcore becomes one number.

.. math::
    \\bar{\\ell} = \\frac{\\sum_n m_n w_n \\ell_n}{\\sum_n m_n w_n}

with :math:`m_n \\in \\{0, 1\\}` the mask and :math:`w_n \\ge 0` the per-sample weight (both default
to 1). An empty selection (all masked out, or all weights zero) gives 0 with a gradient path intact,
so a batch without any supervised sample does not turn the training loss into NaN.
"""
from __future__ import annotations

import torch
from torch import Tensor

from distillcore.checks import check_tensor


def check_mask_and_weight(
    mask: Tensor | None,
    weight: Tensor | None,
    shape: tuple[int, ...],
    *,
    mask_name: str = "mask",
    weight_name: str = "weight",
) -> None:
    """Checks an optional bool ``mask`` and a non-negative ``weight`` of the given ``shape``."""
    if mask is not None:
        check_tensor(mask, mask_name, shape=shape, dtype=torch.bool)
    if weight is not None:
        check_tensor(weight, weight_name, shape=shape, floating=True)
        if bool((weight < 0).any()):
            raise ValueError(f"{weight_name} must be >= 0, got min {float(weight.min())}")


def masked_weighted_mean(
    values: Tensor,  # [*S]
    mask: Tensor | None = None,  # [*S] bool
    weight: Tensor | None = None,  # [*S]
) -> Tensor:  # []
    """The masked, weighted mean above. Shapes are validated by the caller (the public loss)."""
    w = torch.ones_like(values) if weight is None else weight.to(values.dtype)
    if mask is not None:
        w = w * mask.to(values.dtype)
        # where() rather than a product alone: a masked-out row whose loss overflowed to inf would
        # otherwise give 0 * inf = NaN.
        values = torch.where(mask, values, torch.zeros_like(values))
    total = w.sum()
    return (values * w).sum() / total.clamp_min(torch.finfo(values.dtype).tiny)


__all__ = ["masked_weighted_mean", "check_mask_and_weight"]
