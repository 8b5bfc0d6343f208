"""distillcore: the loss core shared by distill3d and graphdistill. It imports neither sibling.

The public names below load their module on first use (PEP 562): ``vector-quantize-pytorch`` takes
seconds to import, and code that only needs ``distillcore.checks`` should not pay for it.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

_LAZY_EXPORTS = {
    # even the checks (they import torch): `distill3d --help` imports distillcore.cli and no torch
    "check_tensor": "distillcore.checks",
    "check_same_size": "distillcore.checks",
    "check_positive": "distillcore.checks",
    "masked_weighted_mean": "distillcore.reduction",
    "kd_kl_loss": "distillcore.kd",
    "kl_per_row": "distillcore.kd",
    "feature_distill_loss": "distillcore.feature",
    "resize_to": "distillcore.feature",
    "ssim": "distillcore.image",
    "image_loss": "distillcore.image",
    "code_similarity": "distillcore.code_assignment",
    "soft_code_assignment_kl": "distillcore.code_assignment",
    "reweighted_structured_loss": "distillcore.reweight",
    "importance_weights": "distillcore.reweight",
    "QuantizerConfig": "distillcore.quantize",
    "QuantizerOutput": "distillcore.quantize",
    "VectorQuantizer": "distillcore.quantize",
    "exponential_decay": "distillcore.schedule",
    "linear_warmup": "distillcore.schedule",
    "progress_ramp": "distillcore.schedule",
    "ExponentialDecayConfig": "distillcore.schedule",
}

if TYPE_CHECKING:
    from distillcore.checks import check_positive, check_same_size, check_tensor
    from distillcore.code_assignment import code_similarity, soft_code_assignment_kl
    from distillcore.feature import feature_distill_loss, resize_to
    from distillcore.image import image_loss, ssim
    from distillcore.kd import kd_kl_loss, kl_per_row
    from distillcore.quantize import QuantizerConfig, QuantizerOutput, VectorQuantizer
    from distillcore.reduction import masked_weighted_mean
    from distillcore.reweight import importance_weights, reweighted_structured_loss
    from distillcore.schedule import ExponentialDecayConfig, exponential_decay, linear_warmup, progress_ramp


def __getattr__(name: str):
    module = _LAZY_EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'distillcore' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [*_LAZY_EXPORTS]
