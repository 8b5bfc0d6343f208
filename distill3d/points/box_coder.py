"""Box residual coding shared by both detectors.

A box :math:`(x, y, z, l, w, h, \\theta)` is regressed from a reference point :math:`r` (a BEV cell
corner for the pillar head, a LiDAR point for the point head) with per-axis scale :math:`s`:

.. math::
    t = \\Big(\\frac{x - r_x}{s_x}, \\frac{y - r_y}{s_y}, \\frac{z - r_z}{s_z},
        \\log l, \\log w, \\log h, \\sin\\theta, \\cos\\theta\\Big)

The heading as :math:`(\\sin, \\cos)` avoids the :math:`\\pm\\pi` wrap of a raw angle, and
:math:`\\theta = \\operatorname{atan2}(\\sin, \\cos)` decodes it.
"""
from __future__ import annotations

import torch
from torch import Tensor

CODE_SIZE = 8


def encode_boxes(boxes: Tensor, reference: Tensor, scale: Tensor) -> Tensor:  # [M, 8]
    """Residuals of ``boxes`` ``[M, 7]`` from ``reference`` ``[M, 3]`` with ``scale`` ``[3]``."""
    return torch.cat([
        (boxes[:, :3] - reference) / scale,
        boxes[:, 3:6].clamp(min=1e-3).log(),
        torch.sin(2 * boxes[:, 6:7]),
        torch.cos(2 * boxes[:, 6:7]),
    ], dim=1)


def decode_boxes(codes: Tensor, reference: Tensor, scale: Tensor) -> Tensor:  # [..., 7]
    """Inverse of :func:`encode_boxes` for codes ``[..., 8]`` and references ``[..., 3]``."""
    center = codes[..., :3] * scale + reference
    # exp of an untrained head can overflow: sizes are clamped to a physical range.
    size = codes[..., 3:6].clamp(max=6.0).exp()
    yaw = 0.5 * torch.atan2(codes[..., 6], codes[..., 7])
    return torch.cat([center, size, yaw[..., None]], dim=-1)


__all__ = ["CODE_SIZE", "encode_boxes", "decode_boxes"]
