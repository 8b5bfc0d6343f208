"""Editing a feature field by a query: select Gaussians whose feature matches, then delete, extract
or recolor them.

    selected_i  <=>  cos(f_i, q) >= threshold,   f_i = the i-th Gaussian's feature in the teacher space

(with the speed-up decoder, ``f_i`` is the decoded feature ``W f_low,i + b``: the decoder is linear
and per pixel, so this is the feature the Gaussian contributes to rendered maps).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from distillcore.checks import check_range, check_tensor
from distill3d.fields.field import FeatureField
from distill3d.gaussians import Gaussians, rgb_to_sh0


def select_gaussians(features: Tensor, query: Tensor, threshold: float) -> Tensor:
    """Boolean ``[N]``: Gaussians with ``cos(features_i, query) >= threshold``. ``features [N, D]``, ``query [D]``."""
    check_tensor(features, "features", ndim=2, floating=True, nonempty=False)
    check_tensor(query, "query", shape=(features.shape[1],), floating=True)
    check_range(threshold, "threshold (a cosine similarity)", -1, 1)  # NaN too: it would select nothing
    return F.cosine_similarity(features, query[None], dim=1, eps=1e-8) >= threshold


def _subset(field: FeatureField, keep: Tensor) -> FeatureField:
    return field.with_gaussians(Gaussians.from_params({k: v.detach()[keep] for k, v in field.splats.items()}))


def _check_selection(field: FeatureField, selected: Tensor) -> None:
    check_tensor(selected, "selected", shape=(field.num_gaussians,), dtype=torch.bool, nonempty=False)


def delete(field: FeatureField, selected: Tensor) -> FeatureField:
    """A new field without the ``selected [N]`` Gaussians."""
    _check_selection(field, selected)
    return _subset(field, ~selected)


def extract(field: FeatureField, selected: Tensor) -> FeatureField:
    """A new field with only the ``selected [N]`` Gaussians."""
    _check_selection(field, selected)
    return _subset(field, selected)


def recolor(field: FeatureField, selected: Tensor, rgb: tuple[float, float, float]) -> FeatureField:
    """A new field where the ``selected`` Gaussians have the constant colour ``rgb`` (view-independent)."""
    _check_selection(field, selected)
    color = torch.tensor(rgb, dtype=torch.float32)
    if color.shape != (3,) or bool((color < 0).any() or (color > 1).any()):
        raise ValueError(f"rgb must be three values in [0, 1], got {rgb}")
    out = _subset(field, torch.ones_like(selected))
    with torch.no_grad():
        out.splats["sh0"][selected] = rgb_to_sh0(color)[None, None, :]
        out.splats["shN"][selected] = 0.0
    return out
