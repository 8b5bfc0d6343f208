// One image tile as the CPU compositing kernels see it: a dense block of tile_size^2 pixels stored
// structure-of-arrays, so loops over the block's pixels vectorise (one SIMD lane per pixel) for any
// channel count D. Pixels of a border tile that fall outside the image, and the padding up to a
// whole number of kLaneBlock lanes, are kept as inactive lanes.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <utility>
#include <vector>

#include "distill3d/common.h"

namespace distill3d {
namespace cpu {

// Lanes per register block of the colour micro-kernel (one AVX-512 register of floats).
constexpr int64_t kLaneBlock = 16;

template <typename scalar_t>
struct TileBlock {
    int64_t camera = 0, tile_x = 0, tile_y = 0;
    int64_t isect_begin = 0, isect_end = 0;  // range of this tile in flatten_ids
    int64_t pixels = 0;                      // tile_size^2 lanes rounded up to kLaneBlock
    std::vector<scalar_t> centre_x, centre_y;  // pixel centres (x + 0.5, y + 0.5)
    std::vector<scalar_t> inside;              // 1 for lanes inside the image, else 0

    explicit TileBlock(int64_t tile_size)
        : pixels((tile_size * tile_size + kLaneBlock - 1) / kLaneBlock * kLaneBlock),
          centre_x(pixels),
          centre_y(pixels),
          inside(pixels) {}

    // Points the block at flat tile index `t` = (camera * tile_height + tile_y) * tile_width + tile_x.
    void select(int64_t t, const RasterDims& dims, const int32_t* isect_offsets) {
        const int64_t tiles_per_camera = dims.tile_width * dims.tile_height;
        camera = t / tiles_per_camera;
        tile_y = (t % tiles_per_camera) / dims.tile_width;
        tile_x = t % dims.tile_width;
        isect_begin = isect_offsets[t];
        isect_end = t + 1 < dims.cameras * tiles_per_camera ? isect_offsets[t + 1] : dims.intersections;
        const int64_t ts = dims.tile_size;
        for (int64_t p = 0; p < pixels; ++p) {
            const int64_t x = tile_x * ts + p % ts, y = tile_y * ts + p / ts;
            centre_x[p] = scalar_t(x) + scalar_t(0.5);
            centre_y[p] = scalar_t(y) + scalar_t(0.5);
            inside[p] = (p < ts * ts && x < dims.width && y < dims.height) ? scalar_t(1) : scalar_t(0);
        }
    }

    // Lanes [begin, end) of the tile rows whose pixel centres lie within my +- half_height, widened by
    // one row each way so float rounding at the border never drops a pixel that blends.
    std::pair<int64_t, int64_t> row_lanes(double my, double half_height, int64_t tile_size) const {
        if (half_height < 0) return {0, 0};
        const double top = double(tile_y * tile_size) + 0.5;  // centre of the tile's first row
        const double lo = std::floor(my - half_height - top) - 1, hi = std::ceil(my + half_height - top) + 2;
        const int64_t row_begin = int64_t(std::max(0.0, std::min(double(tile_size), lo)));
        const int64_t row_end = int64_t(std::max(0.0, std::min(double(tile_size), hi)));
        return {row_begin * tile_size, std::max(row_begin, row_end) * tile_size};
    }

    // Flat index (camera, y, x) of lane p in a [C, H, W] image, or -1 if outside the image.
    int64_t pixel_index(int64_t p, const RasterDims& dims) const {
        const int64_t ts = dims.tile_size;
        const int64_t x = tile_x * ts + p % ts, y = tile_y * ts + p / ts;
        if (p >= ts * ts || x >= dims.width || y >= dims.height) return -1;
        return (camera * dims.height + y) * dims.width + x;
    }
};

}  // namespace cpu
}  // namespace distill3d
