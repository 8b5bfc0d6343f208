"""``rasterize``: render RGB, depth and an N-dimensional feature map of 3D Gaussians in one pass.

The API follows ``gsplat.rasterization`` so code can switch between the two. Per camera the pipeline is

1. projection (:mod:`distill3d.render.projection`): EWA 2D Gaussians, 3-sigma radii, culling;
2. colours: ``colors [N, D]`` as given, or spherical harmonics ``[N, K, D]`` of the view direction
   (:mod:`distill3d.render.sh`);
3. tile binning with a depth sort (:mod:`distill3d.render.tiles`);
4. front-to-back alpha compositing (:mod:`distill3d.render.compositing`) of ONE buffer holding
   ``[colour (D) | depth (1, if requested) | features (F)]``, so any feature width costs one pass.

Render modes: ``"RGB"`` colours; ``"D"`` accumulated depth ``sum_i w_i z_i``; ``"ED"`` expected depth
``sum_i w_i z_i / alpha``; ``"RGB+D"`` / ``"RGB+ED"`` both, depth as the last channel of ``render``.

``feature_grad_to_geometry=False`` makes a loss on the features train only the feature vectors
(Feature 3DGS): compositing weights are detached for the feature channels.

Backends: ``"torch"`` (the readable reference in this package, CPU or GPU), ``"native"`` (the C++/OpenMP or
CUDA kernels of ``csrc/``, see :mod:`distill3d.render.native`), ``"gsplat"`` (``gsplat.rasterization``,
CUDA only) and ``"auto"`` (native if it builds, else gsplat on CUDA, else torch).
"""
from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any, Callable, Literal

import torch
from torch import Tensor

from distillcore.checks import check_tensor
from distill3d.render import compositing, projection, tiles
from distill3d.render.gsplat_backend import gsplat_status, rasterize_gsplat
from distill3d.render.sh import sh_colors
from distill3d.render.validation import (
    check_cameras,
    check_pixel_budget,
    check_geometry,
    check_opacities,
    check_planes,
    check_same_dtype_device,
)

RenderMode = Literal["RGB", "D", "ED", "RGB+D", "RGB+ED"]
Backend = Literal["auto", "native", "torch", "gsplat"]
RENDER_MODES = ("RGB", "D", "ED", "RGB+D", "RGB+ED")
BACKENDS = ("auto", "native", "torch", "gsplat")


def _native_module() -> tuple[ModuleType | None, str | None]:
    """``(distill3d.render.native, None)``, or ``(None, why it cannot be imported)``."""
    try:
        return importlib.import_module("distill3d.render.native"), None
    except Exception as error:  # an ImportError, or a build failure raised at import
        return None, f"{type(error).__name__}: {error}"


def native_status(device: torch.device | str) -> tuple[bool, str | None]:
    """Whether the native backend runs on ``device``, and why not when it does not."""
    module, error = _native_module()
    if module is None:
        return False, error
    if module.native_available(torch.device(device)):
        return True, None
    return False, module.native_build_error() or f"the native backend does not support device {device}"


def available_backends(device: torch.device | str) -> list[str]:
    """The concrete backends that can run on ``device`` (always includes ``"torch"``)."""
    names = ["torch"]
    if native_status(device)[0]:
        names.append("native")
    if gsplat_status(device)[0]:
        names.append("gsplat")
    return names


def resolve_backend(backend: str, device: torch.device | str) -> str:
    """Maps ``"auto"`` to the fastest available backend; errors if an explicit one cannot run."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "auto":
        if native_status(device)[0]:
            return "native"
        return "gsplat" if gsplat_status(device)[0] else "torch"
    status = {"native": native_status, "gsplat": gsplat_status}.get(backend)
    if status is not None:
        ok, why = status(device)
        if not ok:
            raise BackendUnavailable(f"backend={backend!r} is unavailable: {why} "
                                     f"(available on {torch.device(device)}: {', '.join(available_backends(device))})")
    return backend


class BackendUnavailable(ValueError, RuntimeError):
    """An explicitly requested backend cannot run here. A ``ValueError`` (a setting the user chose, reported
    by the command line as one error line) and, as before, a ``RuntimeError``."""


def _stage_functions(backend: str) -> tuple[Callable, Callable, Callable, Callable]:
    """``(project, isect_tiles, isect_offset_encode, rasterize_to_pixels)`` of the torch or native backend."""
    reference = (
        projection.project_gaussians_unchecked,  # rasterize() validated the inputs already
        tiles.isect_tiles,
        tiles.isect_offset_encode,
        compositing.rasterize_to_pixels,
    )
    if backend == "torch":
        return reference
    native, _ = _native_module()
    return (
        native.project_gaussians_native_unchecked,  # rasterize() validated the inputs already
        native.isect_tiles_native_unchecked,
        native.isect_offset_encode_native,
        native.rasterize_to_pixels_native_unchecked,
    )


def _check_inputs(
    means: Tensor,
    quats: Tensor,
    scales: Tensor,
    opacities: Tensor,
    colors: Tensor | None,
    features: Tensor | None,
    viewmats: Tensor,
    Ks: Tensor,
    width: int,
    height: int,
    sh_degree: int | None,
    render_mode: str,
    tile_size: int,
    near_plane: float,
    far_plane: float,
    eps2d: float,
) -> int:
    """Validates every argument of :func:`rasterize`; returns N."""
    n = check_geometry(means, quats, scales)
    n_cameras = check_cameras(viewmats, Ks, width, height)
    check_pixel_budget(n_cameras, width, height)
    check_opacities(opacities, n)
    check_planes(near_plane, far_plane, eps2d)
    if not isinstance(tile_size, int) or tile_size <= 0:
        raise ValueError(f"tile_size must be a positive int, got {tile_size!r}")
    if render_mode not in RENDER_MODES:
        raise ValueError(f"render_mode must be one of {RENDER_MODES}, got {render_mode!r}")
    tensors = {"means": means, "quats": quats, "scales": scales, "opacities": opacities, "viewmats": viewmats, "Ks": Ks}
    if colors is None:
        if "RGB" in render_mode:
            raise ValueError(f"colors is required for render_mode={render_mode!r}")
    else:
        tensors["colors"] = colors
        if sh_degree is None:
            check_tensor(colors, "colors", ndim=2, shape=(n, None), floating=True, nonempty=False)
        else:
            check_tensor(colors, "colors (SH coefficients)", ndim=3, shape=(n, None, None), floating=True, nonempty=False)
        if colors.shape[-1] == 0:
            raise ValueError("colors must have at least one channel")
    if features is not None:
        # [N, F] shared by every camera, or [C, N, F] per camera (e.g. normals turned towards each camera)
        if isinstance(features, Tensor) and features.dim() == 3:
            check_tensor(features, "features", ndim=3, shape=(n_cameras, n, None), floating=True, nonempty=False)
        else:
            check_tensor(features, "features", ndim=2, shape=(n, None), floating=True, nonempty=False)
        if features.shape[-1] == 0:
            raise ValueError("features must have at least one channel (pass None for no features)")
        tensors["features"] = features
    check_same_dtype_device(tensors)
    return n_cameras


def _color_buffer(
    colors: Tensor | None,  # [N, D] or [N, K, D]
    features: Tensor | None,  # [N, F] or [C, N, F]
    depths: Tensor,  # [C, N]
    means: Tensor,
    viewmats: Tensor,
    sh_degree: int | None,
    render_mode: str,
) -> tuple[Tensor, int, int]:
    """The one compositing buffer ``[C, N, colour | depth | features]``, its colour and depth widths."""
    n_cameras, n = depths.shape
    parts = []
    if "RGB" in render_mode:
        if sh_degree is None:
            parts.append(colors[None].expand(n_cameras, -1, -1))
        else:
            parts.append(sh_colors(sh_degree, means, colors, viewmats))
    n_color = parts[0].shape[-1] if parts else 0
    n_depth = int("D" in render_mode)
    if n_depth:
        parts.append(depths[..., None])
    if features is not None:
        parts.append(features if features.dim() == 3 else features[None].expand(n_cameras, -1, -1))
    # A single part (e.g. colours alone) is the buffer as it is: concatenating it would copy [C, N, D] per call.
    return (parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)), n_color, n_depth


def _full_backgrounds(backgrounds: Tensor | None, n_cameras: int, n_color: int, n_total: int, like: Tensor) -> Tensor | None:
    """``[C, n_total]``: the colour backgrounds, zeros for depth and features."""
    if backgrounds is None or n_color == 0:
        return None
    if backgrounds.dim() == 1:
        backgrounds = backgrounds[None].expand(n_cameras, -1)
    check_tensor(backgrounds, "backgrounds", shape=(n_cameras, n_color), floating=True)
    check_same_dtype_device({"colors": like, "backgrounds": backgrounds})
    padding = backgrounds.new_zeros(n_cameras, n_total - n_color)
    return torch.cat([backgrounds, padding], dim=-1)


def projection_meta(backend: str, radii: Tensor, means2d: Tensor, depths: Tensor, conics: Tensor, opacities: Tensor,
                    compensations: Tensor | None, width: int, height: int, tile_size: int, n_cameras: int,
                    render_mode: str) -> dict[str, Any]:
    """The keys of gsplat's unpacked ``meta`` that describe the projected Gaussians (what
    ``gsplat.strategy.DefaultStrategy`` reads), shared by :func:`rasterize` and the distributed rasterizer."""
    return {"backend": backend, "batch_ids": None, "camera_ids": None, "gaussian_ids": None, "radii": radii,
            "means2d": means2d, "depths": depths, "conics": conics, "opacities": opacities,
            "compensations": compensations, "width": width, "height": height, "tile_size": tile_size,
            "n_batches": 1, "n_cameras": n_cameras, "render_mode": render_mode}


def split_composited(image: Tensor, alpha: Tensor, n_color: int, n_depth: int, render_mode: str,
                     has_features: bool) -> tuple[Tensor, Tensor | None]:
    """The composited buffer ``[..., n_color + n_depth + F]`` as (render, feature image): "ED" modes turn the
    accumulated depth into the expected depth (divided by alpha); features are ``None`` without them."""
    render = image[..., : n_color + n_depth]
    if "ED" in render_mode:
        expected = render[..., -1:] / alpha.clamp(min=compositing.EXPECTED_DEPTH_MIN_ALPHA)
        render = torch.cat([render[..., :n_color], expected], dim=-1)
    return render, (image[..., n_color + n_depth :] if has_features else None)


def rasterize(
    means: Tensor,  # [N, 3]
    quats: Tensor,  # [N, 4] wxyz, normalised inside
    scales: Tensor,  # [N, 3] > 0
    opacities: Tensor,  # [N] in [0, 1]
    colors: Tensor | None,  # [N, D] or SH coefficients [N, K, D] with sh_degree
    viewmats: Tensor,  # [C, 4, 4] world -> camera, OpenCV axes
    Ks: Tensor,  # [C, 3, 3]
    width: int,
    height: int,
    *,
    features: Tensor | None = None,  # [N, F], or [C, N, F] per camera
    sh_degree: int | None = None,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    eps2d: float = 0.3,
    backgrounds: Tensor | None = None,  # [C, D] or [D], colour channels only
    render_mode: RenderMode = "RGB",
    feature_grad_to_geometry: bool = True,
    antialiased: bool = False,
    tile_size: int = 16,
    backend: Backend = "auto",
    deterministic: bool | None = None,
) -> tuple[Tensor, Tensor | None, Tensor, dict[str, Any]]:
    """Renders C images of N Gaussians (colour and/or depth, plus optional features) in one pass.

    Returns ``(render [C, H, W, D (+1)], features [C, H, W, F] | None, alpha [C, H, W, 1], meta)``;
    ``render`` is ``[C, H, W, 1]`` in the depth-only modes. ``meta`` has gsplat's keys (``means2d``
    with its gradient retained, ``radii [C, N, 2]``, ``depths``, ``conics``, ``opacities``, the tile lists,
    ``width``, ``height``, ``n_cameras``, ``gaussian_ids=None`` as gsplat's unpacked mode), so
    ``gsplat.strategy.DefaultStrategy`` runs on it unchanged. ``antialiased`` multiplies opacities by the
    EWA compensation (gsplat's ``rasterize_mode="antialiased"``). An empty scene (N = 0) renders the
    background. ``deterministic`` (native backend): sum the backward's gradients in a fixed order for
    bitwise-reproducible gradients (``None``: on the CPU always, on CUDA under
    ``torch.use_deterministic_algorithms``; see :func:`distill3d.render.native.deterministic_backward`).
    The torch backend is deterministic on the CPU; gsplat's backward uses atomics.
    """
    n_cameras = _check_inputs(
        means, quats, scales, opacities, colors, features, viewmats, Ks, width, height,
        sh_degree, render_mode, tile_size, near_plane, far_plane, eps2d,
    )
    backend = resolve_backend(backend, means.device)
    if backend == "gsplat" and means.shape[0] == 0:
        # gsplat 1.5.3's projection kernel dies with a floating-point exception on zero Gaussians
        # (seen on an H200): the reference stages render the empty scene instead.
        backend = "torch"
    if backend == "gsplat":
        return rasterize_gsplat(
            means, quats, scales, opacities, colors, viewmats, Ks, width, height, features=features,
            sh_degree=sh_degree, near_plane=near_plane, far_plane=far_plane, eps2d=eps2d, backgrounds=backgrounds,
            render_mode=render_mode, feature_grad_to_geometry=feature_grad_to_geometry, antialiased=antialiased,
            tile_size=tile_size,
        )
    project, isect, offset_encode, composite = _stage_functions(backend)

    radii, means2d, depths, conics, compensations = project(
        means, quats, scales, viewmats, Ks, width, height, eps2d, near_plane, far_plane
    )
    if means2d.requires_grad:
        means2d.retain_grad()  # densification reads meta["means2d"].grad
    buffer, n_color, n_depth = _color_buffer(colors, features, depths, means, viewmats, sh_degree, render_mode)
    n_geometry = buffer.shape[-1] if feature_grad_to_geometry else n_color + n_depth
    full_backgrounds = _full_backgrounds(backgrounds, n_cameras, n_color, buffer.shape[-1], buffer)
    view_opacities = opacities[None].expand(n_cameras, -1)
    if antialiased:
        view_opacities = view_opacities * compensations

    tile_width, tile_height = tiles.tile_grid(width, height, tile_size)
    tiles_per_gauss, isect_ids, flatten_ids = isect(means2d, radii, depths, tile_size, tile_width, tile_height)
    isect_offsets = offset_encode(isect_ids, n_cameras, tile_width, tile_height)
    native_options = {"deterministic": deterministic} if backend == "native" else {}
    image, alpha = composite(
        means2d, conics, buffer.contiguous(), view_opacities.contiguous(), width, height, tile_size,
        isect_offsets, flatten_ids, full_backgrounds, n_geometry, **native_options,
    )

    render, feature_image = split_composited(image, alpha, n_color, n_depth, render_mode, features is not None)
    meta = projection_meta(backend, radii, means2d, depths, conics, view_opacities, compensations, width, height,
                           tile_size, n_cameras, render_mode) | {
        "tile_width": tile_width,
        "tile_height": tile_height,
        "tiles_per_gauss": tiles_per_gauss,
        "isect_ids": isect_ids,
        "flatten_ids": flatten_ids,
        "isect_offsets": isect_offsets,
    }
    return render, feature_image, alpha, meta
