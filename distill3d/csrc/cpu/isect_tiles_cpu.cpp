// Tile binning on the CPU: count the tiles of every projected Gaussian, write one sort key per
// (camera, tile, Gaussian) intersection (see distill3d/tile_math.h), sort, and encode tile offsets.
//
// The sort is a least-significant-digit radix sort on the key bits in use (32 depth bits + tile bits +
// camera bits), 8 bits per pass, skipping passes where every key has the same digit. LSD radix sort
// is stable and keys are written in flatten-id order, so equal keys keep ascending Gaussian index.
#include <algorithm>
#include <array>
#include <vector>

#include "distill3d/tile_math.h"
#include "kernels_cpu.h"

namespace distill3d {
namespace cpu {

template <typename scalar_t>
void isect_count(int64_t C, int64_t N, const scalar_t* means2d, const int32_t* radii, int64_t tile_size,
                 int64_t tile_width, int64_t tile_height, int32_t* tiles_per_gauss) {
#pragma omp parallel for schedule(static) if (C * N >= kMinParallelGaussians)
    for (int64_t i = 0; i < C * N; ++i) {
        const TileRect r = tile_rect(means2d[2 * i], means2d[2 * i + 1], radii[2 * i], radii[2 * i + 1], tile_size,
                                     tile_width, tile_height);
        tiles_per_gauss[i] = int32_t(r.count());
    }
}

namespace {
// Stable LSD radix sort of (keys, ids) on the low `key_bits` bits; the result ends in keys / ids.
void radix_sort_pairs(int64_t M, int key_bits, int64_t* keys, int32_t* ids, int64_t* tmp_keys, int32_t* tmp_ids) {
    constexpr int kDigitBits = 8;
    constexpr int kBuckets = 1 << kDigitBits;
    int64_t* src_k = keys;
    int32_t* src_i = ids;
    int64_t* dst_k = tmp_keys;
    int32_t* dst_i = tmp_ids;
    for (int shift = 0; shift < key_bits; shift += kDigitBits) {
        std::array<int64_t, kBuckets> count{};
        for (int64_t m = 0; m < M; ++m) ++count[(uint64_t(src_k[m]) >> shift) & (kBuckets - 1)];
        if (*std::max_element(count.begin(), count.end()) == M) continue;  // digit constant: no-op pass
        int64_t running = 0;
        for (auto& c : count) {
            const int64_t n = c;
            c = running;
            running += n;
        }
        for (int64_t m = 0; m < M; ++m) {
            const int64_t pos = count[(uint64_t(src_k[m]) >> shift) & (kBuckets - 1)]++;
            dst_k[pos] = src_k[m];
            dst_i[pos] = src_i[m];
        }
        std::swap(src_k, dst_k);
        std::swap(src_i, dst_i);
    }
    if (src_k != keys) {
        std::copy(src_k, src_k + M, keys);
        std::copy(src_i, src_i + M, ids);
    }
}
}  // namespace

template <typename scalar_t>
void isect_fill_sorted(int64_t C, int64_t N, const scalar_t* means2d, const int32_t* radii, const scalar_t* depths,
                       int64_t tile_size, int64_t tile_width, int64_t tile_height, const int32_t* tiles_per_gauss,
                       const int64_t* starts, int64_t M, int64_t* isect_ids, int32_t* flatten_ids,
                       int64_t* scratch_keys, int32_t* scratch_ids) {
    if (M == 0) return;
    const int tile_bits = bits_for(tile_width * tile_height);
#pragma omp parallel for schedule(static) if (C * N >= kMinParallelGaussians)
    for (int64_t i = 0; i < C * N; ++i) {
        if (tiles_per_gauss[i] == 0) continue;
        fill_intersections(i, N, means2d, radii, depths, tile_size, tile_width, tile_height, tile_bits, starts[i],
                           isect_ids, flatten_ids);
    }
    radix_sort_pairs(M, 32 + tile_bits + bits_for(C), isect_ids, flatten_ids, scratch_keys, scratch_ids);
}

void isect_offset_encode(int64_t M, const int64_t* isect_ids, int64_t C, int64_t tile_width, int64_t tile_height,
                         int32_t* offsets) {
    const int64_t tiles_per_camera = tile_width * tile_height;
    const int tile_bits = bits_for(tiles_per_camera);
    const int64_t num_tiles = C * tiles_per_camera;
    // offsets[t] = number of intersections whose tile index is below t (keys are sorted).
    int64_t m = 0;
    for (int64_t t = 0; t < num_tiles; ++t) {
        while (m < M && isect_key_tile(isect_ids[m], tile_bits, tiles_per_camera) < t) ++m;
        offsets[t] = int32_t(m);
    }
}

#define D3_INSTANTIATE(T)                                                                                         \
    template void isect_count<T>(int64_t, int64_t, const T*, const int32_t*, int64_t, int64_t, int64_t,           \
                                 int32_t*);                                                                       \
    template void isect_fill_sorted<T>(int64_t, int64_t, const T*, const int32_t*, const T*, int64_t, int64_t,    \
                                       int64_t, const int32_t*, const int64_t*, int64_t, int64_t*, int32_t*, int64_t*,      \
                                       int32_t*);
D3_INSTANTIATE(float)
D3_INSTANTIATE(double)
#undef D3_INSTANTIATE

}  // namespace cpu
}  // namespace distill3d
