// Backward alpha compositing on the CPU, back to front as in 3DGS.
//
// With T_i the transmittance before Gaussian i, T_N the final one and g = dL/drender:
//   dL/dc_i[d] = alpha_i T_i g[d]                                  (every channel d < D)
//   dL/dalpha_i = T_i (c_i.g - s_i) + T_N / (1 - alpha_i) (dL/dalpha_out - bg.g)
// with the dot products over the geometry channels d < G only (the rest do not move geometry), and
// s_i = S_i.g where S_i = sum_{j>i} alpha_j c_j T_j / T_{i+1} is the colour composited behind i. As g is
// fixed per pixel, the scalar s follows S's recurrence: s_{i-1} = alpha_i c_i.g + (1 - alpha_i) s_i.
// T_i = T_{i+1} / (1 - alpha_i) is recovered from the stored final transmittance.
//
// Same layout as the forward pass (tiles over OpenMP threads, Gaussians gathered in batches, SIMD over
// the lane groups of a tile a Gaussian reaches; see rasterize_fwd_cpu.cpp and tile_block.h). Each
// Gaussian's gradient is summed over the tile's pixels first, giving one row of O(D) values per pair
// of a Gaussian and a tile (= per intersection). Two ways to add the rows of one Gaussian:
// - deterministic (the default): rows go to per-intersection slots, then each Gaussian adds its rows in
//   intersection order, so results are bitwise equal run to run and for any thread count (equal to a
//   single-threaded run of the atomic mode); no slower than atomics (10k Gaussians, 256^2, D = 16,
//   2 threads: 171 ms CPU for forward + backward either way; 100k, 512^2, D = 64: 2.5 vs 2.6 s);
// - atomic: rows are added at once with atomics when several threads run, in whichever order the
//   threads reach the tiles, so float rounding differs run to run.
#include <algorithm>
#include <cmath>
#include <vector>

#include <omp.h>

#include "distill3d/blend_math.h"
#include "kernels_cpu.h"
#include "tile_block.h"

namespace distill3d {
namespace cpu {

namespace {
// Gradients per (Gaussian, tile) before the colours: dL/dmean2d (x, y), dL/dconic (a, b, c), dL/dopacity.
constexpr int64_t kGeometryGrads = 6;
// Channels per register block of the colour-gradient sums.
constexpr int64_t kChannelBlock = 8;
// Deterministic mode: intersection rows buffered per chunk of tiles (values, ~32 MB of floats), so the
// buffer stays bounded however many intersections a frame has.
constexpr int64_t kChunkValues = int64_t(1) << 23;

// Adds to a gradient other threads may be adding to; a team of one needs no atomic (it costs ~15% of
// the backward at large D).
template <typename scalar_t>
inline void add_gradient(scalar_t* target, scalar_t value, bool shared) {
    if (shared) {
#pragma omp atomic
        *target += value;
    } else {
        *target += value;
    }
}

// The kernel's inputs, bundled so the per-tile routine below takes one argument for them.
template <typename scalar_t>
struct BackwardInputs {
    const RasterDims& dims;
    const BlendParams<scalar_t>& params;
    const PackedSplats<scalar_t>& splats;  // means2d, conics, opacities (and blend extents) per Gaussian
    const scalar_t *colors, *backgrounds;
    const int32_t *isect_offsets, *flatten_ids;
    const scalar_t* transmittance;
    const int32_t* last_ids;
    const scalar_t *v_render, *v_alpha;

    int64_t tiles() const { return dims.cameras * dims.tile_height * dims.tile_width; }
    // Intersections [tile_begin(t), tile_end(t)) belong to tile t.
    int64_t tile_begin(int64_t t) const { return isect_offsets[t]; }
    int64_t tile_end(int64_t t) const { return t + 1 < tiles() ? isect_offsets[t + 1] : dims.intersections; }
};

// Per-thread buffers of backward_tile.
template <typename scalar_t>
struct BackwardScratch {
    TileBlock<scalar_t> block;
    SplatBatch<scalar_t> batch;  // colours of the geometry channels only (for c.g)
    // Per-lane state: current T (starts at T_N), T_N, dL/dalpha_out - bg.g, s = S.g, last blended index.
    std::vector<scalar_t> T, T_final, v_alpha_bg, behind;
    std::vector<int32_t> last;
    std::vector<int32_t> group_last;  // per lane group: the largest last blended index of its lanes
    std::vector<scalar_t> grad;       // dL/drender of the tile, channel-major, rows zero padded to kChannelBlock
    // The current Gaussian's blend weights in each lane group it blends into, and those groups.
    std::vector<scalar_t> weight;
    std::vector<int32_t> touched;
    std::vector<scalar_t> sums;  // one Gaussian's gradient over the tile: kGeometryGrads, then D colours

    BackwardScratch(int64_t tile_size, int64_t D, int64_t G)
        : block(tile_size), batch(std::max<int64_t>(G, 1)) {
        const int64_t P = block.pixels;
        for (auto* v : {&T, &T_final, &v_alpha_bg, &behind}) v->resize(P);
        last.resize(P);
        group_last.resize(block.groups);
        grad.assign((D + kChannelBlock - 1) / kChannelBlock * kChannelBlock * P, scalar_t(0));
        weight.resize(block.groups * kLanes);
        touched.resize(block.groups);
        sums.resize(kGeometryGrads + D);
    }
};

// The backward of tile t: calls emit(k, g, sums) for each intersection k (flattened Gaussian g) of the
// tile that blends into one of its pixels, sums = [dL/dmean x, y, dL/dconic a, b, c, dL/dopacity,
// dL/dcolour (D)] summed over the tile's pixels. Intersections that blend nowhere are not emitted.
// Gaussians are gathered in batches (tile_block.h) and visit only the lane groups their ellipse reaches
// and that hold a pixel which blended them (last blended index >= k).
template <typename scalar_t, typename Emit>
void backward_tile(int64_t t, const BackwardInputs<scalar_t>& in, BackwardScratch<scalar_t>& s, Emit&& emit) {
    const RasterDims& dims = in.dims;
    const BlendParams<scalar_t>& params = in.params;
    const int64_t D = dims.channels, G = dims.geometry_channels;
    TileBlock<scalar_t>& block = s.block;
    SplatBatch<scalar_t>& batch = s.batch;
    const int64_t P = block.pixels, Q = block.groups;
    block.select(t, dims, in.isect_offsets);
    if (block.isect_end <= block.isect_begin) return;
    scalar_t *T = s.T.data(), *T_final = s.T_final.data(), *v_alpha_bg = s.v_alpha_bg.data(), *behind = s.behind.data();
    int32_t* last = s.last.data();
    scalar_t* grad = s.grad.data();
    scalar_t* weight = s.weight.data();
    int32_t* touched = s.touched.data();
    scalar_t* sums = s.sums.data();
    scalar_t* v_col = sums + kGeometryGrads;
    const scalar_t* bg = in.backgrounds ? in.backgrounds + block.camera * D : nullptr;
    int32_t last_max = -1;
    for (int64_t p = 0; p < P; ++p) {
        const int64_t pix = block.pixel_index(p, dims);
        if (pix < 0) {
            T[p] = T_final[p] = 1;
            v_alpha_bg[p] = 0;
            last[p] = -1;
            for (int64_t d = 0; d < D; ++d) grad[d * P + p] = 0;
            continue;
        }
        const scalar_t* g = in.v_render + pix * D;
        scalar_t bg_dot = 0;
        for (int64_t d = 0; d < G && bg; ++d) bg_dot += bg[d] * g[d];
        for (int64_t d = 0; d < D; ++d) grad[d * P + p] = g[d];
        T[p] = T_final[p] = in.transmittance[pix];
        v_alpha_bg[p] = in.v_alpha[pix] - bg_dot;
        last[p] = in.last_ids[pix];
        last_max = std::max(last_max, last[p]);
    }
    for (int64_t q = 0; q < Q; ++q) s.group_last[q] = *std::max_element(last + q * kLanes, last + (q + 1) * kLanes);
    std::fill(behind, behind + P, scalar_t(0));
    const scalar_t* cx = block.centre_x.data();
    const scalar_t* cy = block.centre_y.data();

    // Batches [k0, k0 + n) from the last intersection any pixel blended down to the tile's first.
    const auto prefetch = [&](int64_t k_begin, int64_t k_end) {
        prefetch_splats(std::max(block.isect_begin, k_begin), k_end, in.flatten_ids, in.splats, in.colors, D, G);
    };
    const int64_t k_last = std::min<int64_t>(last_max, block.isect_end - 1) + 1;
    prefetch(k_last - kPrefetchBatches * kBatch, k_last);
    for (int64_t k_end = k_last; k_end > block.isect_begin;) {
        const int64_t n = std::min(kBatch, k_end - block.isect_begin), k0 = k_end - n;
        prefetch(k_end - (kPrefetchBatches + 1) * kBatch, k_end - kPrefetchBatches * kBatch);
        batch.gather(k0, n, in.flatten_ids, in.splats, in.colors, D, G, block);
        k_end = k0;
        for (int64_t j = n - 1; j >= 0; --j) {
            const GroupRect& rect = batch.rect[j];
            const int32_t k32 = int32_t(k0 + j);
            const scalar_t mx = batch.mx[j], my = batch.my[j];
            const scalar_t a = batch.a[j], b = batch.b[j], c = batch.c[j], o = batch.o[j];
            const scalar_t* col = batch.colors.data() + j * batch.row;
            scalar_t geo[kGeometryGrads][kLanes] = {};  // lane partial sums of the geometry gradients
            int64_t n_touched = 0;
            for (int64_t r = rect.row_begin; r < rect.row_end; ++r) {
                for (int64_t h = rect.group_begin; h < rect.group_end; ++h) {
                    const int64_t q = r * block.groups_per_row + h;
                    if (s.group_last[q] < k32) continue;  // no pixel of the group blended this Gaussian
                    const int64_t p0 = q * kLanes;
                    scalar_t color_dot[kLanes] = {};  // c.g over the geometry channels
                    for (int64_t d = 0; d < G; ++d) {
                        const scalar_t cd = col[d];
                        const scalar_t* gd = grad + d * P + p0;
#pragma omp simd
                        for (int64_t l = 0; l < kLanes; ++l) color_dot[l] += cd * gd[l];
                    }
                    scalar_t* w = weight + n_touched * kLanes;
                    scalar_t any = 0;
#pragma omp simd reduction(+ : any)
                    for (int64_t l = 0; l < kLanes; ++l) {
                        const int64_t p = p0 + l;
                        const scalar_t dx = cx[p] - mx, dy = cy[p] - my;
                        const scalar_t sigma = gaussian_sigma(dx, dy, a, b, c);
                        const scalar_t f = gaussian_falloff(sigma);
                        const scalar_t raw = o * f;
                        const scalar_t al = std::min(params.alpha_max, raw);
                        const bool valid = (k32 <= last[p]) & alpha_blends(sigma, al, params);
                        const scalar_t alpha = valid ? al : scalar_t(0);
                        const scalar_t one_minus = scalar_t(1) - alpha;
                        const scalar_t Ti = T[p] / one_minus;
                        const scalar_t va = valid ? Ti * (color_dot[l] - behind[p]) + T_final[p] / one_minus * v_alpha_bg[p]
                                                  : scalar_t(0);
                        scalar_t v_mx, v_my, v_a, v_b, v_c, v_o;
                        alpha_backward(dx, dy, a, b, c, f, raw, va, params, v_mx, v_my, v_a, v_b, v_c, v_o);
                        geo[0][l] += v_mx;
                        geo[1][l] += v_my;
                        geo[2][l] += v_a;
                        geo[3][l] += v_b;
                        geo[4][l] += v_c;
                        geo[5][l] += v_o;
                        w[l] = alpha * Ti;
                        behind[p] += alpha * (color_dot[l] - behind[p]);
                        T[p] = Ti;
                        any += valid ? scalar_t(1) : scalar_t(0);
                    }
                    if (any > 0) touched[n_touched++] = int32_t(q);
                }
            }
            if (n_touched == 0) continue;

            // dL/dc: the weighted sum of dL/drender over the groups blended, kChannelBlock channels at a time.
            for (int64_t d0 = 0; d0 < D; d0 += kChannelBlock) {
                Lanes<scalar_t> acc[kChannelBlock] = {};
                for (int64_t i = 0; i < n_touched; ++i) {
                    const Lanes<scalar_t> wi = load_lanes(weight + i * kLanes);
                    const scalar_t* gd = grad + d0 * P + touched[i] * kLanes;
                    for (int64_t q = 0; q < kChannelBlock; ++q) acc[q] += wi * load_lanes(gd + q * P);
                }
                for (int64_t q = 0; q < kChannelBlock && d0 + q < D; ++q) {
                    scalar_t total = 0;
                    for (int64_t l = 0; l < kLanes; ++l) total += acc[q][l];
                    v_col[d0 + q] = total;
                }
            }
            for (int64_t i = 0; i < kGeometryGrads; ++i) {
                scalar_t total = 0;
                for (int64_t l = 0; l < kLanes; ++l) total += geo[i][l];
                sums[i] = total;
            }
            emit(k32, int64_t(batch.id[j]), static_cast<const scalar_t*>(sums));
        }
    }
}

// Adds one intersection's gradient row (layout of BackwardScratch::sums) to Gaussian g's gradients.
template <typename scalar_t, typename Add>
inline void add_row(int64_t g, int64_t D, const scalar_t* row, scalar_t* v_means2d, scalar_t* v_conics,
                    scalar_t* v_colors, scalar_t* v_opacities, Add&& add) {
    add(v_means2d + 2 * g, row[0]);
    add(v_means2d + 2 * g + 1, row[1]);
    add(v_conics + 3 * g, row[2]);
    add(v_conics + 3 * g + 1, row[3]);
    add(v_conics + 3 * g + 2, row[4]);
    add(v_opacities + g, row[5]);
    scalar_t* vc = v_colors + g * D;
    for (int64_t d = 0; d < D; ++d) add(vc + d, row[kGeometryGrads + d]);
}

// Tile boundaries t_0 = 0 < t_1 < ... = num_tiles of the deterministic mode's chunks: each chunk's
// intersections fit `max_rows` rows, or it is a single tile. Returns the largest chunk's row count.
template <typename scalar_t>
int64_t chunk_tiles(const BackwardInputs<scalar_t>& in, int64_t max_rows, std::vector<int64_t>& bounds) {
    const int64_t num_tiles = in.tiles();
    int64_t largest = 0;
    bounds.assign(1, 0);
    for (int64_t t0 = 0; t0 < num_tiles;) {
        const int64_t k0 = in.tile_begin(t0);
        int64_t t1 = t0 + 1;
        while (t1 < num_tiles && in.tile_end(t1) - k0 <= max_rows) ++t1;
        largest = std::max(largest, in.tile_end(t1 - 1) - k0);
        bounds.push_back(t1);
        t0 = t1;
    }
    return largest;
}
}  // namespace

template <typename scalar_t>
void rasterize_backward(const RasterDims& dims, const BlendParams<scalar_t>& params, const scalar_t* means2d,
                        const scalar_t* conics, const scalar_t* colors, const scalar_t* opacities,
                        const scalar_t* backgrounds, const int32_t* isect_offsets, const int32_t* flatten_ids,
                        const scalar_t* transmittance, const int32_t* last_ids, const scalar_t* v_render,
                        const scalar_t* v_alpha, scalar_t* v_means2d, scalar_t* v_conics, scalar_t* v_colors,
                        scalar_t* v_opacities, bool deterministic) {
    const PackedSplats<scalar_t> splats(dims.cameras * dims.gaussians, means2d, conics, opacities, params);
    const BackwardInputs<scalar_t> in{dims,        params,        splats,   colors,   backgrounds, isect_offsets,
                                      flatten_ids, transmittance, last_ids, v_render, v_alpha};
    const int64_t D = dims.channels, num_tiles = in.tiles();
    if (!deterministic) {
#pragma omp parallel if (worth_parallel(dims))
        {
            BackwardScratch<scalar_t> scratch(dims.tile_size, D, dims.geometry_channels);
            const bool shared = omp_get_num_threads() > 1;
            const auto add = [shared](scalar_t* target, scalar_t value) { add_gradient(target, value, shared); };
#pragma omp for schedule(dynamic, 1)
            for (int64_t t = 0; t < num_tiles; ++t)
                backward_tile(t, in, scratch, [&](int64_t, int64_t g, const scalar_t* row) {
                    add_row(g, D, row, v_means2d, v_conics, v_colors, v_opacities, add);
                });
        }
        return;
    }
    // Deterministic: each intersection's row goes to its own slot, then every Gaussian adds its rows in
    // intersection order (= tile order), which is the order of a single-threaded run, whatever the
    // thread count or schedule.
    const int64_t S = kGeometryGrads + D;
    std::vector<int64_t> bounds;
    const int64_t rows_needed = chunk_tiles(in, std::max<int64_t>(1, kChunkValues / S), bounds);
    std::vector<scalar_t> rows(rows_needed * S);
    const int64_t flat_gaussians = dims.cameras * dims.gaussians;
    const auto add = [](scalar_t* target, scalar_t value) { *target += value; };
#pragma omp parallel if (worth_parallel(dims))
    {
        BackwardScratch<scalar_t> scratch(dims.tile_size, D, dims.geometry_channels);
        const int64_t threads = omp_get_num_threads(), me = omp_get_thread_num();
        // Each thread adds the rows of its own range of Gaussians (no two threads write one gradient).
        const int64_t own_begin = flat_gaussians * me / threads, own_end = flat_gaussians * (me + 1) / threads;
        for (size_t c = 0; c + 1 < bounds.size(); ++c) {
            const int64_t t0 = bounds[c], t1 = bounds[c + 1];
            const int64_t k0 = in.tile_begin(t0), k1 = in.tile_end(t1 - 1);
#pragma omp for schedule(dynamic, 1)
            for (int64_t t = t0; t < t1; ++t) {
                // Rows of intersections that blend nowhere stay zero (adding +0 changes no sum).
                std::fill(rows.data() + (in.tile_begin(t) - k0) * S, rows.data() + (in.tile_end(t) - k0) * S,
                          scalar_t(0));
                backward_tile(t, in, scratch, [&](int64_t k, int64_t, const scalar_t* row) {
                    std::copy_n(row, S, rows.data() + (k - k0) * S);
                });
            }  // implicit barrier: the chunk's rows are complete
            for (int64_t k = k0; k < k1; ++k) {
                const int64_t g = flatten_ids[k];
                if (g >= own_begin && g < own_end)
                    add_row(g, D, rows.data() + (k - k0) * S, v_means2d, v_conics, v_colors, v_opacities, add);
            }
#pragma omp barrier
        }
    }
}

#define D3_INSTANTIATE(T)                                                                                       \
    template void rasterize_backward<T>(const RasterDims&, const BlendParams<T>&, const T*, const T*, const T*, \
                                        const T*, const T*, const int32_t*, const int32_t*, const T*,           \
                                        const int32_t*, const T*, const T*, T*, T*, T*, T*, bool);
D3_INSTANTIATE(float)
D3_INSTANTIATE(double)
#undef D3_INSTANTIATE

}  // namespace cpu
}  // namespace distill3d
