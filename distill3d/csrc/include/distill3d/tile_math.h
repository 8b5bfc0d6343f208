// Tile binning math shared by CPU and CUDA.
//
// A projected Gaussian with centre m and radius r touches the tiles
//   x in [clamp(floor((m_x - r_x) / ts), 0, tw), clamp(ceil((m_x + r_x) / ts), 0, tw))
// (same for y). Each (camera, tile, Gaussian) intersection gets a 64-bit sort key
//   camera << (32 + tile_bits) | tile << 32 | float_bits(depth)
// so one ascending sort orders intersections by camera, then tile, then depth (positive floats order
// like their bit patterns). A stable sort keeps equal depths in Gaussian-index order.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#include "distill3d/common.h"

namespace distill3d {

struct TileRect {
    int64_t x_min, x_max, y_min, y_max;  // half-open [min, max)
    D3_HD int64_t count() const { return (x_max - x_min) * (y_max - y_min); }
};

D3_HD int64_t clamp_index(int64_t v, int64_t hi) { return v < 0 ? 0 : (v > hi ? hi : v); }

// Tiles touched by one Gaussian; empty when either radius is not positive (culled).
template <typename scalar_t>
D3_HD TileRect tile_rect(scalar_t mx, scalar_t my, int32_t rx, int32_t ry, int64_t tile_size,
                         int64_t tile_width, int64_t tile_height) {
    TileRect r{0, 0, 0, 0};
    if (rx <= 0 || ry <= 0) return r;
    const scalar_t ts = scalar_t(tile_size);
    r.x_min = clamp_index(int64_t(std::floor((mx - scalar_t(rx)) / ts)), tile_width);
    r.x_max = clamp_index(int64_t(std::ceil((mx + scalar_t(rx)) / ts)), tile_width);
    r.y_min = clamp_index(int64_t(std::floor((my - scalar_t(ry)) / ts)), tile_height);
    r.y_max = clamp_index(int64_t(std::ceil((my + scalar_t(ry)) / ts)), tile_height);
    if (r.x_max <= r.x_min || r.y_max <= r.y_min) r.x_max = r.x_min = r.y_max = r.y_min = 0;
    return r;
}

// Number of bits needed to store values in [0, n).
D3_HD int bits_for(int64_t n) {
    int bits = 0;
    while ((int64_t(1) << bits) < n) ++bits;
    return bits;
}

// IEEE bits of the depth as float32: they order like the values for the positive depths of visible Gaussians.
template <typename scalar_t>
D3_HD uint32_t depth_bits(scalar_t depth) {
    const float depth_f = float(depth);
#if defined(__CUDA_ARCH__)
    return __float_as_uint(depth_f);
#else
    uint32_t bits;
    std::memcpy(&bits, &depth_f, sizeof(bits));
    return bits;
#endif
}

template <typename scalar_t>
D3_HD int64_t isect_key(int64_t camera, int64_t tile, scalar_t depth, int tile_bits) {
    return (camera << (32 + tile_bits)) | (tile << 32) | int64_t(depth_bits(depth));
}

// Writes the keys and flat ids of Gaussian i (flat index camera * N + gaussian) from position `pos` on:
// one Gaussian's share of the intersection list, filled the same way by the CPU loop and the CUDA thread.
template <typename scalar_t>
D3_HD void fill_intersections(int64_t i, int64_t N, const scalar_t* means2d, const int32_t* radii,
                              const scalar_t* depths, int64_t tile_size, int64_t tile_width, int64_t tile_height,
                              int tile_bits, int64_t pos, int64_t* isect_ids, int32_t* flatten_ids) {
    const TileRect r = tile_rect(means2d[2 * i], means2d[2 * i + 1], radii[2 * i], radii[2 * i + 1], tile_size,
                                 tile_width, tile_height);
    const int64_t camera = i / N;
    for (int64_t ty = r.y_min; ty < r.y_max; ++ty) {
        for (int64_t tx = r.x_min; tx < r.x_max; ++tx) {
            isect_ids[pos] = isect_key(camera, ty * tile_width + tx, depths[i], tile_bits);
            flatten_ids[pos] = int32_t(i);
            ++pos;
        }
    }
}

// The (camera * tiles_per_camera + tile) index of a key.
D3_HD int64_t isect_key_tile(int64_t key, int tile_bits, int64_t tiles_per_camera) {
    const int64_t camera = key >> (32 + tile_bits);
    const int64_t tile = (key >> 32) & ((int64_t(1) << tile_bits) - 1);
    return camera * tiles_per_camera + tile;
}

}  // namespace distill3d
