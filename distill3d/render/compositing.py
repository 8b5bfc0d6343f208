"""Stage 3 of the rasterizer: per-pixel front-to-back alpha compositing over each tile's sorted list.

For pixel centre ``p`` and the Gaussians ``i = 1, 2, ...`` of its tile in depth order:

.. math::

    d = p - \\mu_i, \\quad \\sigma_i = \\tfrac12 (a d_x^2 + c d_y^2) + b d_x d_y, \\quad
    \\alpha_i = \\min(0.999,\\ o_i e^{-\\sigma_i}),

    T_1 = 1, \\quad T_{i+1} = T_i (1 - \\alpha_i), \\quad
    C(p) = \\sum_i \\alpha_i T_i c_i + T_{\\mathrm{end}}\\, b_g, \\quad A(p) = 1 - T_{\\mathrm{end}}.

A Gaussian is skipped when ``sigma < 0`` or ``alpha < 1/255``, and compositing stops *before* the first
Gaussian that would bring ``T`` to ``<= 1e-4`` (3DGS's cut-offs).

``geometry_channels = g`` implements Feature 3DGS's rule that the feature loss trains only the feature
vectors: channels ``[0, g)`` and the alpha output are differentiable in every input, channels ``[g, D)``
only in their colours (the blending weights ``alpha_i T_i`` and ``T_end`` are detached for them).
"""
from __future__ import annotations

from typing import Iterator

import torch
from torch import Tensor

from distill3d.render.tiles import tile_grid

# 3DGS's compositing cut-offs (shared with the native kernels in csrc/include).
ALPHA_MIN = 1.0 / 255.0
ALPHA_MAX = 0.999
TRANSMITTANCE_MIN = 1e-4
# Alpha below which expected depth divides by this instead (gsplat's guard against empty pixels).
EXPECTED_DEPTH_MIN_ALPHA = 1e-10


def blend_weights(
    pixels: Tensor,  # [P, 2] pixel centres
    means2d: Tensor,  # [L, 2] depth-sorted
    conics: Tensor,  # [L, 3]
    opacities: Tensor,  # [L]
) -> tuple[Tensor, Tensor]:
    """Compositing weights ``w [P, L] = alpha_i T_i`` (0 for skipped or stopped Gaussians), final ``T [P]``."""
    delta = pixels[:, None, :] - means2d[None, :, :]  # [P, L, 2]
    dx, dy = delta.unbind(-1)
    a, b, c = conics.unbind(-1)
    sigma = 0.5 * (a * dx * dx + c * dy * dy) + b * dx * dy
    # sigma < 0 (a non-positive-definite conic) is skipped; clamping it first keeps exp finite, so the
    # masked entries cannot turn into 0 * inf = NaN gradients.
    alpha = torch.clamp(opacities * torch.exp(-sigma.clamp(min=0)), max=ALPHA_MAX)
    considered = (sigma >= 0) & (alpha >= ALPHA_MIN)
    with torch.no_grad():
        # T is non-increasing along the list, so "not yet stopped" is a prefix of it.
        transmittance_after = torch.cumprod(1 - torch.where(considered, alpha, torch.zeros_like(alpha)), dim=1)
        blended = considered & (transmittance_after > TRANSMITTANCE_MIN)
    alpha = torch.where(blended, alpha, torch.zeros_like(alpha))
    # T_1 = 1, T_{i+1} = T_i (1 - alpha_i); the leading column also serves an empty list (L = 0).
    transmittance = torch.cumprod(torch.cat([sigma.new_ones(sigma.shape[0], 1), 1 - alpha], dim=1), dim=1)
    return alpha * transmittance[:, :-1], transmittance[:, -1]


def tile_pixel_lists(
    n_cameras: int,
    width: int,
    height: int,
    tile_size: int,
    isect_offsets: Tensor,  # [C, tile_height, tile_width] int32
    flatten_ids: Tensor,  # [M] int32
    dtype: torch.dtype,
) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
    """For every (camera, tile): ``(pixel_index [P], pixel_centres [P, 2], gaussian_ids [L])``.

    ``pixel_index`` indexes the flattened ``[C * H * W]`` image, ``gaussian_ids`` the flattened
    ``[C * N]`` Gaussians in depth order (tile ``t`` owns ``flatten_ids[offsets[t] : offsets[t + 1]]``).
    """
    tile_width, tile_height = tile_grid(width, height, tile_size)
    device = flatten_ids.device
    starts = isect_offsets.reshape(-1).tolist()
    ends = starts[1:] + [flatten_ids.numel()]
    for camera in range(n_cameras):
        for tile_y in range(tile_height):
            for tile_x in range(tile_width):
                tile = (camera * tile_height + tile_y) * tile_width + tile_x
                xs = torch.arange(tile_x * tile_size, min((tile_x + 1) * tile_size, width), device=device)
                ys = torch.arange(tile_y * tile_size, min((tile_y + 1) * tile_size, height), device=device)
                grid_y, grid_x = (g.reshape(-1) for g in torch.meshgrid(ys, xs, indexing="ij"))
                centres = torch.stack([grid_x, grid_y], dim=-1).to(dtype) + 0.5
                pixel_index = (camera * height + grid_y) * width + grid_x
                yield pixel_index, centres, flatten_ids[starts[tile] : ends[tile]].long()


def rasterize_to_pixels(
    means2d: Tensor,  # [C, N, 2]
    conics: Tensor,  # [C, N, 3]
    colors: Tensor,  # [C, N, D]
    opacities: Tensor,  # [C, N]
    width: int,
    height: int,
    tile_size: int,
    isect_offsets: Tensor,  # [C, tile_height, tile_width] int32
    flatten_ids: Tensor,  # [M] int32
    backgrounds: Tensor | None = None,  # [C, D]
    geometry_channels: int | None = None,
) -> tuple[Tensor, Tensor]:
    """Composites every pixel over its tile's depth-sorted list (torch reference, autograd gradients).

    Returns ``(render [C, H, W, D], alpha [C, H, W, 1])``. ``geometry_channels`` defaults to ``D`` (every
    channel moves geometry). Vectorised per tile: one ``[pixels, Gaussians]`` weight matrix and one matmul.
    """
    n_cameras, _, n_channels = colors.shape
    geometry_channels = n_channels if geometry_channels is None else geometry_channels
    if not 0 <= geometry_channels <= n_channels:
        raise ValueError(f"geometry_channels must be in [0, {n_channels}], got {geometry_channels}")
    flat_means2d = means2d.reshape(-1, 2)
    flat_conics = conics.reshape(-1, 3)
    flat_colors = colors.reshape(-1, n_channels)
    flat_opacities = opacities.reshape(-1)

    pixel_colors, pixel_transmittance, pixel_indices = [], [], []
    for pixel_index, centres, ids in tile_pixel_lists(
        n_cameras, width, height, tile_size, isect_offsets, flatten_ids, colors.dtype
    ):
        pixel_indices.append(pixel_index)
        # An empty tile goes through the same ops: its zeros stay connected to the inputs' graph.
        weights, transmittance = blend_weights(centres, flat_means2d[ids], flat_conics[ids], flat_opacities[ids])
        tile_colors = flat_colors[ids]
        geometry = weights @ tile_colors[:, :geometry_channels]
        feature = weights.detach() @ tile_colors[:, geometry_channels:]
        pixel_colors.append(torch.cat([geometry, feature], dim=-1))
        pixel_transmittance.append(transmittance)

    # Tiles were visited in tile order; put the pixels back in image order.
    order = torch.argsort(torch.cat(pixel_indices))
    render = torch.cat(pixel_colors)[order].reshape(n_cameras, height, width, n_channels)
    transmittance = torch.cat(pixel_transmittance)[order].reshape(n_cameras, height, width, 1)
    if backgrounds is not None:
        background = backgrounds[:, None, None, :]
        render = render + torch.cat(
            [
                transmittance * background[..., :geometry_channels],
                transmittance.detach() * background[..., geometry_channels:],
            ],
            dim=-1,
        )
    return render, 1 - transmittance


@torch.no_grad()
def count_blends(
    means2d: Tensor,  # [C, N, 2]
    conics: Tensor,  # [C, N, 3]
    opacities: Tensor,  # [C, N]
    width: int,
    height: int,
    tile_size: int,
    isect_offsets: Tensor,  # [C, tile_height, tile_width] int32
    flatten_ids: Tensor,  # [M] int32
) -> int:
    """Number of (pixel, Gaussian) pairs actually composited (the work measure of the benchmark)."""
    total = 0
    for _, centres, ids in tile_pixel_lists(
        means2d.shape[0], width, height, tile_size, isect_offsets, flatten_ids, means2d.dtype
    ):
        weights, _ = blend_weights(centres, means2d.reshape(-1, 2)[ids], conics.reshape(-1, 3)[ids], opacities.reshape(-1)[ids])
        total += int((weights > 0).sum())
    return total
