// One image tile as the CPU compositing kernels see it, and the Gaussians of its intersection list
// gathered into contiguous batches.
//
// Pixels are stored structure-of-arrays in lane groups of kLanes pixels of one row (one AVX2 register
// of floats): row r of the tile is lanes [r * stride, (r + 1) * stride), stride = tile_size rounded up
// to kLanes, so a Gaussian touches only the groups of the rows and columns its alpha >= alpha_min
// ellipse reaches (TileBlock::reach) and every per-pixel loop is a fixed kLanes-wide SIMD loop.
// Pixels of a border tile outside the image and the padding of each row are inactive lanes.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <vector>

#include <sys/mman.h>

#include "distill3d/blend_math.h"
#include "distill3d/common.h"

namespace distill3d {
namespace cpu {

// Pixels per lane group.
constexpr int64_t kLanes = 8;
// One lane group of values as a GCC/Clang vector (one AVX2 register of floats, two of doubles): the
// register-blocked colour loops keep their accumulators in these, which the compiler holds in
// registers (arrays of scalars under `omp simd` were kept on the stack).
template <typename scalar_t>
struct LaneVector {
    typedef scalar_t type __attribute__((vector_size(kLanes * sizeof(scalar_t))));
};
template <typename scalar_t>
using Lanes = typename LaneVector<scalar_t>::type;

template <typename scalar_t>
inline Lanes<scalar_t> load_lanes(const scalar_t* p) {
    Lanes<scalar_t> v;
    std::memcpy(&v, p, sizeof(v));
    return v;
}

template <typename scalar_t>
inline void store_lanes(scalar_t* p, const Lanes<scalar_t>& v) {
    std::memcpy(p, &v, sizeof(v));
}

// Intersections gathered per batch: the batch's Gaussian data is read while the next batch's is
// prefetched, and the forward pass adds the batch's colours in one pass per lane group.
constexpr int64_t kBatch = 32;
// Float error margin of TileBlock::reach, relative and in pixels: the rows and columns it returns cover
// every pixel whose float alpha test could pass (sigma's float error is ~1e-5 of the extent).
constexpr double kReachRelativeMargin = 1e-3, kReachPixelMargin = 1e-2;

// Lane groups [row_begin, row_end) x [group_begin, group_end) (group index within a row) of a tile.
struct GroupRect {
    int32_t row_begin = 0, row_end = 0, group_begin = 0, group_end = 0;
    bool empty() const { return row_begin >= row_end || group_begin >= group_end; }
};

template <typename scalar_t>
struct TileBlock {
    int64_t tile_size, stride, groups_per_row, groups, pixels;
    int64_t camera = 0, tile_x = 0, tile_y = 0;
    int64_t isect_begin = 0, isect_end = 0;    // range of this tile in flatten_ids
    std::vector<scalar_t> centre_x, centre_y;  // pixel centres (x + 0.5, y + 0.5)
    std::vector<scalar_t> inside;              // 1 for lanes inside the image, else 0

    explicit TileBlock(int64_t tile_size_)
        : tile_size(tile_size_),
          stride((tile_size_ + kLanes - 1) / kLanes * kLanes),
          groups_per_row(stride / kLanes),
          groups(tile_size_ * stride / kLanes),
          pixels(tile_size_ * stride),
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
        for (int64_t p = 0; p < pixels; ++p) {
            const int64_t col = p % stride, x = tile_x * tile_size + col, y = tile_y * tile_size + p / stride;
            centre_x[p] = scalar_t(x) + scalar_t(0.5);
            centre_y[p] = scalar_t(y) + scalar_t(0.5);
            inside[p] = (col < tile_size && x < dims.width && y < dims.height) ? scalar_t(1) : scalar_t(0);
        }
    }

    // The lane groups holding every pixel centre within (half_x, half_y) of (mx, my), widened by the
    // float margins; the pixels left out all fail the alpha test. Negative half extents: none.
    GroupRect reach(double mx, double my, double half_x, double half_y) const {
        GroupRect rect;
        if (half_x < 0 || half_y < 0) return rect;
        const auto span = [this](double centre, double half, int64_t origin, int32_t& begin, int32_t& end) {
            const double reach = half * (1 + kReachRelativeMargin) + kReachPixelMargin;
            const double first_centre = double(origin) + 0.5;  // the tile's first pixel centre on this axis
            const double lo = std::ceil(centre - reach - first_centre), hi = std::floor(centre + reach - first_centre);
            begin = int32_t(std::max(0.0, std::min(double(tile_size), lo)));
            end = int32_t(std::max(0.0, std::min(double(tile_size), hi + 1)));
        };
        int32_t col_begin, col_end;
        span(my, half_y, tile_y * tile_size, rect.row_begin, rect.row_end);
        span(mx, half_x, tile_x * tile_size, col_begin, col_end);
        rect.group_begin = col_begin / int32_t(kLanes);
        rect.group_end = col_end > col_begin ? (col_end - 1) / int32_t(kLanes) + 1 : rect.group_begin;
        return rect;
    }

    // Flat index (camera, y, x) of lane p in a [C, H, W] image, or -1 if outside the image.
    int64_t pixel_index(int64_t p, const RasterDims& dims) const {
        const int64_t col = p % stride, x = tile_x * tile_size + col, y = tile_y * tile_size + p / stride;
        if (col >= tile_size || x >= dims.width || y >= dims.height) return -1;
        return (camera * dims.height + y) * dims.width + x;
    }
};

// Per flat Gaussian, one record [mx, my, conic a, b, c, opacity, half_x, half_y] (half extents of
// blend_half_extents): the gather of an intersection then reads one cache line (float) for its
// geometry instead of three scattered ones, and the extents' log and square root are taken once per
// Gaussian, not per intersection. Packed in one sequential pass per call, in huge pages where the
// kernel offers them (the records are read in depth order, far apart: 4 KiB pages would add a TLB
// miss to most reads). Colours stay in the input: packing them too made the pass and the larger
// records cost more than the misses they saved (1M Gaussians, 512^2, D = 16: 1.0 s instead of 0.7 s
// forward CPU time, on a loaded machine).
constexpr int64_t kSplatValues = 8;

template <typename scalar_t>
class PackedSplats {
   public:
    PackedSplats(int64_t count, const scalar_t* means2d, const scalar_t* conics, const scalar_t* opacities,
                 const BlendParams<scalar_t>& params) {
        constexpr size_t kHugePage = size_t(1) << 21;
        const size_t bytes = (size_t(std::max<int64_t>(count, 1)) * kSplatValues * sizeof(scalar_t) + kHugePage - 1) /
                             kHugePage * kHugePage;
        data_ = static_cast<scalar_t*>(std::aligned_alloc(kHugePage, bytes));
        if (data_ == nullptr) throw std::bad_alloc();
#if defined(__linux__) && defined(MADV_HUGEPAGE)
        madvise(data_, bytes, MADV_HUGEPAGE);  // advice only: without huge pages the records still work
#endif
#pragma omp parallel for schedule(static) if (count >= kMinParallelGaussians)
        for (int64_t g = 0; g < count; ++g) {
            scalar_t* rec = data_ + g * kSplatValues;
            rec[0] = means2d[2 * g], rec[1] = means2d[2 * g + 1];
            rec[2] = conics[3 * g], rec[3] = conics[3 * g + 1], rec[4] = conics[3 * g + 2];
            rec[5] = opacities[g];
            double half_x, half_y;
            blend_half_extents(rec[2], rec[3], rec[4], rec[5], params, half_x, half_y);
            rec[6] = scalar_t(half_x), rec[7] = scalar_t(half_y);
        }
    }
    PackedSplats(const PackedSplats&) = delete;
    PackedSplats& operator=(const PackedSplats&) = delete;
    ~PackedSplats() { std::free(data_); }

    const scalar_t* operator[](int64_t g) const { return data_ + g * kSplatValues; }

   private:
    scalar_t* data_ = nullptr;
};

// The Gaussians of intersections [k_begin, k_begin + n) of one tile, copied contiguous (the inputs are
// indexed by flat id, which jumps around memory in depth order), with the lane groups each reaches.
// Colours are kept for channels [0, channels) in rows of `row` values (zero padded).
template <typename scalar_t>
struct SplatBatch {
    int64_t n = 0, row = 0;
    scalar_t mx[kBatch], my[kBatch], a[kBatch], b[kBatch], c[kBatch], o[kBatch];
    int32_t id[kBatch];
    GroupRect rect[kBatch];
    std::vector<scalar_t> colors;  // [kBatch][row]

    explicit SplatBatch(int64_t row_) : row(row_), colors(kBatch * row_, scalar_t(0)) {}

    void gather(int64_t k_begin, int64_t count, const int32_t* flatten_ids, const PackedSplats<scalar_t>& splats,
                const scalar_t* colors_in, int64_t D, int64_t channels, const TileBlock<scalar_t>& block) {
        n = count;
        for (int64_t j = 0; j < n; ++j) {
            const int64_t g = flatten_ids[k_begin + j];
            const scalar_t* rec = splats[g];
            id[j] = int32_t(g);
            mx[j] = rec[0], my[j] = rec[1];
            a[j] = rec[2], b[j] = rec[3], c[j] = rec[4];
            o[j] = rec[5];
            std::copy_n(colors_in + g * D, channels, colors.data() + j * row);
            rect[j] = block.reach(double(mx[j]), double(my[j]), double(rec[6]), double(rec[7]));
        }
    }
};

// Asks for the records and colours of intersections [k_begin, k_end) ahead of their gather; the
// kernels ask kPrefetchBatches batches ahead (1M Gaussians at 512^2: 1, 2 and 3 measured alike, and
// huge pages for the records 1.05x faster than without).
constexpr int64_t kPrefetchBatches = 2;
template <typename scalar_t>
inline void prefetch_splats(int64_t k_begin, int64_t k_end, const int32_t* flatten_ids,
                            const PackedSplats<scalar_t>& splats, const scalar_t* colors, int64_t D, int64_t channels) {
    constexpr int64_t kLine = 64 / int64_t(sizeof(scalar_t));  // values per cache line
    for (int64_t k = k_begin; k < k_end; ++k) {
        const int64_t g = flatten_ids[k];
        __builtin_prefetch(splats[g]);
        if (channels > 0) {
            // A real load (kept by the volatile store) for the colour row's first line: the input's 4 KiB
            // pages mostly miss the TLB, and a prefetch that misses it can be dropped (this load made the
            // 1M-Gaussian forward 1.95x and backward 1.37x faster than a prefetch).
            volatile scalar_t first = colors[g * D];
            (void)first;
        }
        for (int64_t d = kLine; d < channels; d += kLine) __builtin_prefetch(colors + g * D + d);
    }
}

}  // namespace cpu
}  // namespace distill3d
