// Forward alpha compositing on the CPU.
//
// Per pixel, front to back over its tile's depth-sorted Gaussians (3DGS rule):
//   alpha_i = min(alpha_max, o_i exp(-sigma_i)); skip if sigma_i < 0 or alpha_i < alpha_min;
//   stop before i if T (1 - alpha_i) <= transmittance_min;  out += alpha_i T c_i;  T *= 1 - alpha_i
//   render = out + T background.
//
// Layout: OpenMP threads take whole tiles. A tile's intersections are taken in batches of kBatch:
// their Gaussians are gathered into contiguous arrays (SplatBatch, from one packed record per Gaussian,
// the next batch prefetched), since read in depth order they are scattered over memory. Then, Gaussian by
// Gaussian, the alpha loop runs over the lane groups (kLanes pixels of one row, one SIMD register;
// tile_block.h) that its alpha >= alpha_min ellipse reaches and that still hold a pixel with T above
// the cut-off, and stores each group's weights w_i = alpha_i T_i in that group's list. Last, each lane
// group adds its list's colours, accum[d][lanes] += sum_j c_j[d] w_j[lanes], with kChannelBlock
// channels x kLanes lanes of accumulators held in registers across the list. So exp, alpha and the
// colour multiply-adds all vectorise for any run-time D, and the work per Gaussian follows the groups
// it covers: a splat of a few pixels costs a few groups, not the whole tile.
#include <algorithm>
#include <cmath>
#include <vector>

#include "distill3d/blend_math.h"
#include "kernels_cpu.h"
#include "tile_block.h"

namespace distill3d {
namespace cpu {

namespace {
constexpr int64_t kChannelBlock = 8;  // channels of one register block of the colour accumulation

// accum[d][group lanes] += sum_e colors[j_e][d] weights[e][lanes] over the group's `count` list entries;
// colour rows hold `row` values, a multiple of kChannelBlock (zero padded), as does accum.
template <typename scalar_t>
void add_group_colors(int64_t count, const int32_t* list_j, const scalar_t* list_w, const scalar_t* colors,
                      int64_t row, int64_t P, scalar_t* accum) {
    for (int64_t d0 = 0; d0 < row; d0 += kChannelBlock) {
        Lanes<scalar_t> acc[kChannelBlock] = {};
        for (int64_t e = 0; e < count; ++e) {
            const Lanes<scalar_t> w = load_lanes(list_w + e * kLanes);
            const scalar_t* c = colors + list_j[e] * row + d0;
            for (int64_t q = 0; q < kChannelBlock; ++q) acc[q] += w * c[q];
        }
        for (int64_t q = 0; q < kChannelBlock; ++q) {
            scalar_t* out = accum + (d0 + q) * P;
            store_lanes(out, load_lanes(out) + acc[q]);
        }
    }
}
}  // namespace

template <typename scalar_t>
void rasterize_forward(const RasterDims& dims, const BlendParams<scalar_t>& params, const scalar_t* means2d,
                       const scalar_t* conics, const scalar_t* colors, const scalar_t* opacities,
                       const scalar_t* backgrounds, const int32_t* isect_offsets, const int32_t* flatten_ids,
                       scalar_t* render, scalar_t* transmittance, int32_t* last_ids) {
    const int64_t D = dims.channels;
    const int64_t row = (D + kChannelBlock - 1) / kChannelBlock * kChannelBlock;
    const int64_t num_tiles = dims.cameras * dims.tile_height * dims.tile_width;
    const PackedSplats<scalar_t> splats(dims.cameras * dims.gaussians, means2d, conics, opacities, params);
#pragma omp parallel if (worth_parallel(dims))
    {
        TileBlock<scalar_t> block(dims.tile_size);
        const int64_t P = block.pixels, Q = block.groups;
        SplatBatch<scalar_t> batch(row);
        std::vector<scalar_t> T(P), active(P), accum(row * P);
        std::vector<int32_t> last(P), alive(Q);  // alive: lanes of each group still compositing
        // Per lane group, the batch Gaussians that blend into it and their weights.
        std::vector<int32_t> list_count(Q), list_j(Q * kBatch);
        std::vector<scalar_t> list_w(Q * kBatch * kLanes);
#pragma omp for schedule(dynamic, 1)
        for (int64_t t = 0; t < num_tiles; ++t) {
            block.select(t, dims, isect_offsets);
            const scalar_t* cx = block.centre_x.data();
            const scalar_t* cy = block.centre_y.data();
            scalar_t* Tp = T.data();
            scalar_t* act = active.data();
            int32_t* lst = last.data();
            std::fill(T.begin(), T.end(), scalar_t(1));
            std::copy(block.inside.begin(), block.inside.end(), active.begin());
            std::fill(last.begin(), last.end(), int32_t(-1));
            std::fill(accum.begin(), accum.end(), scalar_t(0));
            int64_t n_alive = 0;
            for (int64_t q = 0; q < Q; ++q) {
                alive[q] = 0;
                for (int64_t l = 0; l < kLanes; ++l) alive[q] += act[q * kLanes + l] > 0;
                n_alive += alive[q];
            }
            const auto prefetch = [&](int64_t k_begin, int64_t k_end) {
                prefetch_splats(k_begin, std::min(block.isect_end, k_end), flatten_ids, splats, colors, D, D);
            };
            prefetch(block.isect_begin, block.isect_begin + kPrefetchBatches * kBatch);
            for (int64_t k0 = block.isect_begin; k0 < block.isect_end && n_alive > 0; k0 += kBatch) {
                const int64_t n = std::min(kBatch, block.isect_end - k0);
                prefetch(k0 + kPrefetchBatches * kBatch, k0 + (kPrefetchBatches + 1) * kBatch);
                batch.gather(k0, n, flatten_ids, splats, colors, D, D, block);
                std::fill(list_count.begin(), list_count.end(), 0);
                for (int64_t j = 0; j < n && n_alive > 0; ++j) {
                    const GroupRect& rect = batch.rect[j];
                    const scalar_t mx = batch.mx[j], my = batch.my[j];
                    const scalar_t a = batch.a[j], b = batch.b[j], c = batch.c[j], o = batch.o[j];
                    const int32_t k32 = int32_t(k0 + j);
                    for (int64_t r = rect.row_begin; r < rect.row_end; ++r) {
                        for (int64_t h = rect.group_begin; h < rect.group_end; ++h) {
                            const int64_t q = r * block.groups_per_row + h;
                            if (alive[q] == 0) continue;  // every pixel of the group has stopped
                            const int64_t p0 = q * kLanes;
                            scalar_t* w = list_w.data() + (q * kBatch + list_count[q]) * kLanes;
                            scalar_t any_blend = 0, stops = 0;
#pragma omp simd reduction(+ : any_blend, stops)
                            for (int64_t l = 0; l < kLanes; ++l) {
                                const int64_t p = p0 + l;
                                const scalar_t dx = cx[p] - mx, dy = cy[p] - my;
                                const scalar_t sigma = gaussian_sigma(dx, dy, a, b, c);
                                const scalar_t alpha = std::min(params.alpha_max, o * gaussian_falloff(sigma));
                                const bool valid = (act[p] > 0) & alpha_blends(sigma, alpha, params);
                                const scalar_t next_T = Tp[p] * (scalar_t(1) - alpha);
                                const bool stop = valid & (next_T <= params.transmittance_min);
                                const bool blend = valid & !stop;
                                w[l] = blend ? alpha * Tp[p] : scalar_t(0);
                                Tp[p] = blend ? next_T : Tp[p];
                                act[p] = stop ? scalar_t(0) : act[p];
                                lst[p] = blend ? k32 : lst[p];
                                any_blend += blend ? scalar_t(1) : scalar_t(0);
                                stops += stop ? scalar_t(1) : scalar_t(0);
                            }
                            alive[q] -= int32_t(stops);
                            n_alive -= int64_t(stops);
                            if (any_blend > 0) list_j[q * kBatch + list_count[q]++] = int32_t(j);
                        }
                    }
                }
                for (int64_t q = 0; q < Q; ++q)
                    if (list_count[q] > 0)
                        add_group_colors(list_count[q], list_j.data() + q * kBatch,
                                         list_w.data() + q * kBatch * kLanes, batch.colors.data(), row, P,
                                         accum.data() + q * kLanes);
            }

            const scalar_t* bg = backgrounds ? backgrounds + block.camera * D : nullptr;
            for (int64_t p = 0; p < P; ++p) {
                const int64_t pix = block.pixel_index(p, dims);
                if (pix < 0) continue;
                scalar_t* out = render + pix * D;
                for (int64_t d = 0; d < D; ++d) out[d] = accum[d * P + p] + (bg ? Tp[p] * bg[d] : scalar_t(0));
                transmittance[pix] = Tp[p];
                last_ids[pix] = lst[p];
            }
        }
    }
}

#define D3_INSTANTIATE(T)                                                                                      \
    template void rasterize_forward<T>(const RasterDims&, const BlendParams<T>&, const T*, const T*, const T*, \
                                       const T*, const T*, const int32_t*, const int32_t*, T*, T*, int32_t*);
D3_INSTANTIATE(float)
D3_INSTANTIATE(double)
#undef D3_INSTANTIATE

}  // namespace cpu
}  // namespace distill3d
