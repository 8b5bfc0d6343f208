"""``backend="gsplat"``: :func:`distill3d.render.rasterize` on top of ``gsplat.rasterization`` (CUDA only).

gsplat renders one colour tensor per call, so features are concatenated to the colours (gsplat then
splits them into ``channel_chunk`` passes internally). With ``feature_grad_to_geometry=False`` the
features need a second call on detached geometry, since gsplat cannot stop the feature gradient inside
its kernels; the native backend does both in one pass.

Differences from the torch/native backends that the comparison tests allow for: gsplat's radius is
``ceil(3.33 sqrt(Sigma_xx))`` per axis (ours ``ceil(3 sqrt(lambda_max))``), so the tile lists differ at
the splat borders by terms below the 1/255 alpha cut-off.
"""
from __future__ import annotations

import importlib
from typing import Any

import torch
from torch import Tensor

from distill3d.render.compositing import EXPECTED_DEPTH_MIN_ALPHA
from distill3d.render.sh import sh_colors


def gsplat_status(device: torch.device | str) -> tuple[bool, str | None]:
    """Whether ``gsplat.rasterization`` can run on ``device`` (it needs CUDA)."""
    if torch.device(device).type != "cuda":
        return False, "gsplat has no CPU rasterizer: backend='gsplat' needs CUDA tensors"
    try:
        importlib.import_module("gsplat")
    except ImportError as error:
        return False, f"gsplat is not importable: {error}"
    return True, None


def _gsplat_call(
    means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor, colors: Tensor | None, viewmats: Tensor,
    Ks: Tensor, width: int, height: int, backgrounds: Tensor | None, with_depth: bool, settings: dict[str, Any],
) -> tuple[Tensor, Tensor, dict[str, Any]]:
    """One ``gsplat.rasterization`` call on per-camera colours ``[C, N, D]`` (or depth only if None)."""
    from gsplat import rasterization

    if colors is None:
        colors, mode = means.new_zeros(means.shape[0], 1), "D"
    else:
        mode = "RGB+D" if with_depth else "RGB"
    return rasterization(
        means, quats, scales, opacities, colors, viewmats, Ks, width, height, backgrounds=backgrounds,
        render_mode=mode, packed=False, **settings,
    )


def rasterize_gsplat(
    means: Tensor,
    quats: Tensor,
    scales: Tensor,
    opacities: Tensor,
    colors: Tensor | None,
    viewmats: Tensor,
    Ks: Tensor,
    width: int,
    height: int,
    *,
    features: Tensor | None,
    sh_degree: int | None,
    near_plane: float,
    far_plane: float,
    eps2d: float,
    backgrounds: Tensor | None,
    render_mode: str,
    feature_grad_to_geometry: bool,
    antialiased: bool,
    tile_size: int,
) -> tuple[Tensor, Tensor | None, Tensor, dict[str, Any]]:
    """Same contract as :func:`distill3d.render.rasterize` (inputs already validated there)."""
    ok, why = gsplat_status(means.device)
    if not ok:
        raise RuntimeError(why)
    n_cameras = viewmats.shape[0]
    settings = dict(
        near_plane=near_plane, far_plane=far_plane, eps2d=eps2d, tile_size=tile_size,
        rasterize_mode="antialiased" if antialiased else "classic",
    )
    color_part = None
    if "RGB" in render_mode:
        color_part = colors[None].expand(n_cameras, -1, -1) if sh_degree is None else sh_colors(sh_degree, means, colors, viewmats)
    n_color = 0 if color_part is None else color_part.shape[-1]
    with_depth = "D" in render_mode
    if backgrounds is not None and backgrounds.dim() == 1:
        backgrounds = backgrounds[None].expand(n_cameras, -1)

    joint_features = features is not None and feature_grad_to_geometry
    geometry_colors = color_part
    geometry_backgrounds = backgrounds if n_color else None
    if joint_features:
        feats = features if features.dim() == 3 else features[None].expand(n_cameras, -1, -1)
        geometry_colors = feats if color_part is None else torch.cat([color_part, feats], dim=-1)
        if geometry_backgrounds is not None:
            geometry_backgrounds = torch.cat([backgrounds, backgrounds.new_zeros(n_cameras, features.shape[-1])], dim=-1)
    image, alpha, meta = _gsplat_call(
        means, quats, scales, opacities, geometry_colors, viewmats, Ks, width, height, geometry_backgrounds,
        with_depth, settings,
    )
    depth = image[..., -1:] if with_depth else None
    feature_image = None
    if joint_features:
        feature_image = image[..., n_color : n_color + features.shape[-1]]
    elif features is not None:
        feature_image, _, _ = _gsplat_call(
            means.detach(), quats.detach(), scales.detach(), opacities.detach(), features, viewmats, Ks,
            width, height, None, False, settings,
        )

    parts = [image[..., :n_color]]
    if depth is not None:
        parts.append(depth / alpha.clamp(min=EXPECTED_DEPTH_MIN_ALPHA) if "ED" in render_mode else depth)
    if meta["means2d"].requires_grad:
        meta["means2d"].retain_grad()  # densification reads meta["means2d"].grad, as with the other backends
    meta.update({"backend": "gsplat", "render_mode": render_mode})
    return torch.cat(parts, dim=-1), feature_image, alpha, meta
