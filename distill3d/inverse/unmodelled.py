"""Where the physical model falls short: the light a pixel holds beyond direct lighting, and the fallback.

Scenes built with ``RenderSettings.direct_pass`` carry per view a direct-only render (one bounce:
shadows, no inter-reflection; ``*_direct.npz``). With the photo's linear radiance ``I`` and the direct
radiance ``I_d`` (luminance ``Y`` = channel mean), the unmodelled fraction of an object pixel is

    f = clip(1 - Y(I_d) / Y(I), 0, 1)

the share of its light that came by inter-reflection, which a model with visibility but one bounce
cannot explain. The radiance fallback should take these pixels: :func:`fallback_report` measures the
Pearson correlation of ``1 - alpha_p`` with ``f`` and the aligned albedo's error where ``f`` is large,
and why the progress map would move there at all: the image loss lowers ``alpha_p`` at a pixel only
where the radiance image ``I_rad`` fits the photo better than the physical image ``I_phys``, so the
report gives the mean absolute (sRGB) error of both where ``f`` is large and elsewhere. On
``interreflect`` (quick size) without visibility, ``I_phys`` misses the cast shadows too, its error is
not concentrated where ``f`` is large (0.067 there against 0.061 for ``I_rad``; 0.030 / 0.029 elsewhere)
and the correlation is 0.01; with visibility it is (0.084 / 0.062; 0.037 / 0.029) and the correlation 0.50.
"""
from __future__ import annotations

import json
import math
import pathlib

import numpy as np
import torch
from torch import Tensor

from distillcore.serialization import load_arrays
from distill3d.data import Scene
from distill3d.data.colorspace import srgb_to_linear

from .metrics import FOREGROUND_THRESHOLD, channel_scale
from .model import PRDModel

# photo luminance range where f is measured: below, 8-bit noise dominates; above, the photo is clipped
MIN_LUMINANCE, MAX_LUMINANCE = 0.02, 0.95
DOMINATED = 0.3  # pixels with f above this are "dominated by unmodelled light" in the albedo comparison


def load_direct_renders(scene_dir: str | pathlib.Path, split: str = "test", downsample: int = 1) -> Tensor | None:
    """The split's direct-only renders ``[V, H, W, 3]`` (linear, area-downsampled like ``Scene.downsample``),
    in the frame order the scene readers use; None when the scene has none."""
    root = pathlib.Path(scene_dir)
    frames = json.loads((root / f"transforms_{split}.json").read_text())["frames"]
    if not frames or not all("direct_file_path" in f for f in frames):
        return None
    renders = torch.from_numpy(np.stack([load_arrays(root / f["direct_file_path"], what="direct render")["radiance"]
                                         .astype(np.float32) for f in frames]))
    if downsample > 1:
        renders = torch.nn.functional.avg_pool2d(renders.permute(0, 3, 1, 2), downsample).permute(0, 2, 3, 1)
    return renders.contiguous()


def unmodelled_fraction(scene: Scene, direct: Tensor,  # [V, H, W, 3] linear
                        ) -> tuple[Tensor, Tensor]:  # [V, H, W] f, [V, H, W] bool where it is measured
    """``f`` of the module doc and the object pixels where it is measured."""
    luminance = srgb_to_linear(scene.images).mean(-1)
    f = (1.0 - direct.mean(-1) / luminance.clamp(min=1e-6)).clamp(0.0, 1.0)
    valid = (luminance > MIN_LUMINANCE) & (luminance < MAX_LUMINANCE)
    if scene.alphas is not None:
        valid &= scene.alphas[..., 0] > FOREGROUND_THRESHOLD
    return f, valid


def pearson(x: Tensor, y: Tensor) -> float:
    x, y = x.double() - x.double().mean(), y.double() - y.double().mean()
    denominator = math.sqrt(float((x * x).sum() * (y * y).sum()))
    return float((x * y).sum()) / denominator if denominator > 0 else float("nan")


@torch.no_grad()
def fallback_report(model: PRDModel, scene: Scene, direct: Tensor,  # [V, H, W, 3]
                    backend: str = "auto") -> dict[str, float]:
    """Correlation of ``1 - alpha_p`` with ``f`` over measured object pixels, mean ``f``, the progress in
    pixels dominated by unmodelled light (``f > DOMINATED``) and elsewhere, the aligned albedo's mean
    absolute error (``s_c`` over all object pixels, as ``albedo_psnr``) in both, and the mean absolute
    error of ``I_phys`` and of ``I_rad`` against the photo in both (module doc)."""
    f, valid = unmodelled_fraction(scene, direct)
    renders = [model.render(scene.viewmats[i], scene.Ks[i], scene.width, scene.height, scene.background,
                            backend=backend) for i in range(scene.num_views)]
    progress = torch.stack([r.progress[0] for r in renders])
    albedo = torch.stack([r.albedo.permute(1, 2, 0) for r in renders])  # [V, H, W, 3]
    photo_error = {name: torch.stack([(getattr(r, name).permute(1, 2, 0).clamp(0, 1) - scene.images[i]).abs().mean(-1)
                                      for i, r in enumerate(renders)]) for name in ("physical", "radiance")}
    objects = scene.alphas[..., 0] > FOREGROUND_THRESHOLD
    scale = channel_scale(albedo.permute(0, 3, 1, 2), scene.albedos.permute(0, 3, 1, 2), objects[:, None])
    error = ((albedo * scale).clamp(0, 1) - scene.albedos).abs().mean(-1)
    dominated, rest = valid & (f > DOMINATED), valid & (f <= DOMINATED)
    mean = lambda x, where: float(x[where].mean()) if where.any() else float("nan")  # noqa: E731
    return {
        "unmodelled_fraction_mean": mean(f, valid),
        "dominated_pixel_fraction": float(dominated.sum() / valid.sum().clamp(min=1)),
        "correlation_1_minus_progress_vs_unmodelled": pearson(1.0 - progress[valid], f[valid]),
        "progress_dominated": mean(progress, dominated), "progress_rest": mean(progress, rest),
        "albedo_abs_error_dominated": mean(error, dominated), "albedo_abs_error_rest": mean(error, rest),
        **{f"{name}_abs_error_{where}": mean(e, mask) for name, e in photo_error.items()
           for where, mask in (("dominated", dominated), ("rest", rest))},
    }


__all__ = ["load_direct_renders", "unmodelled_fraction", "fallback_report", "pearson"]
