"""``rasterize_distributed``: render Gaussians sharded across ranks (gsplat 1.5.3 / Grendel-GS scheme).

Every rank ``r`` holds a shard of ``N_r`` Gaussians and ``C_r`` cameras of the step. Per call:

1. cameras are all-gathered, so every rank knows all ``C = sum_r C_r`` cameras (camera ``c`` belongs to
   the rank that passed it, ranks in order);
2. each rank projects its shard into every camera (:mod:`~distill3d.render.projection` stage) and builds
   the compositing buffer ``[colour | depth | features]`` (SH colours are evaluated for each camera);
3. only the visible (camera, Gaussian) pairs (``radii > 0``) travel: each rank sends the rows of the
   cameras of rank ``s`` to rank ``s`` with one differentiable variable-size all-to-all
   (:func:`distillcore.dist.all_to_all_variable`): ``means2d (2) | conics (3) | opacity (1) | depth (1)
   | buffer (D)`` as floats, ``radii (2) | camera (1)`` as integers;
4. the owner of a camera lays the received rows out as a dense ``[C_s, M, .]`` batch (``M`` = most rows
   of one of its cameras, padding culled with ``radii = 0``), in rank order then shard order, which is
   the global Gaussian order when shards are contiguous slices; then tile binning and compositing run
   as in :func:`~distill3d.render.rasterize.rasterize`.

The backward runs the same route in reverse: compositing gradients of the received rows return through
the all-to-all to the ranks that projected them, and on to each shard's parameters. With one rank the
result equals :func:`rasterize` of the whole scene; with ``R`` ranks each rank's images equal the
single-process render of its cameras, and every parameter gradient equals the single-process gradient
(the torch stages reproduce it to rounding of the matrix products; see the tests).

Bytes moved per call: ``sum over visible pairs (7 + D) * float bytes + 3 * 4``, independent of the
image size; a Gaussian outside every camera of rank ``s`` costs nothing to send there.

Backends: ``"torch"`` and ``"native"`` stages, on CPU (gloo) or CUDA (NCCL; written for it, not tested
on this machine). gsplat's own ``rasterization(distributed=True)`` needs the same camera count on every
rank and renders no feature channels apart from colour, so ``"gsplat"`` is not a distributed backend
here; ``"auto"`` picks native, else torch.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from distillcore import dist
from distill3d.render import tiles
from distill3d.render.rasterize import (
    RenderMode,
    _check_inputs,
    _color_buffer,
    _full_backgrounds,
    _stage_functions,
    native_status,
    projection_meta,
    resolve_backend,
    split_composited,
)

# float columns sent per visible (camera, Gaussian) pair ahead of the compositing buffer
_GEOMETRY_COLUMNS = 7  # means2d (2) | conics (3) | opacity (1) | depth (1)


def gather_cameras(viewmats: Tensor, Ks: Tensor) -> tuple[Tensor, Tensor, list[int]]:
    """All ranks' cameras in rank order, and how many each rank contributed.

    Shapes:
        viewmats: ``[C_r, 4, 4]``, Ks: ``[C_r, 3, 3]`` -> ``[C, 4, 4]``, ``[C, 3, 3]``, counts ``[R]``.
    """
    mats = dist.all_gather_variable(torch.cat([viewmats.detach().reshape(-1, 16), Ks.detach().reshape(-1, 9)], 1))
    counts = [int(m.shape[0]) for m in mats]
    joined = torch.cat(mats)
    return joined[:, :16].reshape(-1, 4, 4), joined[:, 16:].reshape(-1, 3, 3), counts


def _exchange(send_floats: list[Tensor], send_ints: list[Tensor]) -> tuple[Tensor, Tensor, list[int]]:
    """The rows every rank sent here, concatenated in rank order (floats differentiable), and how many
    came from each rank."""
    floats = dist.all_to_all_variable(send_floats)
    ints = torch.cat(dist.all_to_all_variable(send_ints))
    return torch.cat(floats), ints, [int(t.shape[0]) for t in floats]


def _dense_layout(cameras: Tensor, n_cameras: int) -> tuple[Tensor, int]:
    """For received rows with local camera ids ``cameras [M_total]`` (grouped by sender, each sender's rows
    ordered by camera then Gaussian): ``(slot [M_total], M)`` so that row ``i`` goes to
    ``[cameras[i], slot[i]]`` of a ``[C_s, M]`` batch, each camera's rows in arrival order."""
    order = torch.sort(cameras, stable=True).indices
    per_camera = torch.bincount(cameras, minlength=n_cameras)
    first = torch.cumsum(per_camera, 0) - per_camera
    slot = torch.empty_like(cameras)
    slot[order] = torch.arange(cameras.numel(), device=cameras.device) - first[cameras[order]]
    return slot, int(per_camera.max()) if n_cameras else 0


def rasterize_distributed(
    means: Tensor,  # [N_r, 3] this rank's shard
    quats: Tensor,  # [N_r, 4]
    scales: Tensor,  # [N_r, 3]
    opacities: Tensor,  # [N_r]
    colors: Tensor | None,  # [N_r, D] or SH coefficients [N_r, K, D] with sh_degree
    viewmats: Tensor,  # [C_r, 4, 4] this rank's cameras
    Ks: Tensor,  # [C_r, 3, 3]
    width: int,
    height: int,
    *,
    features: Tensor | None = None,  # [N_r, F], or [C, N_r, F] per camera of the whole step (all ranks')
    sh_degree: int | None = None,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    eps2d: float = 0.3,
    backgrounds: Tensor | None = None,  # [C_r, D] or [D]
    render_mode: RenderMode = "RGB",
    feature_grad_to_geometry: bool = True,
    antialiased: bool = False,
    tile_size: int = 16,
    backend: str = "auto",
    deterministic: bool | None = None,
) -> tuple[Tensor, Tensor | None, Tensor, dict[str, Any]]:
    """Renders this rank's ``C_r`` cameras from the Gaussians of all ranks (collective: every rank calls it).

    Arguments are those of :func:`distill3d.render.rasterize.rasterize`, for this rank's shard and
    cameras; ``width``, ``height``, ``sh_degree``, ``render_mode``, the feature width and the dtype must
    agree across ranks. A rank may hold no Gaussians or no cameras.

    Returns:
        ``(render [C_r, H, W, .], features [C_r, H, W, F] | None, alpha [C_r, H, W, 1], meta)``, as
        ``rasterize`` for this rank's cameras. ``meta`` describes this rank's shard seen from all ``C``
        cameras, which is what densification needs: ``means2d [C, N_r, 2]`` (gradient retained),
        ``radii [C, N_r, 2]``, ``depths``, ``n_cameras = C``, ``width``, ``height``; plus
        ``camera_counts [R]``, ``rows_sent``, ``rows_received``, ``bytes_sent`` (this rank's rows to
        other ranks, both all-to-alls) and ``gradient_bytes_sent`` (what its backward sends back).

    Shapes:
        means ``[N_r, 3]``, quats ``[N_r, 4]``, scales ``[N_r, 3]``, opacities ``[N_r]``,
        colors ``[N_r, D]`` / ``[N_r, K, D]``, features ``[N_r, F]`` or ``[C, N_r, F]`` (``C``: the cameras of
        every rank, in rank order), viewmats ``[C_r, 4, 4]``,
        Ks ``[C_r, 3, 3]``.
    """
    ctx = dist.context()
    all_viewmats, all_Ks, camera_counts = gather_cameras(viewmats, Ks)
    _check_inputs(means, quats, scales, opacities, colors, features, all_viewmats.to(means.dtype),
                  all_Ks.to(means.dtype), width, height, sh_degree, render_mode, tile_size, near_plane, far_plane,
                  eps2d)
    if backend == "gsplat":
        raise ValueError("rasterize_distributed runs the 'torch' or 'native' stages; gsplat's rasterization has no "
                         "feature-carrying distributed mode here (use backend='native' on CUDA)")
    backend = "native" if backend == "auto" and native_status(means.device)[0] else resolve_backend(
        "torch" if backend == "auto" else backend, means.device)
    project, isect, offset_encode, composite = _stage_functions(backend)
    n_all = all_viewmats.shape[0]

    # 2. project the shard into every camera of the step
    radii, means2d, depths, conics, compensations = project(
        means, quats, scales, all_viewmats, all_Ks, width, height, eps2d, near_plane, far_plane)
    if means2d.requires_grad:
        means2d.retain_grad()  # densification of this shard reads meta["means2d"].grad
    buffer, n_color, n_depth = _color_buffer(colors, features, depths, means, all_viewmats, sh_degree, render_mode)
    n_channels = buffer.shape[-1]
    view_opacities = opacities[None].expand(n_all, -1)
    if antialiased:
        view_opacities = view_opacities * compensations

    # 3. visible pairs, grouped by the rank owning their camera (cameras are in rank order)
    rows = torch.cat([means2d, conics, view_opacities[..., None], depths[..., None], buffer], dim=-1)
    owner_first = [sum(camera_counts[:s]) for s in range(ctx.world_size)]
    send_floats, send_ints = [], []
    for s in range(ctx.world_size):
        cams = slice(owner_first[s], owner_first[s] + camera_counts[s])
        camera, gaussian = torch.nonzero((radii[cams] > 0).all(-1), as_tuple=True)  # camera-major, then Gaussian
        send_floats.append(rows[cams][camera, gaussian])
        send_ints.append(torch.cat([radii[cams][camera, gaussian], camera[:, None].to(torch.int32)], dim=1))
    received, received_ints, received_counts = _exchange(send_floats, send_ints)

    # 4. the received rows as a dense [C_r, M] batch, padding culled
    n_mine = camera_counts[ctx.rank]
    camera_ids = received_ints[:, 2].long()
    slot, m = _dense_layout(camera_ids, n_mine)
    flat_index = camera_ids * m + slot
    dense = received.new_zeros(n_mine * m, received.shape[1]).index_copy(0, flat_index, received)
    dense = dense.reshape(n_mine, m, received.shape[1])
    dense_radii = received_ints.new_zeros(n_mine * m, 2).index_copy(0, flat_index, received_ints[:, :2])
    dense_radii = dense_radii.reshape(n_mine, m, 2)
    r_means2d, r_conics, r_opacities, r_depths, r_buffer = dense.split([2, 3, 1, 1, n_channels], dim=-1)

    n_geometry = n_channels if feature_grad_to_geometry else n_color + n_depth
    if n_mine:
        full_backgrounds = _full_backgrounds(backgrounds, n_mine, n_color, n_channels, r_buffer)
        tile_width, tile_height = tiles.tile_grid(width, height, tile_size)
        _, isect_ids, flatten_ids = isect(r_means2d.contiguous(), dense_radii, r_depths[..., 0].contiguous(), tile_size,
                                          tile_width, tile_height)
        isect_offsets = offset_encode(isect_ids, n_mine, tile_width, tile_height)
        native_options = {"deterministic": deterministic} if backend == "native" else {}
        image, alpha = composite(
            r_means2d.contiguous(), r_conics.contiguous(), r_buffer.contiguous(), r_opacities[..., 0].contiguous(),
            width, height, tile_size, isect_offsets, flatten_ids, full_backgrounds, n_geometry, **native_options)
    else:  # a rank without cameras still took part in the exchange; its own part only keeps the graph
        image = r_buffer.new_zeros(0, height, width, n_channels) + r_buffer.sum() * 0
        alpha = r_buffer.new_zeros(0, height, width, 1)

    render, feature_image = split_composited(image, alpha, n_color, n_depth, render_mode, features is not None)
    rows_sent = sum(int(t.shape[0]) for i, t in enumerate(send_floats) if i != ctx.rank)
    rows_from_others = sum(n for i, n in enumerate(received_counts) if i != ctx.rank)
    float_bytes = rows.shape[-1] * rows.element_size()
    meta = projection_meta(backend, radii, means2d, depths, conics, view_opacities, compensations, width, height,
                           tile_size, n_all, render_mode) | {
        "camera_counts": camera_counts,
        "rows_sent": rows_sent,
        "rows_received": int(received.shape[0]),
        "bytes_sent": rows_sent * (float_bytes + 3 * 4),
        # the backward returns the float gradients of the rows other ranks sent here
        "gradient_bytes_sent": rows_from_others * float_bytes,
    }
    return render, feature_image, alpha, meta


__all__ = ["gather_cameras", "rasterize_distributed"]
