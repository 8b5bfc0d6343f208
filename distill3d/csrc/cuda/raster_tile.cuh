// One image tile per CUDA block, one pixel per thread (threads rounded up to whole warps; the extra
// threads are pixels outside the image). The block stages its tile's Gaussians in shared memory in
// batches of blockDim, as 3DGS / gsplat do.
#pragma once

#include <type_traits>

#include "distill3d/common.h"

namespace distill3d {
namespace cuda {

constexpr int kWarp = 32;

inline int threads_per_tile(int64_t tile_size) {
    return int((tile_size * tile_size + kWarp - 1) / kWarp * kWarp);
}

// The compositing kernels hold kChunk channels per thread in registers, one block per (tile, chunk).
// The chunk is the smallest of 4, 8, 16, 32 channels that holds D (32 beyond): small D wastes no
// registers, and more than 32 float sums per thread would cut occupancy. `launch` is called with a
// std::integral_constant<int, kChunk>.
template <typename Launch>
void with_channel_chunk(int64_t channels, Launch&& launch) {
    if (channels <= 4)
        launch(std::integral_constant<int, 4>{});
    else if (channels <= 8)
        launch(std::integral_constant<int, 8>{});
    else if (channels <= 16)
        launch(std::integral_constant<int, 16>{});
    else
        launch(std::integral_constant<int, 32>{});
}

D3_HD int64_t channel_chunks(int64_t channels, int chunk) {
    return channels == 0 ? 1 : (channels + chunk - 1) / chunk;
}

inline dim3 chunked_tile_grid(const RasterDims& dims, int chunk) {
    const int64_t num_tiles = dims.cameras * dims.tile_width * dims.tile_height;
    return dim3{unsigned(num_tiles), unsigned(channel_chunks(dims.channels, chunk))};
}

// Backward gradients per (Gaussian, tile, channel chunk) besides the colours: dL/dmean2d (x, y),
// dL/dconic (a, b, c), dL/dopacity.
constexpr int kGeometryGrads = 6;

// Values per intersection row of the deterministic backward: the geometry gradients of every channel
// chunk, then the D colour gradients.
D3_HD int64_t backward_row_width(int64_t channels, int chunk) {
    return kGeometryGrads * channel_chunks(channels, chunk) + channels;
}

// Shared-memory batch of Gaussians: flatten id, mean (x, y), conic (a, b, c), opacity.
template <typename scalar_t>
struct GaussianBatch {
    int32_t* ids;
    scalar_t* xy;
    scalar_t* conic;
    scalar_t* opacity;

    __device__ GaussianBatch(unsigned char* smem, int capacity) {
        xy = reinterpret_cast<scalar_t*>(smem);
        conic = xy + 2 * capacity;
        opacity = conic + 3 * capacity;
        ids = reinterpret_cast<int32_t*>(opacity + capacity);
    }

    static size_t bytes(int capacity) { return size_t(capacity) * (6 * sizeof(scalar_t) + sizeof(int32_t)); }

    __device__ void load(int slot, int64_t k, const int32_t* flatten_ids, const scalar_t* means2d,
                         const scalar_t* conics, const scalar_t* opacities) {
        const int32_t g = flatten_ids[k];
        ids[slot] = g;
        xy[2 * slot] = means2d[2 * int64_t(g)];
        xy[2 * slot + 1] = means2d[2 * int64_t(g) + 1];
        conic[3 * slot] = conics[3 * int64_t(g)];
        conic[3 * slot + 1] = conics[3 * int64_t(g) + 1];
        conic[3 * slot + 2] = conics[3 * int64_t(g) + 2];
        opacity[slot] = opacities[g];
    }
};

// Where this thread's pixel lies: camera, pixel (x, y), flat [C, H, W] index, and its tile's range.
struct TilePixel {
    int64_t camera, x, y, pixel, isect_begin, isect_end;
    bool inside;

    __device__ TilePixel(const RasterDims& dims, const int32_t* isect_offsets) {
        const int64_t tiles_per_camera = dims.tile_width * dims.tile_height;
        const int64_t tile = blockIdx.x;
        camera = tile / tiles_per_camera;
        const int64_t tile_y = (tile % tiles_per_camera) / dims.tile_width;
        const int64_t tile_x = tile % dims.tile_width;
        const int64_t local = threadIdx.x;
        x = tile_x * dims.tile_size + local % dims.tile_size;
        y = tile_y * dims.tile_size + local / dims.tile_size;
        inside = local < dims.tile_size * dims.tile_size && x < dims.width && y < dims.height;
        pixel = inside ? (camera * dims.height + y) * dims.width + x : 0;
        isect_begin = isect_offsets[tile];
        isect_end = tile + 1 < dims.cameras * tiles_per_camera ? isect_offsets[tile + 1] : dims.intersections;
    }
};

}  // namespace cuda
}  // namespace distill3d
