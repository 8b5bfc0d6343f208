"""Stage 2 of the rasterizer: bin projected Gaussians into screen tiles, each tile's list sorted by depth.

A Gaussian with screen centre ``(mx, my)`` and radius ``r > 0`` touches the tiles

.. math::

    x \\in [\\mathrm{clamp}(\\lfloor (m_x - r) / T \\rfloor, 0, t_w),\\ \\mathrm{clamp}(\\lceil (m_x + r) / T \\rceil, 0, t_w))

(the same for ``y`` with ``t_h``), where ``T`` is the tile size and ``t_w x t_h`` the tile grid. Every
(camera, tile, Gaussian) intersection gets a 64-bit key, laid out as gsplat's:

    key = camera << (32 + tile_bits)  |  tile << 32  |  float32 bits of the depth,

with ``tile_bits`` the fewest bits holding ``t_w t_h`` tile indices (the native kernels use the same key)

(depths are > near > 0, so their IEEE bits sort like the values). A stable sort of the keys orders each
tile's list by depth, ties by Gaussian index; ``isect_offset_encode`` gives where each tile's run starts.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

# Bit position of the (camera, tile) part of an intersection key; the low 32 bits hold the depth.
TILE_KEY_SHIFT = 32


def tile_bits(n_tiles: int) -> int:
    """Fewest bits that store a tile index in ``[0, n_tiles)``."""
    return (n_tiles - 1).bit_length()


def tile_grid(width: int, height: int, tile_size: int) -> tuple[int, int]:
    """``(tile_width, tile_height)``: the number of tiles covering the image."""
    return math.ceil(width / tile_size), math.ceil(height / tile_size)


def tile_bounds(
    means2d: Tensor,  # [C, N, 2]
    radii: Tensor,  # [C, N, 2] int32
    tile_size: int,
    tile_width: int,
    tile_height: int,
) -> tuple[Tensor, Tensor]:
    """``(tile_min, tile_max)`` [C, N, 2] int64: the half-open tile box of each Gaussian (empty if culled)."""
    means2d = means2d.detach()
    radius = radii.to(means2d.dtype)
    limits = torch.tensor([tile_width, tile_height], device=means2d.device)
    tile_min = torch.floor((means2d - radius) / tile_size).long().clamp(min=0).minimum(limits)
    tile_max = torch.ceil((means2d + radius) / tile_size).long().clamp(min=0).minimum(limits)
    culled = (radii <= 0).any(dim=-1, keepdim=True)
    tile_max = torch.where(culled, tile_min, tile_max)
    return tile_min, tile_max


@torch.no_grad()
def isect_tiles(
    means2d: Tensor,  # [C, N, 2]
    radii: Tensor,  # [C, N, 2] int32
    depths: Tensor,  # [C, N]
    tile_size: int,
    tile_width: int,
    tile_height: int,
) -> tuple[Tensor, Tensor, Tensor]:
    """Lists every (camera, tile, Gaussian) intersection, sorted by tile then depth.

    Returns ``(tiles_per_gauss [C, N] int32, isect_ids [M] int64, flatten_ids [M] int32)``, where
    ``flatten_ids`` index the flattened ``[C * N]`` Gaussians (``camera * N + gaussian``).
    """
    n_cameras, n_gaussians = depths.shape
    device = means2d.device
    tile_min, tile_max = tile_bounds(means2d, radii, tile_size, tile_width, tile_height)
    extent = tile_max - tile_min  # [C, N, 2]
    tiles_per_gauss = (extent[..., 0] * extent[..., 1]).reshape(-1)  # [C * N]

    # Enumerate each Gaussian's tile box row-major: intersection k of Gaussian g is tile
    # (x_min + k % box_width, y_min + k // box_width).
    flat_ids = torch.repeat_interleave(torch.arange(n_cameras * n_gaussians, device=device), tiles_per_gauss)
    first = torch.cumsum(tiles_per_gauss, 0) - tiles_per_gauss
    local = torch.arange(flat_ids.numel(), device=device) - first[flat_ids]
    box_width = extent.reshape(-1, 2)[flat_ids, 0]
    box_min = tile_min.reshape(-1, 2)[flat_ids]
    tile_x = box_min[:, 0] + local % box_width.clamp(min=1)
    tile_y = box_min[:, 1] + local // box_width.clamp(min=1)
    camera = flat_ids // n_gaussians
    tile_key = (camera << tile_bits(tile_width * tile_height)) | (tile_y * tile_width + tile_x)

    depth_bits = depths.detach().to(torch.float32).reshape(-1)[flat_ids].view(torch.int32).long() & 0xFFFFFFFF
    isect_ids = (tile_key << TILE_KEY_SHIFT) | depth_bits
    isect_ids, order = torch.sort(isect_ids, stable=True)
    flatten_ids = flat_ids[order].to(torch.int32)
    return tiles_per_gauss.reshape(n_cameras, n_gaussians).to(torch.int32), isect_ids, flatten_ids


@torch.no_grad()
def isect_offset_encode(isect_ids: Tensor, n_cameras: int, tile_width: int, tile_height: int) -> Tensor:
    """``offsets [C, tile_height, tile_width] int32``: index in the sorted list where each tile's run starts.

    Tile ``t``'s Gaussians are ``flatten_ids[offsets[t] : offsets[t + 1]]`` (the last ends at M).
    """
    n_tiles = tile_height * tile_width
    device = isect_ids.device
    wanted = (torch.arange(n_cameras, device=device)[:, None] << tile_bits(n_tiles)) | torch.arange(n_tiles, device=device)
    starts = torch.searchsorted(isect_ids >> TILE_KEY_SHIFT, wanted.reshape(-1))
    return starts.to(torch.int32).reshape(n_cameras, tile_height, tile_width)
