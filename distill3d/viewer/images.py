"""Turning rendered maps into the RGB frames the viewer sends: depth colour map, scalar maps, mask overlay.

Depth is shown through matplotlib's ``turbo`` map after a robust normalisation over covered pixels:

    t = clip((z - q_lo) / (q_hi - q_lo), 0, 1),   q_lo, q_hi = the 1% / 99% quantiles of z where alpha > 0.5

The selection overlay blends a highlight colour into the selected pixels:

    out = (1 - s m) I + s m c,    m in {0, 1} the mask, s = ``OverlayConfig.strength``
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

DEPTH_QUANTILE = 0.01  # robust to a few floaters far behind the scene


@dataclass(frozen=True)
class OverlayConfig:
    color: tuple[float, float, float] = (1.0, 0.35, 0.0)  # highlight (orange: apart from most scene colours)
    strength: float = 0.5


def colorize_depth(depth: Tensor, alpha: Tensor, background: Tensor) -> Tensor:
    """``depth [1, H, W]`` (expected depth), ``alpha [1, H, W]`` -> RGB ``[3, H, W]`` in [0, 1] (turbo; the
    background colour where nothing is covered)."""
    from matplotlib import colormaps

    covered = alpha[0] > 0.5
    z = depth[0]
    if bool(covered.any()):
        values = z[covered].float()
        if values.numel() > 65536:  # torch.quantile has an input-size limit; a strided subsample suffices
            values = values[:: -(-values.numel() // 65536)]
        low, high = torch.quantile(values, torch.tensor([DEPTH_QUANTILE, 1 - DEPTH_QUANTILE]))
    else:
        low, high = z.min(), z.max()
    t = ((z - low) / (high - low).clamp_min(1e-8)).clamp(0, 1)
    lut = torch.from_numpy(colormaps["turbo"](torch.linspace(0, 1, 256).numpy())[:, :3]).float()
    rgb = lut[(t * 255).round().long()].permute(2, 0, 1)
    return torch.where(covered[None], rgb, background.float()[:, None, None])


def gray(image: Tensor) -> Tensor:
    """``[1, H, W]`` -> ``[3, H, W]`` (a scalar map shown in grey levels)."""
    return image.expand(3, -1, -1)


def overlay_mask(image: Tensor, mask: Tensor, config: OverlayConfig = OverlayConfig()) -> Tensor:
    """``image [3, H, W]`` with ``mask [H, W]`` (bool) highlighted (formula in the module doc)."""
    m = mask.to(image.dtype)[None] * config.strength
    color = torch.tensor(config.color, dtype=image.dtype)[:, None, None]
    return (1 - m) * image + m * color


__all__ = ["OverlayConfig", "colorize_depth", "gray", "overlay_mask"]
