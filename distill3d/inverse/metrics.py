"""Inverse-rendering metrics at held-out views, against the scene renderer's ground truth.

    novel view:  PSNR / SSIM of the rendered image vs the photo
    relit:       PSNR / SSIM of the image relit under the scene's second light vs the renderer's relit view,
                 and ``relit_psnr_aligned``: the same PSNR after scaling each colour channel of the object
                 pixels by s_c (below), the convention of inverse-rendering benchmarks (TensoIR, GS-IR)
    albedo:      PSNR over object pixels after per-channel scale alignment (albedo and light are only
                 known up to a scale per channel):  s_c = sum(gt_c pred_c) / sum(pred_c^2)
    normals:     mean angle (degrees) between rendered and true normals over object pixels

Object pixels are those with ground-truth coverage ``alphas > 0.5``.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from distillcore.checks import check_tensor
from distill3d.data import Scene
from distill3d.fields.metrics import image_ssim, psnr

from .model import PRDModel
from .relight import relight

FOREGROUND_THRESHOLD = 0.5


def channel_scale(pred: Tensor,  # [V, 3, H, W]
                  target: Tensor,  # [V, 3, H, W]
                  mask: Tensor,  # [V, 1, H, W] bool
                  ) -> Tensor:  # [3]
    """Least-squares per-channel scale over ``mask``: ``s_c = sum(gt_c pred_c) / sum(pred_c^2)``."""
    check_tensor(target, "target", shape=list(pred.shape), floating=True)
    m = mask.expand_as(pred).float()
    return (target * pred * m).sum((0, 2, 3)) / (pred * pred * m).sum((0, 2, 3)).clamp(min=1e-12)


def aligned_albedo_psnr(pred: Tensor,  # [V, 3, H, W] linear
                        target: Tensor,  # [V, 3, H, W] linear
                        mask: Tensor,  # [V, 1, H, W] bool
                        ) -> float:
    """PSNR over ``mask`` of ``s_c pred_c`` (module doc) against ``target``."""
    m = mask.expand_as(pred).float()
    aligned = (pred * channel_scale(pred, target, mask)[None, :, None, None]).clamp(0, 1)
    mse = float((((aligned - target) ** 2) * m).sum() / m.sum().clamp(min=1))
    return float("inf") if mse == 0 else -10.0 * math.log10(mse)


def normal_angular_error(pred: Tensor,  # [V, 3, H, W] unit
                         target: Tensor,  # [V, 3, H, W] unit
                         mask: Tensor,  # [V, 1, H, W] bool
                         ) -> float:
    """Mean angle in degrees over ``mask`` (pixels with a zero target normal are skipped)."""
    valid = mask[:, 0] & (target.norm(dim=1) > 0.5) & (pred.norm(dim=1) > 0.5)
    cos = (pred * target).sum(1).clamp(-1, 1)
    return float(torch.rad2deg(torch.acos(cos[valid])).mean())


@torch.no_grad()
def evaluate_inverse(model: PRDModel, scene: Scene, backend: str = "auto") -> dict[str, float]:
    """Every metric of the module doc that ``scene``'s ground truth allows."""
    renders = [model.render(scene.viewmats[i], scene.Ks[i], scene.width, scene.height, scene.background,
                            backend=backend) for i in range(scene.num_views)]
    targets = scene.images.permute(0, 3, 1, 2)
    images = torch.stack([r.image for r in renders]).clamp(0, 1)
    physical = torch.stack([r.physical for r in renders]).clamp(0, 1)
    out = {
        "novel_psnr": sum(psnr(i, t) for i, t in zip(images, targets)) / len(renders),
        "novel_ssim": sum(image_ssim(i, t) for i, t in zip(images, targets)) / len(renders),
        "physical_psnr": sum(psnr(i, t) for i, t in zip(physical, targets)) / len(renders),
        "mean_progress": float(torch.stack([r.progress for r in renders]).mean()),
    }
    mask = scene.alphas.permute(0, 3, 1, 2) > FOREGROUND_THRESHOLD if scene.alphas is not None else None
    if mask is not None:
        progress = torch.stack([r.progress for r in renders])
        out["mean_progress_objects"] = float(progress[mask].mean())
    if scene.relit_images is not None and scene.relight_environment is not None:
        relit = relight(model, scene, scene.relight_environment, backend=backend)
        relit_targets = scene.relit_images.permute(0, 3, 1, 2)
        out["relit_psnr"] = sum(psnr(i, t) for i, t in zip(relit, relit_targets)) / len(relit)
        out["relit_ssim"] = sum(image_ssim(i, t) for i, t in zip(relit, relit_targets)) / len(relit)
        if mask is not None:
            scale = torch.where(mask, channel_scale(relit, relit_targets, mask)[None, :, None, None], 1.0)
            aligned = (relit * scale).clamp(0, 1)
            out["relit_psnr_aligned"] = sum(psnr(i, t) for i, t in zip(aligned, relit_targets)) / len(relit)
    if mask is not None and scene.albedos is not None:
        albedo = torch.stack([r.albedo for r in renders])
        out["albedo_psnr"] = aligned_albedo_psnr(albedo, scene.albedos.permute(0, 3, 1, 2), mask)
    if mask is not None and scene.normals is not None:
        normals = torch.stack([r.normals for r in renders])
        out["normal_error_deg"] = normal_angular_error(normals, scene.normals.permute(0, 3, 1, 2), mask)
    return out
