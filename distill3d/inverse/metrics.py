"""Inverse-rendering metrics at held-out views, against the scene renderer's ground truth.

    novel view:  PSNR / SSIM of the rendered image vs the photo
    relit:       PSNR / SSIM of the image relit under the scene's second light vs the renderer's relit view,
                 and ``relit_psnr_aligned``: the same PSNR after scaling each colour channel of the object
                 pixels by s_c (below), the convention of inverse-rendering benchmarks (TensoIR, GS-IR)
    albedo:      PSNR over object pixels after per-channel scale alignment (albedo and light are only
                 known up to a scale per channel):  s_c = sum(gt_c pred_c) / sum(pred_c^2)
    normals:     mean angle (degrees) between rendered and true normals over object pixels

Object pixels are those with ground-truth coverage ``alphas > 0.5``.

Colour. Under one light, the colour of the light and that of the albedo cannot be told apart, so the
tables report the aligned PSNRs above by default. Two calibrations that need no ground-truth albedo
scale the albedo per channel by ``k_c`` (and the light by ``1 / k_c``, leaving the photos unchanged)
before relighting (:func:`colour_calibration`, ``relit_psnr_white_balance`` / ``relit_psnr_grey_world``):

    white balance (the training light's mean colour m known, e.g. from a grey card):
        k_c = (l_c / m_c) / mean_c'(l_c' / m_c')          l: the learned light's mean colour
    grey world (the scene's mean albedo is grey):
        k_c = mean_c'(a_c') / a_c                          a: mean albedo over object pixels

:func:`relit_oracles` tells which component limits relighting: the relit PSNR again with ground-truth
maps swapped in on object pixels, and how the model treats cast shadows (the light path the physical
model lacks, which the radiance fallback is meant to keep out of the materials).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from distillcore.checks import check_tensor
from distill3d.data import Scene
from distill3d.data.colorspace import srgb_to_linear
from distill3d.fields.metrics import image_ssim, psnr

from .model import GBuffer, PRDModel
from .shading import PreparedLight
from .relight import environment_from, relight

FOREGROUND_THRESHOLD = 0.5
# A pixel is in cast shadow where the photo has less than this fraction of the light that the
# ground-truth materials receive under the training light without visibility.
SHADOW_RATIO = 0.6
ORACLE_BUFFERS = ("relit_images", "relight_environment", "alphas", "albedos", "normals", "roughness", "metallic")


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


def colour_calibration(model: PRDModel, scene: Scene, mode: str,
                       albedo: Tensor,  # [V, 3, H, W] the model's albedo maps
                       mask: Tensor,  # [V, 1, H, W] bool, object pixels
                       ) -> Tensor:  # [3]
    """Per-channel albedo scale ``k`` of a colour calibration (module doc): ``white_balance`` (needs
    ``scene.environment``, the known training light) or ``grey_world``."""
    if mode == "grey_world":
        mean = (albedo * mask).sum((0, 2, 3)) / mask.sum().clamp(min=1)
        return mean.mean() / mean.clamp(min=1e-6)
    if mode == "white_balance":
        learned = model.light.radiance().detach().reshape(-1, 3).mean(0)
        known = environment_from(scene.environment, model.light.resolution).radiance().reshape(-1, 3).mean(0)
        ratio = learned / known.clamp(min=1e-6)
        return ratio / ratio.mean()
    raise ValueError(f"colour calibration must be 'white_balance' or 'grey_world', got {mode!r}")


def ground_truth_gbuffer(scene: Scene, index: int) -> GBuffer:
    """The scene's ground-truth maps of view ``index`` as a G-buffer (progress 1, no radiance)."""
    alpha = scene.alphas[index]
    return GBuffer(radiance=torch.zeros_like(scene.images[index]), coverage=alpha, albedo=scene.albedos[index],
                   roughness=scene.roughness[index], metallic=scene.metallic[index], progress=torch.ones_like(alpha),
                   normals=scene.normals[index], meta={})


def cast_shadows(model: PRDModel, scene: Scene, index: int,
                 light: PreparedLight | None = None) -> Tensor:  # [H, W, 1] bool
    """Object pixels of view ``index`` in cast shadow: the photo's linear luminance below ``SHADOW_RATIO``
    times that of the ground-truth materials shaded (without visibility) under the training light
    (``light``: ``scene.environment`` prepared by ``model.prepare_light``, made here if None)."""
    if light is None:
        light = model.prepare_light(environment_from(scene.environment, model.light.resolution))
    unshadowed = model.shade_gbuffer(ground_truth_gbuffer(scene, index), scene.viewmats[index], scene.Ks[index],
                                     scene.background, light=light).physical
    photo = srgb_to_linear(scene.images[index]).sum(-1, keepdim=True)
    expected = srgb_to_linear(unshadowed.permute(1, 2, 0)).sum(-1, keepdim=True)
    return (scene.alphas[index] > FOREGROUND_THRESHOLD) & (photo < SHADOW_RATIO * expected)


@torch.no_grad()
def relit_oracles(model: PRDModel, scene: Scene, backend: str = "auto") -> dict[str, float]:
    """Relit PSNR with ground truth swapped in on object pixels, keys ``relit_psnr_<name>`` (empty without
    the buffers it needs):

    - ``gt_normals``; ``gt_albedo``; ``gt_materials`` (albedo, roughness, metallic and normals: what is
      left is the light transport the model lacks and the shading approximations);
    - ``albedo_rescaled``: the model's albedo times the per-channel scale ``s_c`` of ``albedo_psnr`` (removes
      the albedo / light colour ambiguity alone);
    - ``gt_albedo_in_shadows`` (needs ``scene.environment``): ``gt / s_c`` only at cast-shadow pixels
      (:func:`cast_shadows`), i.e. a model that kept every cast shadow out of its albedo; with it
      ``shadow_fraction`` of object pixels, the mean progress in and out of shadows and the aligned
      albedo's brightness relative to the truth there (below 1: shadows baked into the albedo).
    """
    if any(getattr(scene, name) is None for name in ORACLE_BUFFERS):
        return {}
    light = model.prepare_light(environment_from(scene.relight_environment, model.light.resolution))
    views = range(scene.num_views)
    gbuffers = [model.gbuffer(scene.viewmats[i], scene.Ks[i], scene.width, scene.height, scene.background,
                              light=light, backend=backend) for i in views]
    objects = [scene.alphas[i] > FOREGROUND_THRESHOLD for i in views]
    albedo = torch.stack([g.albedo for g in gbuffers]).permute(0, 3, 1, 2)
    scale = channel_scale(albedo, scene.albedos.permute(0, 3, 1, 2), torch.stack(objects).permute(0, 3, 1, 2))

    def relit_psnr(swap) -> float:
        total = 0.0
        for i in views:
            render = model.shade_gbuffer(swap(i, gbuffers[i]), scene.viewmats[i], scene.Ks[i], scene.background,
                                         light=light)
            total += psnr(render.physical.clamp(0, 1), scene.relit_images[i].permute(2, 0, 1))
        return total / scene.num_views

    def gt_materials(i: int, g: GBuffer) -> GBuffer:
        truth = ground_truth_gbuffer(scene, i)
        return g.swapped(objects[i], albedo=truth.albedo, roughness=truth.roughness, metallic=truth.metallic,
                         normals=truth.normals)

    out = {
        "relit_psnr_model": relit_psnr(lambda i, g: g),
        "relit_psnr_gt_normals": relit_psnr(lambda i, g: g.swapped(objects[i], normals=scene.normals[i])),
        "relit_psnr_albedo_rescaled": relit_psnr(lambda i, g: g.swapped(objects[i], albedo=g.albedo * scale)),
        "relit_psnr_gt_albedo": relit_psnr(lambda i, g: g.swapped(objects[i], albedo=scene.albedos[i])),
        "relit_psnr_gt_materials": relit_psnr(gt_materials),
    }
    for mode in ("white_balance", "grey_world"):
        if mode == "white_balance" and scene.environment is None:
            continue
        k = colour_calibration(model, scene, mode, albedo, torch.stack(objects).permute(0, 3, 1, 2))
        out[f"relit_psnr_{mode}"] = relit_psnr(lambda i, g: g.swapped(objects[i], albedo=(g.albedo * k).clamp(0, 1)))
        out[f"colour_scale_{mode}"] = k.tolist()
    if scene.environment is None:
        return out
    train_light = model.prepare_light(environment_from(scene.environment, model.light.resolution))
    shadows = [cast_shadows(model, scene, i, train_light) for i in views]
    out["relit_psnr_gt_albedo_in_shadows"] = relit_psnr(
        lambda i, g: g.swapped(shadows[i], albedo=(scene.albedos[i] / scale).clamp(0, 1)))
    in_shadow, on_object = torch.stack(shadows), torch.stack(objects)
    out["shadow_fraction"] = float(in_shadow.sum() / on_object.sum().clamp(min=1))
    if in_shadow.any():
        progress = torch.stack([g.progress for g in gbuffers])
        aligned = albedo.permute(0, 2, 3, 1) * scale

        def brightness(where: Tensor) -> float:  # aligned albedo over true albedo, summed over `where`
            where = where.expand_as(aligned)
            return float(aligned[where].sum() / scene.albedos[where].sum())

        lit = on_object & ~in_shadow
        out.update(mean_progress_shadows=float(progress[in_shadow].mean()), mean_progress_lit=float(progress[lit].mean()),
                   albedo_brightness_shadows=brightness(in_shadow), albedo_brightness_lit=brightness(lit))
    return out
