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
// Same layout as the forward pass (tiles over OpenMP threads, SIMD over a tile's pixels). Each
// Gaussian's gradient is summed over the tile's pixels first, then added once per (Gaussian, tile)
// (an atomic add when several threads run), so that costs O(D) per pair of a Gaussian and a tile.
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
}  // namespace

template <typename scalar_t>
void rasterize_backward(const RasterDims& dims, const BlendParams<scalar_t>& params, const scalar_t* means2d,
                        const scalar_t* conics, const scalar_t* colors, const scalar_t* opacities,
                        const scalar_t* backgrounds, const int32_t* isect_offsets, const int32_t* flatten_ids,
                        const scalar_t* transmittance, const int32_t* last_ids, const scalar_t* v_render,
                        const scalar_t* v_alpha, scalar_t* v_means2d, scalar_t* v_conics, scalar_t* v_colors,
                        scalar_t* v_opacities) {
    const int64_t D = dims.channels, G = dims.geometry_channels;
    const int64_t num_tiles = dims.cameras * dims.tile_height * dims.tile_width;
#pragma omp parallel if (worth_parallel(dims))
    {
        TileBlock<scalar_t> block(dims.tile_size);
        const int64_t P = block.pixels;
        // Per-lane state: current T (starts at T_N), T_N, dL/dalpha_out - bg.g, s = S.g, last blended index.
        std::vector<scalar_t> T(P), T_final(P), v_alpha_bg(P), behind(P);
        std::vector<int32_t> last(P);
        // Per-Gaussian scratch: alpha, exp(-sigma), raw alpha, T_i, blend weight, mask, c.g.
        std::vector<scalar_t> alpha(P), falloff(P), raw(P), T_i(P), weight(P), mask(P), color_dot(P);
        std::vector<scalar_t> grad(D * P);  // dL/drender of the tile, channel-major
        std::vector<scalar_t> v_col(D);
        const bool shared = omp_get_num_threads() > 1;
#pragma omp for schedule(dynamic, 1)
        for (int64_t t = 0; t < num_tiles; ++t) {
            block.select(t, dims, isect_offsets);
            if (block.isect_end <= block.isect_begin) continue;
            const scalar_t* bg = backgrounds ? backgrounds + block.camera * D : nullptr;
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
                const scalar_t* g = v_render + pix * D;
                scalar_t bg_dot = 0;
                for (int64_t d = 0; d < G && bg; ++d) bg_dot += bg[d] * g[d];
                for (int64_t d = 0; d < D; ++d) grad[d * P + p] = g[d];
                T[p] = T_final[p] = transmittance[pix];
                v_alpha_bg[p] = v_alpha[pix] - bg_dot;
                last[p] = last_ids[pix];
                last_max = std::max(last_max, last[p]);
            }
            std::fill(behind.begin(), behind.end(), scalar_t(0));
            const scalar_t* cx = block.centre_x.data();
            const scalar_t* cy = block.centre_y.data();

            for (int64_t k = std::min<int64_t>(last_max, block.isect_end - 1); k >= block.isect_begin; --k) {
                const int64_t g = flatten_ids[k];
                const scalar_t mx = means2d[2 * g], my = means2d[2 * g + 1];
                const scalar_t a = conics[3 * g], b = conics[3 * g + 1], c = conics[3 * g + 2];
                const scalar_t o = opacities[g];
                const scalar_t* col = colors + g * D;
                const int32_t k32 = int32_t(k);
                // The rows the forward pass could blend this Gaussian into (see rasterize_fwd_cpu.cpp).
                const auto [p_begin, p_end] =
                    block.row_lanes(double(my), double(blend_half_height(a, b, c, o, params)), dims.tile_size);
                scalar_t any = 0;
#pragma omp simd reduction(+ : any)
                for (int64_t p = p_begin; p < p_end; ++p) {
                    const scalar_t dx = cx[p] - mx, dy = cy[p] - my;
                    const scalar_t sigma = gaussian_sigma(dx, dy, a, b, c);
                    const scalar_t f = gaussian_falloff(sigma);
                    const scalar_t r = o * f;
                    const scalar_t al = std::min(params.alpha_max, r);
                    const bool valid = (k32 <= last[p]) & alpha_blends(sigma, al, params);
                    const scalar_t Ti = T[p] / (scalar_t(1) - al);
                    mask[p] = valid ? scalar_t(1) : scalar_t(0);
                    alpha[p] = valid ? al : scalar_t(0);
                    falloff[p] = f;
                    raw[p] = r;
                    T_i[p] = valid ? Ti : T[p];
                    weight[p] = valid ? al * Ti : scalar_t(0);
                    color_dot[p] = 0;
                    any += mask[p];
                }
                if (any == 0) continue;

                // dL/dc: reduce over the tile's pixels, one channel at a time.
                for (int64_t d = 0; d < D; ++d) {
                    const scalar_t* gd = grad.data() + d * P;
                    scalar_t s = 0;
#pragma omp simd reduction(+ : s)
                    for (int64_t p = p_begin; p < p_end; ++p) s += weight[p] * gd[p];
                    v_col[d] = s;
                }
                // c.g over the geometry channels.
                for (int64_t d = 0; d < G; ++d) {
                    const scalar_t cd = col[d];
                    const scalar_t* gd = grad.data() + d * P;
#pragma omp simd
                    for (int64_t p = p_begin; p < p_end; ++p) color_dot[p] += cd * gd[p];
                }
                scalar_t s_mx = 0, s_my = 0, s_a = 0, s_b = 0, s_c = 0, s_o = 0;
#pragma omp simd reduction(+ : s_mx, s_my, s_a, s_b, s_c, s_o)
                for (int64_t p = p_begin; p < p_end; ++p) {
                    const scalar_t dx = cx[p] - mx, dy = cy[p] - my;
                    const scalar_t one_minus = scalar_t(1) - alpha[p];
                    const scalar_t va =
                        mask[p] * (T_i[p] * (color_dot[p] - behind[p]) + T_final[p] / one_minus * v_alpha_bg[p]);
                    scalar_t v_mx, v_my, v_a, v_b, v_c, v_o;
                    alpha_backward(dx, dy, a, b, c, falloff[p], raw[p], va, params, v_mx, v_my, v_a, v_b, v_c, v_o);
                    s_mx += v_mx;
                    s_my += v_my;
                    s_a += v_a;
                    s_b += v_b;
                    s_c += v_c;
                    s_o += v_o;
                    behind[p] += alpha[p] * (color_dot[p] - behind[p]);
                    T[p] = T_i[p];
                }
                add_gradient(v_means2d + 2 * g, s_mx, shared);
                add_gradient(v_means2d + 2 * g + 1, s_my, shared);
                add_gradient(v_conics + 3 * g, s_a, shared);
                add_gradient(v_conics + 3 * g + 1, s_b, shared);
                add_gradient(v_conics + 3 * g + 2, s_c, shared);
                add_gradient(v_opacities + g, s_o, shared);
                scalar_t* vc = v_colors + g * D;
                for (int64_t d = 0; d < D; ++d) add_gradient(vc + d, v_col[d], shared);
            }
        }
    }
}

#define D3_INSTANTIATE(T)                                                                                       \
    template void rasterize_backward<T>(const RasterDims&, const BlendParams<T>&, const T*, const T*, const T*, \
                                        const T*, const T*, const int32_t*, const int32_t*, const T*,           \
                                        const int32_t*, const T*, const T*, T*, T*, T*, T*);
D3_INSTANTIATE(float)
D3_INSTANTIATE(double)
#undef D3_INSTANTIATE

}  // namespace cpu
}  // namespace distill3d
