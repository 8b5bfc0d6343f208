"""Structural similarity (SSIM, Wang et al. 2004) and the 3DGS photometric loss.

With a normalised Gaussian window :math:`g` (``window_size`` x ``window_size``, std ``sigma``),
local statistics :math:`\\mu_x = g * x`, :math:`\\sigma_x^2 = g * x^2 - \\mu_x^2`,
:math:`\\sigma_{xy} = g * (xy) - \\mu_x \\mu_y`, and :math:`C_1 = (K_1 L)^2`, :math:`C_2 = (K_2 L)^2`
for the data range :math:`L`:

.. math::
    \\mathrm{SSIM}(x, y) = \\operatorname{mean}_{c, i}
        \\frac{(2 \\mu_x \\mu_y + C_1)(2 \\sigma_{xy} + C_2)}
             {(\\mu_x^2 + \\mu_y^2 + C_1)(\\sigma_x^2 + \\sigma_y^2 + C_2)}

    \\mathcal{L}_{img} = (1 - \\lambda)\\, \\operatorname{mean} |\\hat{I} - I|
        + \\lambda\\, (1 - \\operatorname{mean}_b \\mathrm{SSIM}(\\hat{I}_b, I_b))

Padding: ``"valid"`` (default) evaluates the window only where it fits inside the image, giving an
``(H - w + 1) x (W - w + 1)`` SSIM map; this is the standard definition and matches
``pytorch_msssim.ssim`` to float round-off. ``"same"`` zero-pads by ``w // 2`` as the 3DGS code does,
so its numbers match papers built on 3DGS (borders then count, with a biased mean near the edge).

We implement SSIM instead of calling ``pytorch_msssim`` because it cannot do the 3DGS ``"same"``
variant and, on images smaller than the window, skips the smoothing with only a warning, where we
raise instead.
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from distillcore.checks import check_positive, check_tensor

SSIM_K1 = 0.01
SSIM_K2 = 0.03
SSIM_PADDINGS = ("valid", "same")
SSIMPadding = Literal["valid", "same"]


def gaussian_window_1d(window_size: int, sigma: float, dtype: torch.dtype, device: torch.device) -> Tensor:
    """Normalised 1-D Gaussian taps ``[window_size]`` centred on the middle tap."""
    coords = torch.arange(window_size, dtype=dtype, device=device) - window_size // 2
    taps = torch.exp(-coords.pow(2) / (2.0 * sigma * sigma))
    return taps / taps.sum()


def _gaussian_blur(x: Tensor, taps: Tensor, padding: str) -> Tensor:
    """Separable depth-wise blur of ``x [B, C, H, W]``; zero padding per pass equals the 2-D one."""
    channels, size = x.shape[1], taps.numel()
    pad = size // 2 if padding == "same" else 0
    vertical = taps.view(1, 1, size, 1).expand(channels, 1, size, 1)
    horizontal = taps.view(1, 1, 1, size).expand(channels, 1, 1, size)
    x = F.conv2d(x, vertical, padding=(pad, 0), groups=channels)
    return F.conv2d(x, horizontal, padding=(0, pad), groups=channels)


def _check_image_pair(pred: Tensor, target: Tensor) -> None:
    check_tensor(pred, "pred", ndim=4, floating=True)
    check_tensor(target, "target", ndim=4, floating=True)
    if pred.shape != target.shape:
        raise ValueError(f"pred and target must have the same shape, got {list(pred.shape)} and {list(target.shape)}")


def ssim(
    pred: Tensor,  # [B, C, H, W]
    target: Tensor,  # [B, C, H, W]
    window_size: int = 11,
    sigma: float = 1.5,
    data_range: float = 1.0,
    *,
    padding: SSIMPadding = "valid",
    k1: float = SSIM_K1,
    k2: float = SSIM_K2,
) -> Tensor:  # [B]
    """Mean SSIM per image, see the module docstring for the formula and the padding choice."""
    _check_image_pair(pred, target)
    if int(window_size) != window_size or window_size < 1 or window_size % 2 == 0:
        raise ValueError(f"window_size must be a positive odd integer, got {window_size}")
    check_positive(sigma, "sigma")
    check_positive(data_range, "data_range")
    if padding not in SSIM_PADDINGS:
        raise ValueError(f"padding must be one of {SSIM_PADDINGS}, got {padding!r}")
    if padding == "valid" and min(pred.shape[-2:]) < window_size:
        raise ValueError(
            f"pred is {pred.shape[-2]}x{pred.shape[-1]}, smaller than the {window_size}x{window_size} SSIM "
            f"window: use padding='same' or a smaller window_size"
        )
    taps = gaussian_window_1d(int(window_size), float(sigma), pred.dtype, pred.device)
    c1 = (k1 * data_range) ** 2
    c2 = (k2 * data_range) ** 2

    mu_x = _gaussian_blur(pred, taps, padding)
    mu_y = _gaussian_blur(target, taps, padding)
    mu_xx, mu_yy, mu_xy = mu_x * mu_x, mu_y * mu_y, mu_x * mu_y
    var_x = _gaussian_blur(pred * pred, taps, padding) - mu_xx
    var_y = _gaussian_blur(target * target, taps, padding) - mu_yy
    cov_xy = _gaussian_blur(pred * target, taps, padding) - mu_xy

    ssim_map = ((2 * mu_xy + c1) * (2 * cov_xy + c2)) / ((mu_xx + mu_yy + c1) * (var_x + var_y + c2))
    return ssim_map.flatten(1).mean(dim=1)


def image_loss(
    pred: Tensor,  # [B, C, H, W]
    target: Tensor,  # [B, C, H, W]
    lambda_dssim: float = 0.2,
    *,
    padding: SSIMPadding = "valid",
    data_range: float = 1.0,
) -> Tensor:  # []
    """3DGS photometric loss :math:`(1 - \\lambda) L_1 + \\lambda (1 - \\mathrm{SSIM})`."""
    _check_image_pair(pred, target)
    lam = float(lambda_dssim)
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"lambda_dssim must be in [0, 1], got {lambda_dssim}")
    l1 = (pred - target).abs().mean()
    return (1.0 - lam) * l1 + lam * (1.0 - ssim(pred, target, data_range=data_range, padding=padding).mean())


__all__ = ["ssim", "image_loss", "gaussian_window_1d", "SSIM_PADDINGS"]
