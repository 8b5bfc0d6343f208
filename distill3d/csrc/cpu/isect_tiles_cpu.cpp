// Tile binning on the CPU: per-tile buckets filled in Gaussian order, then a depth sort inside each tile.
//
// 1. count (parallel over chunks of Gaussians): each Gaussian's tile rectangle (distill3d/tile_math.h)
//    gives tiles_per_gauss and adds 1 to its chunk's count of every tile it touches;
// 2. prefix sums over (tile, chunk) give each chunk its own write cursor in each tile's bucket;
// 3. fill (parallel over chunks): each intersection is written as (depth bits << 32 | flat id) at its
//    chunk's cursor, so a bucket holds its Gaussians in ascending flat id order;
// 4. sort (parallel over tiles): a stable LSD radix sort of each bucket on the 32 depth bits (8 bits a
//    pass, passes whose digit is constant skipped) orders it by depth, ties by Gaussian index; then each
//    entry becomes the key camera << (32 + tile_bits) | tile << 32 | depth bits and its flat id.
// The result is the global stable sort of the reference (distill3d/render/tiles.py), but every pass
// scales with cores, the per-tile sorts touch cache-sized buckets, and no M-sized scratch is needed.
#include <algorithm>
#include <array>
#include <cstring>
#include <vector>

#include <omp.h>

#include "distill3d/tile_math.h"
#include "kernels_cpu.h"

namespace distill3d {
namespace cpu {

namespace {
// Flat Gaussians [begin, end) of chunk c.
inline int64_t chunk_begin(int64_t c, int64_t chunks, int64_t count) { return count * c / chunks; }

template <typename scalar_t>
inline TileRect rect_of(int64_t i, const scalar_t* means2d, const int32_t* radii, const TileGrid& grid) {
    return tile_rect(means2d[2 * i], means2d[2 * i + 1], radii[2 * i], radii[2 * i + 1], grid.tile_size,
                     grid.tile_width, grid.tile_height);
}

// Buckets up to this size are sorted by insertion (the radix sort's histograms cost more).
constexpr int64_t kInsertionSortMax = 48;

// Sorts v[0, n) ascending by the high 32 bits, stable (so equal depths keep ascending ids).
void sort_bucket(uint64_t* v, int64_t n, std::vector<uint64_t>& scratch) {
    if (n <= kInsertionSortMax) {
        // The low 32 bits (flat ids) ascend and are unique, so sorting whole values is the stable sort.
        for (int64_t i = 1; i < n; ++i) {
            const uint64_t x = v[i];
            int64_t j = i - 1;
            for (; j >= 0 && v[j] > x; --j) v[j + 1] = v[j];
            v[j + 1] = x;
        }
        return;
    }
    constexpr int kDigits = 4, kBuckets = 256;
    std::array<std::array<int64_t, kBuckets>, kDigits> count{};
    for (int64_t i = 0; i < n; ++i) {
        const uint32_t depth = uint32_t(v[i] >> 32);
        for (int d = 0; d < kDigits; ++d) ++count[d][(depth >> (8 * d)) & 0xFF];
    }
    if (int64_t(scratch.size()) < n) scratch.resize(n);
    uint64_t *src = v, *dst = scratch.data();
    for (int d = 0; d < kDigits; ++d) {
        auto& c = count[d];
        if (*std::max_element(c.begin(), c.end()) == n) continue;  // constant digit: the pass changes nothing
        int64_t running = 0;
        for (auto& slot : c) {
            const int64_t here = slot;
            slot = running;
            running += here;
        }
        for (int64_t i = 0; i < n; ++i) dst[c[(uint32_t(src[i] >> 32) >> (8 * d)) & 0xFF]++] = src[i];
        std::swap(src, dst);
    }
    if (src != v) std::copy_n(src, n, v);
}
}  // namespace

template <typename scalar_t>
TileBins isect_bin(int64_t C, int64_t N, const scalar_t* means2d, const int32_t* radii, const TileGrid& grid,
                   int32_t* tiles_per_gauss) {
    TileBins bins;
    const int64_t flat = C * N;
    bins.tiles = C * grid.tile_width * grid.tile_height;
    bins.chunks = flat >= kMinParallelGaussians ? std::max(1, omp_get_max_threads()) : 1;
    std::vector<int64_t> counts(bins.chunks * bins.tiles, 0);  // [chunk][tile]
    const int64_t tiles_per_camera = grid.tile_width * grid.tile_height;
#pragma omp parallel for schedule(static, 1) if (bins.chunks > 1)
    for (int64_t c = 0; c < bins.chunks; ++c) {
        int64_t* count = counts.data() + c * bins.tiles;
        for (int64_t i = chunk_begin(c, bins.chunks, flat), end = chunk_begin(c + 1, bins.chunks, flat); i < end; ++i) {
            const TileRect r = rect_of(i, means2d, radii, grid);
            tiles_per_gauss[i] = int32_t(r.count());
            int64_t* camera_count = count + (i / N) * tiles_per_camera;
            for (int64_t ty = r.y_min; ty < r.y_max; ++ty)
                for (int64_t tx = r.x_min; tx < r.x_max; ++tx) ++camera_count[ty * grid.tile_width + tx];
        }
    }
    // Bucket t starts after all earlier buckets; chunk c writes after chunks < c inside it.
    bins.tile_start.resize(bins.tiles + 1);
    bins.cursor.resize(bins.chunks * bins.tiles);
    int64_t running = 0;
    for (int64_t t = 0; t < bins.tiles; ++t) {
        bins.tile_start[t] = running;
        for (int64_t c = 0; c < bins.chunks; ++c) {
            bins.cursor[c * bins.tiles + t] = running;
            running += counts[c * bins.tiles + t];
        }
    }
    bins.tile_start[bins.tiles] = running;
    return bins;
}

template <typename scalar_t>
void isect_fill_sorted(int64_t C, int64_t N, const scalar_t* means2d, const int32_t* radii, const scalar_t* depths,
                       const TileGrid& grid, TileBins& bins, int64_t* isect_ids, int32_t* flatten_ids) {
    const int64_t flat = C * N, tiles_per_camera = grid.tile_width * grid.tile_height;
    if (bins.intersections() == 0) return;
    uint64_t* values = reinterpret_cast<uint64_t*>(isect_ids);  // (depth bits << 32 | flat id) until the end
#pragma omp parallel if (bins.chunks > 1)
    {
#pragma omp for schedule(static, 1)
        for (int64_t c = 0; c < bins.chunks; ++c) {
            int64_t* cursor = bins.cursor.data() + c * bins.tiles;
            for (int64_t i = chunk_begin(c, bins.chunks, flat), end = chunk_begin(c + 1, bins.chunks, flat); i < end;
                 ++i) {
                const TileRect r = rect_of(i, means2d, radii, grid);
                if (r.count() == 0) continue;
                const uint64_t value = (uint64_t(depth_bits(depths[i])) << 32) | uint64_t(uint32_t(i));
                int64_t* camera_cursor = cursor + (i / N) * tiles_per_camera;
                for (int64_t ty = r.y_min; ty < r.y_max; ++ty)
                    for (int64_t tx = r.x_min; tx < r.x_max; ++tx) values[camera_cursor[ty * grid.tile_width + tx]++] = value;
            }
        }
        // implicit barrier: every bucket is filled
        const int tile_bits = bits_for(tiles_per_camera);
        std::vector<uint64_t> scratch;
#pragma omp for schedule(dynamic, 16)
        for (int64_t t = 0; t < bins.tiles; ++t) {
            const int64_t begin = bins.tile_start[t], n = bins.tile_start[t + 1] - begin;
            if (n == 0) continue;
            uint64_t* v = values + begin;
            sort_bucket(v, n, scratch);
            const int64_t prefix = ((t / tiles_per_camera) << (32 + tile_bits)) | ((t % tiles_per_camera) << 32);
            for (int64_t m = 0; m < n; ++m) {
                const uint64_t value = v[m];
                flatten_ids[begin + m] = int32_t(uint32_t(value));
                isect_ids[begin + m] = prefix | int64_t(value >> 32);
            }
        }
    }
}

void isect_offset_encode(int64_t M, const int64_t* isect_ids, int64_t C, int64_t tile_width, int64_t tile_height,
                         int32_t* offsets) {
    const int64_t tiles_per_camera = tile_width * tile_height;
    const int tile_bits = bits_for(tiles_per_camera);
    const int64_t num_tiles = C * tiles_per_camera;
    // offsets[t] = number of intersections whose tile index is below t (keys are sorted): a binary search
    // per tile, O(tiles log M) instead of a pass over the M keys. One thread: a 512^2 image's 1024
    // searches take microseconds, less than waking an OpenMP team (which showed as 8 ms of spinning CPU).
    for (int64_t t = 0; t < num_tiles; ++t) {
        const int64_t* first = std::partition_point(isect_ids, isect_ids + M, [&](int64_t key) {
            return isect_key_tile(key, tile_bits, tiles_per_camera) < t;
        });
        offsets[t] = int32_t(first - isect_ids);
    }
}

#define D3_INSTANTIATE(T)                                                                                        \
    template TileBins isect_bin<T>(int64_t, int64_t, const T*, const int32_t*, const TileGrid&, int32_t*);     \
    template void isect_fill_sorted<T>(int64_t, int64_t, const T*, const int32_t*, const T*, const TileGrid&,   \
                                       TileBins&, int64_t*, int32_t*);
D3_INSTANTIATE(float)
D3_INSTANTIATE(double)
#undef D3_INSTANTIATE

}  // namespace cpu
}  // namespace distill3d
