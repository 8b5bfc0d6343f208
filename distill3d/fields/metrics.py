"""Evaluation metrics of a feature field at held-out views.

    PSNR = -10 log10(mean((I - I_gt)^2))                      (images in [0, 1])
    SSIM: distillcore.image.ssim (Gaussian 11x11 window, sigma 1.5)
    feature cosine = mean_p <F(p), T(p)> / (|F(p)| |T(p)|)    (rendered map resized to the teacher grid)
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from distillcore.checks import check_tensor
from distillcore.image import ssim


def psnr(pred: Tensor, target: Tensor) -> float:
    """PSNR in dB of ``pred`` vs ``target`` (same shape, values in [0, 1])."""
    check_tensor(pred, "pred", floating=True)
    check_tensor(target, "target", shape=list(pred.shape), floating=True)
    mse = float(((pred - target) ** 2).mean())
    return float("inf") if mse == 0 else -10.0 * torch.log10(torch.tensor(mse)).item()


def image_ssim(pred: Tensor, target: Tensor) -> float:
    """SSIM of two ``[3, H, W]`` images (same padding so small images work)."""
    return float(ssim(pred[None], target[None], padding="same")[0])


def feature_cosine(rendered: Tensor, teacher: Tensor) -> float:
    """Mean per-cell cosine similarity of two ``[D, h, w]`` maps."""
    check_tensor(rendered, "rendered", ndim=3, floating=True)
    check_tensor(teacher, "teacher", shape=list(rendered.shape), floating=True)
    return float(F.cosine_similarity(rendered, teacher, dim=0, eps=1e-8).mean())
