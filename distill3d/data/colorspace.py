"""sRGB transfer functions (IEC 61966-2-1), for numpy arrays and torch tensors alike.

The renderer works in linear radiance; 8-bit PNGs store sRGB-encoded values:

    srgb(x)   = 12.92 x                      for x <= 0.0031308
              = 1.055 x^(1/2.4) - 0.055      otherwise
    linear(s) = s / 12.92                    for s <= 0.04045
              = ((s + 0.055) / 1.055)^2.4    otherwise

Values are clipped to [0, 1] first: radiance above 1 saturates like a camera's sensor.
"""
from __future__ import annotations

import numpy as np
import torch

_LINEAR_KNEE = 0.0031308
_SRGB_KNEE = 0.04045


def _where(x):
    return torch.where if isinstance(x, torch.Tensor) else np.where


def linear_to_srgb(x):
    """Linear values (array or tensor, any shape) -> sRGB-encoded values in [0, 1]."""
    x = x.clip(0.0, 1.0)
    # the power's argument is clipped away from 0 so its gradient stays finite on the linear branch
    return _where(x)(x <= _LINEAR_KNEE, 12.92 * x, 1.055 * x.clip(_LINEAR_KNEE, None) ** (1.0 / 2.4) - 0.055)


def srgb_to_linear(s):
    """sRGB-encoded values in [0, 1] (array or tensor, any shape) -> linear values in [0, 1]."""
    s = s.clip(0.0, 1.0)
    return _where(s)(s <= _SRGB_KNEE, s / 12.92, ((s + 0.055) / 1.055) ** 2.4)
