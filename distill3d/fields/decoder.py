"""Feature 3DGS speed-up decoder: render a low-dimensional feature map, lift it with a 1x1 conv.

    F_teacher_space(p) = W f_low(p) + b,   W: [D, D_low],  f_low = rendered [D_low, H, W]

Rasterisation cost grows with the rendered width, so rendering ``D_low`` channels instead of the
teacher's ``D`` and decoding per pixel trades a small (linear) network for a cheaper render. Because
the decoder is linear and per pixel it commutes with the alpha blending: decoding each Gaussian's
feature first would give the same image.
"""
from __future__ import annotations

from torch import Tensor, nn

from distillcore.checks import check_tensor


class SpeedUpDecoder(nn.Module):
    """1x1 convolution ``[B, D_low, H, W] -> [B, D, H, W]``."""

    def __init__(self, low_dim: int, teacher_dim: int):
        super().__init__()
        if low_dim < 1 or teacher_dim < 1:
            raise ValueError(f"low_dim and teacher_dim must be >= 1, got {low_dim} and {teacher_dim}")
        self.low_dim, self.teacher_dim = low_dim, teacher_dim
        self.conv = nn.Conv2d(low_dim, teacher_dim, kernel_size=1)

    def forward(self, features: Tensor) -> Tensor:
        check_tensor(features, "features", ndim=4, shape=(None, self.low_dim, None, None), floating=True)
        return self.conv(features)

    def decode_rows(self, features: Tensor) -> Tensor:
        """The same map on rows ``[N, D_low] -> [N, D]`` (e.g. per-Gaussian features for editing)."""
        check_tensor(features, "features", ndim=2, shape=(None, self.low_dim), floating=True)
        return features @ self.conv.weight[:, :, 0, 0].T + self.conv.bias
