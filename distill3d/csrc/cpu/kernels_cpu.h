// CPU kernels of the rasterizer: plain pointers and sizes, no torch types (bindings.cpp adapts).
// All tensors are contiguous; flatten ids index the [C * N] flattened (camera, Gaussian) pairs.
#pragma once

#include <cstdint>
#include <vector>

#include "distill3d/common.h"
#include "distill3d/projection_math.h"

namespace distill3d {
namespace cpu {

// --- projection -------------------------------------------------------------------------------

// Projects N Gaussians (means [N,3], quats [N,4] wxyz, scales [N,3]) into C cameras (viewmats [C,4,4],
// Ks [C,3,3]): radii [C,N,2], means2d [C,N,2], conics [C,N,3], compensations [C,N] (depths come from torch).
template <typename scalar_t>
void project_forward(int64_t C, int64_t N, const ProjectionParams<scalar_t>& params, const scalar_t* means,
                     const scalar_t* quats, const scalar_t* scales, const scalar_t* viewmats, const scalar_t* Ks,
                     int32_t* radii, scalar_t* means2d, scalar_t* conics, scalar_t* compensations);

// Writes v_means [N,3], v_quats [N,4], v_scales [N,3] from the gradients of the forward's outputs
// (`radii` are the forward's: pairs with radius 0 pass no gradient).
template <typename scalar_t>
void project_backward(int64_t C, int64_t N, const ProjectionParams<scalar_t>& params, const scalar_t* means,
                      const scalar_t* quats, const scalar_t* scales, const scalar_t* viewmats, const scalar_t* Ks,
                      const int32_t* radii, const scalar_t* v_means2d,
                      const scalar_t* v_conics, const scalar_t* v_compensations, scalar_t* v_means,
                      scalar_t* v_quats, scalar_t* v_scales);

// --- tile binning -------------------------------------------------------------------------------

// Tile grid of one image: tile_size pixels a side, tile_width x tile_height tiles.
struct TileGrid {
    int64_t tile_size, tile_width, tile_height;
};

// Per-tile buckets of the intersection list (see isect_tiles_cpu.cpp). Flat Gaussians are split into
// `chunks` contiguous ranges; cursor[chunk * tiles + tile] is where that chunk writes its next
// intersection with that tile, tile_start[tile] where the tile's bucket starts (tile_start[tiles] = M).
struct TileBins {
    int64_t chunks = 0, tiles = 0;
    std::vector<int64_t> cursor, tile_start;
    int64_t intersections() const { return tile_start.empty() ? 0 : tile_start.back(); }
};

// Counts the tiles of every projected Gaussian into tiles_per_gauss[C*N] and sizes the buckets.
template <typename scalar_t>
TileBins isect_bin(int64_t C, int64_t N, const scalar_t* means2d, const int32_t* radii, const TileGrid& grid,
                   int32_t* tiles_per_gauss);

// Writes the M = bins.intersections() keys and flatten ids (flat ids < 2^31), sorted by (camera, tile,
// depth), ties by index, into the buckets of `bins` (which it consumes).
template <typename scalar_t>
void isect_fill_sorted(int64_t C, int64_t N, const scalar_t* means2d, const int32_t* radii, const scalar_t* depths,
                       const TileGrid& grid, TileBins& bins, int64_t* isect_ids, int32_t* flatten_ids);

// offsets[C * th * tw]: index of the first intersection of each (camera, tile) in the sorted ids
// (an empty tile gets the start of the next one, so tile t spans [offsets[t], offsets[t + 1])).
void isect_offset_encode(int64_t M, const int64_t* isect_ids, int64_t C, int64_t tile_width, int64_t tile_height,
                         int32_t* offsets);

// --- compositing --------------------------------------------------------------------------------

// render[C,H,W,D], transmittance[C,H,W] (final T), last_ids[C,H,W] (index into flatten_ids of the
// last blended Gaussian, -1 if none). `backgrounds` [C,D] may be null.
template <typename scalar_t>
void rasterize_forward(const RasterDims& dims, const BlendParams<scalar_t>& params, const scalar_t* means2d,
                       const scalar_t* conics, const scalar_t* colors, const scalar_t* opacities,
                       const scalar_t* backgrounds, const int32_t* isect_offsets, const int32_t* flatten_ids,
                       scalar_t* render, scalar_t* transmittance, int32_t* last_ids);

// Accumulates (+=) into zero-initialised v_means2d [C,N,2], v_conics [C,N,3], v_colors [C,N,D],
// v_opacities [C,N]. v_render [C,H,W,D], v_alpha [C,H,W] (alpha = 1 - T). `deterministic`: add each
// Gaussian's per-tile gradients in tile order (bitwise reproducible, any thread count) instead of with
// atomics in thread order.
template <typename scalar_t>
void rasterize_backward(const RasterDims& dims, const BlendParams<scalar_t>& params, const scalar_t* means2d,
                        const scalar_t* conics, const scalar_t* colors, const scalar_t* opacities,
                        const scalar_t* backgrounds, const int32_t* isect_offsets, const int32_t* flatten_ids,
                        const scalar_t* transmittance, const int32_t* last_ids, const scalar_t* v_render,
                        const scalar_t* v_alpha, scalar_t* v_means2d, scalar_t* v_conics, scalar_t* v_colors,
                        scalar_t* v_opacities, bool deterministic);

}  // namespace cpu
}  // namespace distill3d
