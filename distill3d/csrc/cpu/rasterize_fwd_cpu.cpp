// Forward alpha compositing on the CPU.
//
// Per pixel, front to back over its tile's depth-sorted Gaussians (3DGS rule):
//   alpha_i = min(alpha_max, o_i exp(-sigma_i)); skip if sigma_i < 0 or alpha_i < alpha_min;
//   stop before i if T (1 - alpha_i) <= transmittance_min;  out += alpha_i T c_i;  T *= 1 - alpha_i
//   render = out + T background.
//
// Layout: OpenMP threads take whole tiles; inside a tile the Gaussian loop is outermost and the alpha
// loop runs over the tile's pixels (one SIMD lane each). The weights w_i = alpha_i T_i of a batch of
// kBatch Gaussians are kept as rows of a [kBatch][pixels] matrix, and the colours are then added as
// one small matrix product accum[D][pixels] += C_batch^T W with a register-blocked micro-kernel
// (kChannelBlock channels x kLaneBlock lanes held in registers across the batch). So exp, alpha and
// the colour multiply-adds all vectorise for any D chosen at run time, and the cost per
// Gaussian-pixel pair is linear in D. A Gaussian only visits the
// tile rows its alpha >= alpha_min ellipse reaches (blend_half_height), which is exact: the rows left
// out would all be skipped by the alpha test.
#include <algorithm>
#include <cmath>
#include <vector>

#include "distill3d/blend_math.h"
#include "kernels_cpu.h"
#include "tile_block.h"

namespace distill3d {
namespace cpu {

namespace {
constexpr int64_t kBatch = 32;         // Gaussians whose weights are buffered before the colour product
constexpr int64_t kChannelBlock = 8;   // channels per register block of the micro-kernel

// accum[d][p] += sum_j colors[j][d] weights[j][p] for lanes [lane_begin, lane_end) (multiples of
// kLaneBlock), j < n, d < D; `colors` rows are padded with zeros to a multiple of kChannelBlock.
template <typename scalar_t>
void add_batch_colors(int64_t n, int64_t D, int64_t D_padded, int64_t P, const scalar_t* weights,
                      const scalar_t* colors, int64_t lane_begin, int64_t lane_end, scalar_t* accum) {
    for (int64_t p0 = lane_begin; p0 < lane_end; p0 += kLaneBlock) {
        for (int64_t d0 = 0; d0 < D; d0 += kChannelBlock) {
            const int64_t nd = std::min(kChannelBlock, D - d0);
            scalar_t acc[kChannelBlock][kLaneBlock] = {};
            for (int64_t j = 0; j < n; ++j) {
                const scalar_t* w = weights + j * P + p0;
                const scalar_t* c = colors + j * D_padded + d0;
                for (int64_t q = 0; q < kChannelBlock; ++q) {
#pragma omp simd
                    for (int64_t l = 0; l < kLaneBlock; ++l) acc[q][l] += w[l] * c[q];
                }
            }
            for (int64_t q = 0; q < nd; ++q) {
                scalar_t* out = accum + (d0 + q) * P + p0;
#pragma omp simd
                for (int64_t l = 0; l < kLaneBlock; ++l) out[l] += acc[q][l];
            }
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
    const int64_t num_tiles = dims.cameras * dims.tile_height * dims.tile_width;
#pragma omp parallel if (worth_parallel(dims))
    {
        TileBlock<scalar_t> block(dims.tile_size);
        const int64_t P = block.pixels;
        const int64_t D_padded = (D + kChannelBlock - 1) / kChannelBlock * kChannelBlock;
        std::vector<scalar_t> T(P), active(P), accum(D * P);
        std::vector<scalar_t> batch_weights(kBatch * P, scalar_t(0)), batch_colors(kBatch * D_padded, scalar_t(0));
        std::vector<int32_t> last(P);
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
            int64_t n_active = 0;
            for (int64_t p = 0; p < P; ++p) n_active += act[p] > 0;
            int64_t n_batch = 0, batch_lo = P, batch_hi = 0;  // buffered Gaussians and their lane span
            const auto flush = [&] {
                if (n_batch == 0) return;
                const int64_t lo = batch_lo / kLaneBlock * kLaneBlock;
                const int64_t hi = (batch_hi + kLaneBlock - 1) / kLaneBlock * kLaneBlock;
                add_batch_colors(n_batch, D, D_padded, P, batch_weights.data(), batch_colors.data(), lo, hi,
                                 accum.data());
                // Weight rows are zero outside the lanes each Gaussian wrote: clear the span used.
                for (int64_t j = 0; j < n_batch; ++j) std::fill_n(batch_weights.data() + j * P + lo, hi - lo, scalar_t(0));
                n_batch = 0, batch_lo = P, batch_hi = 0;
            };

            for (int64_t k = block.isect_begin; k < block.isect_end && n_active > 0; ++k) {
                const int64_t g = flatten_ids[k];
                const scalar_t mx = means2d[2 * g], my = means2d[2 * g + 1];
                const scalar_t a = conics[3 * g], b = conics[3 * g + 1], c = conics[3 * g + 2];
                const scalar_t o = opacities[g];
                const int32_t k32 = int32_t(k);
                // Only the tile rows the Gaussian can reach: the others have alpha < alpha_min.
                const auto [p_begin, p_end] =
                    block.row_lanes(double(my), double(blend_half_height(a, b, c, o, params)), dims.tile_size);
                scalar_t* w = batch_weights.data() + n_batch * P;
                scalar_t any_blend = 0, stops = 0;
#pragma omp simd reduction(+ : any_blend, stops)
                for (int64_t p = p_begin; p < p_end; ++p) {
                    const scalar_t dx = cx[p] - mx, dy = cy[p] - my;
                    const scalar_t sigma = gaussian_sigma(dx, dy, a, b, c);
                    const scalar_t alpha = std::min(params.alpha_max, o * gaussian_falloff(sigma));
                    const bool valid = (act[p] > 0) & alpha_blends(sigma, alpha, params);
                    const scalar_t next_T = Tp[p] * (scalar_t(1) - alpha);
                    const bool stop = valid & (next_T <= params.transmittance_min);
                    const bool blend = valid & !stop;
                    w[p] = blend ? alpha * Tp[p] : scalar_t(0);
                    Tp[p] = blend ? next_T : Tp[p];
                    act[p] = stop ? scalar_t(0) : act[p];
                    lst[p] = blend ? k32 : lst[p];
                    any_blend += blend ? scalar_t(1) : scalar_t(0);
                    stops += stop ? scalar_t(1) : scalar_t(0);
                }
                n_active -= int64_t(stops);
                if (any_blend == 0) {
                    std::fill(w + p_begin, w + p_end, scalar_t(0));
                    continue;
                }
                std::copy_n(colors + g * D, D, batch_colors.data() + n_batch * D_padded);
                batch_lo = std::min(batch_lo, p_begin);
                batch_hi = std::max(batch_hi, p_end);
                if (++n_batch == kBatch) flush();
            }
            flush();

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
