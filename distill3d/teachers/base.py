"""The one interface every 2D teacher implements: ``image [3, H, W] in [0, 1] -> features [D, h, w]``.

A teacher is a frozen network. Subclasses implement :meth:`Teacher.encode` on a padded batch; this
base class validates the image, pads it to a multiple of the network's ``stride`` (replicate padding,
so border statistics stay close to the image's) and crops the output to the teacher grid

    h = ceil(H / output_stride),  w = ceil(W / output_stride),

so the grid of any image size is known before the network runs (:meth:`Teacher.grid`).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from distillcore.checks import check_tensor


class Teacher(nn.Module):
    """A frozen 2D feature extractor.

    Attributes:
        name: the registry name.
        dim: number of feature channels D.
        output_stride: image pixels per feature cell (1 = full resolution).
        pad_multiple: the input side lengths the network needs to be a multiple of.
    """

    name: str = ""
    dim: int = 0
    output_stride: int = 1
    pad_multiple: int = 1

    def grid(self, height: int, width: int) -> tuple[int, int]:
        """The feature grid ``(h, w)`` this teacher returns for an ``height x width`` image."""
        return math.ceil(height / self.output_stride), math.ceil(width / self.output_stride)

    def encode(self, images: Tensor) -> Tensor:
        """Features of a padded batch: ``images [B, 3, Hp, Wp]`` in [0, 1] -> ``[B, D, Hp/s, Wp/s]``."""
        raise NotImplementedError

    def train(self, mode: bool = True) -> "Teacher":
        """Teachers stay in eval mode (batch-norm statistics are part of the pretrained model)."""
        return super().train(False)

    def fingerprint(self) -> str:
        """A string that changes whenever this teacher's output would change (used as a cache key)."""
        return f"{self.name}-d{self.dim}-s{self.output_stride}"

    @torch.no_grad()
    def forward(self, image: Tensor) -> Tensor:
        """Features of one image.

        Args:
            image: ``[3, H, W]`` float in [0, 1].

        Returns:
            ``[D, h, w]`` float32 with ``(h, w) = self.grid(H, W)``.
        """
        check_image(image)
        device = next(self.parameters()).device
        features = self.extract(image.to(device=device, dtype=torch.float32))
        expected = [self.dim, *self.grid(*image.shape[1:])]
        if list(features.shape) != expected:
            raise RuntimeError(
                f"teacher {self.name!r} returned shape {list(features.shape)}, expected {expected}")
        return features.float().contiguous()

    def extract(self, image: Tensor) -> Tensor:
        """Pads ``image [3, H, W]`` to ``pad_multiple``, runs :meth:`encode`, crops to :meth:`grid`."""
        height, width = image.shape[1:]
        pad_h, pad_w = (-height) % self.pad_multiple, (-width) % self.pad_multiple
        batch = image[None]
        if pad_h or pad_w:
            batch = F.pad(batch, (0, pad_w, 0, pad_h), mode="replicate")
        features = self.encode(batch)[0]
        h, w = self.grid(height, width)
        return features[:, :h, :w]


def check_image(image: Tensor, name: str = "image") -> Tensor:
    """Checks ``image`` is ``[3, H, W]`` float in [0, 1] and returns it."""
    check_tensor(image, name, ndim=3, floating=True)
    if image.shape[0] != 3:
        raise ValueError(f"{name} must have 3 channels (RGB) first, got shape {list(image.shape)}")
    low, high = float(image.min()), float(image.max())
    if low < -1e-3 or high > 1 + 1e-3:
        raise ValueError(f"{name} values must lie in [0, 1], got [{low:.3g}, {high:.3g}]")
    return image


def freeze(module: nn.Module) -> nn.Module:
    """Puts ``module`` in eval mode with gradients off (teachers are never trained here)."""
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module
