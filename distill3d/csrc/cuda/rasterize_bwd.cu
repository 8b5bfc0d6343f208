// Backward alpha compositing on the GPU, back to front per pixel (formulas in
// csrc/cpu/rasterize_bwd_cpu.cpp; per-pair derivative in distill3d/blend_math.h, shared with the CPU).
// All lanes of a warp visit the same Gaussian at the same step, so each gradient is summed over the
// warp with shuffles and added with one atomic per warp. Atomics add in whichever order the warps and
// blocks get there, so float sums differ run to run; the deterministic mode instead sums a block's
// warps in warp order into a row per (intersection, channel chunk) and a second kernel adds each
// Gaussian's rows in intersection order (bitwise reproducible; costs M x row width of memory and a
// block barrier per Gaussian step).
//
// One block per (tile, chunk of kChunk channels), as in the forward pass, with the chunk's upstream
// gradient in registers (reading it from global memory per blend, strided by D across a warp, made the
// backward pass 1.4-4x slower than gsplat's at D >= 64). dL/dalpha is linear in the upstream gradient:
//   dL/dalpha_i = T_i (c_i.g - S_i.g) + T_final / (1 - alpha_i) (v_alpha - bg.g)
// with S_i the colour composited behind i, so each chunk adds the part of its own geometry channels
// (chunk 0 also the v_alpha term), and the geometry gradients of the chunks sum to the whole.
#include "distill3d/blend_math.h"
#include "kernels_cuda.h"
#include "raster_tile.cuh"

namespace distill3d {
namespace cuda {

namespace {
// Deterministic block sums hold one partial per warp: tiles up to 32 x 32 pixels.
constexpr int kMaxWarps = 32;

template <typename scalar_t>
__device__ __forceinline__ scalar_t warp_sum(scalar_t v) {
    for (int offset = kWarp / 2; offset > 0; offset /= 2) v += __shfl_down_sync(0xffffffffu, v, offset);
    return v;
}

// Sums v over the warp and lets lane 0 add it to *target.
template <typename scalar_t>
__device__ __forceinline__ void warp_atomic_add(scalar_t* target, scalar_t v) {
    v = warp_sum(v);
    if ((threadIdx.x % kWarp) == 0) atomicAdd(target, v);
}

// Deterministic mode: one intersection's value `slot` of this block, summed over the warp into
// partials[warp][slot]; row_store() then adds the warps in warp order.
template <typename scalar_t, int kValues>
__device__ __forceinline__ void warp_partial(scalar_t* partials, int slot, scalar_t v) {
    v = warp_sum(v);
    if ((threadIdx.x % kWarp) == 0) partials[(threadIdx.x / kWarp) * kValues + slot] = v;
}

template <typename scalar_t, int kChunk, bool kDeterministic>
__global__ void rasterize_bwd_kernel(RasterDims dims, BlendParams<scalar_t> params,
                                     const scalar_t* __restrict__ means2d, const scalar_t* __restrict__ conics,
                                     const scalar_t* __restrict__ colors, const scalar_t* __restrict__ opacities,
                                     const scalar_t* __restrict__ backgrounds, const int32_t* __restrict__ isect_offsets,
                                     const int32_t* __restrict__ flatten_ids, const scalar_t* __restrict__ transmittance,
                                     const int32_t* __restrict__ last_ids, const scalar_t* __restrict__ v_render,
                                     const scalar_t* __restrict__ v_alpha, scalar_t* __restrict__ v_means2d,
                                     scalar_t* __restrict__ v_conics, scalar_t* __restrict__ v_colors,
                                     scalar_t* __restrict__ v_opacities, scalar_t* __restrict__ isect_rows) {
    // Deterministic mode: slots [0, kChunk) colours, then the geometry gradients.
    constexpr int kValues = kChunk + kGeometryGrads;
    __shared__ scalar_t partials[kDeterministic ? kMaxWarps * kValues : 1];
    extern __shared__ unsigned char smem[];
    const int capacity = blockDim.x;
    GaussianBatch<scalar_t> batch(smem, capacity);
    const TilePixel px(dims, isect_offsets);
    const int64_t D = dims.channels;
    const int64_t first = int64_t(blockIdx.y) * kChunk;  // this block's first channel
    const int width = int(min(int64_t(kChunk), D - first));
    // Channels [0, geometry) of this chunk send gradients to the geometry.
    const int geometry = int(max(int64_t(0), min(int64_t(width), dims.geometry_channels - first)));
    const bool has_geometry = geometry > 0 || blockIdx.y == 0;
    const int64_t row_width = backward_row_width(D, kChunk);
    const scalar_t cx = scalar_t(px.x) + scalar_t(0.5), cy = scalar_t(px.y) + scalar_t(0.5);
    scalar_t g[kChunk];
#pragma unroll
    for (int c = 0; c < kChunk; ++c) g[c] = px.inside && c < width ? v_render[px.pixel * D + first + c] : scalar_t(0);
    const scalar_t T_final = px.inside ? transmittance[px.pixel] : scalar_t(1);
    const int32_t last = px.inside ? last_ids[px.pixel] : -1;
    scalar_t v_alpha_bg = 0;  // this chunk's part of dL/dalpha_out - bg.g
    if (px.inside) {
        if (blockIdx.y == 0) v_alpha_bg = v_alpha[px.pixel];
        if (backgrounds != nullptr) {
#pragma unroll
            for (int c = 0; c < kChunk; ++c)
                if (c < geometry) v_alpha_bg -= backgrounds[px.camera * D + first + c] * g[c];
        }
    }
    scalar_t T = T_final, behind = 0;  // behind = S.g of this chunk's colour composited behind

    // Batches from the back of the list, starting at the deepest last-blended index of the block.
    __shared__ int32_t block_last;
    if (threadIdx.x == 0) block_last = -1;
    __syncthreads();
    if (px.inside) atomicMax(&block_last, last);
    __syncthreads();
    const int64_t list_end = min(px.isect_end, int64_t(block_last) + 1);
    const int64_t count = max(int64_t(0), list_end - px.isect_begin);
    const int64_t batches = (count + capacity - 1) / capacity;
    for (int64_t b = 0; b < batches; ++b) {
        const int64_t end = list_end - b * capacity;
        const int64_t start = max(px.isect_begin, end - capacity);
        __syncthreads();
        if (start + threadIdx.x < end) batch.load(threadIdx.x, start + threadIdx.x, flatten_ids, means2d, conics, opacities);
        __syncthreads();
        for (int j = int(end - start) - 1; j >= 0; --j) {
            const int64_t k = start + j;
            const scalar_t dx = cx - batch.xy[2 * j], dy = cy - batch.xy[2 * j + 1];
            const scalar_t a = batch.conic[3 * j], bb = batch.conic[3 * j + 1], c = batch.conic[3 * j + 2];
            const scalar_t sigma = gaussian_sigma(dx, dy, a, bb, c);
            const scalar_t falloff = gaussian_falloff(sigma);
            const scalar_t raw = batch.opacity[j] * falloff;
            const scalar_t alpha = min(params.alpha_max, raw);
            const bool valid = px.inside && k <= last && alpha_blends(sigma, alpha, params);
            // The deterministic block sum needs every warp at each step, so it skips a Gaussian only
            // when it blends nowhere in the block (its row then stays zero).
            if (kDeterministic ? !__syncthreads_or(valid) : !__any_sync(0xffffffffu, valid)) continue;
            const int64_t gid = batch.ids[j];
            const scalar_t* col = colors + gid * D + first;
            const scalar_t T_i = valid ? T / (scalar_t(1) - alpha) : T;
            const scalar_t w = valid ? alpha * T_i : scalar_t(0);
            scalar_t color_dot = 0;
#pragma unroll
            for (int ch = 0; ch < kChunk; ++ch) {
                if (ch >= width) break;
                if constexpr (kDeterministic)
                    warp_partial<scalar_t, kValues>(partials, ch, w * g[ch]);
                else
                    warp_atomic_add(v_colors + gid * D + first + ch, w * g[ch]);
                if (ch < geometry) color_dot += col[ch] * g[ch];
            }
            if (!valid) color_dot = 0;
            if (has_geometry) {
                const scalar_t va =
                    valid ? T_i * (color_dot - behind) + T_final / (scalar_t(1) - alpha) * v_alpha_bg : scalar_t(0);
                scalar_t v[kGeometryGrads];
                alpha_backward(dx, dy, a, bb, c, falloff, raw, va, params, v[0], v[1], v[2], v[3], v[4], v[5]);
                if constexpr (kDeterministic) {
#pragma unroll
                    for (int i = 0; i < kGeometryGrads; ++i) warp_partial<scalar_t, kValues>(partials, kChunk + i, v[i]);
                } else {
                    warp_atomic_add(v_means2d + 2 * gid, v[0]);
                    warp_atomic_add(v_means2d + 2 * gid + 1, v[1]);
                    warp_atomic_add(v_conics + 3 * gid, v[2]);
                    warp_atomic_add(v_conics + 3 * gid + 1, v[3]);
                    warp_atomic_add(v_conics + 3 * gid + 2, v[4]);
                    warp_atomic_add(v_opacities + gid, v[5]);
                }
            }
            if constexpr (kDeterministic) {
                __syncthreads();  // every warp's partials are stored
                // Thread `slot` adds the warps in order and stores the block's value in the row of
                // intersection k: geometry of chunk blockIdx.y at [6 y, 6 y + 6), colour d at 6 chunks + d.
                for (int slot = int(threadIdx.x); slot < kValues; slot += int(blockDim.x)) {
                    const bool colour = slot < width, geometric = slot >= kChunk && has_geometry;
                    if (!colour && !geometric) continue;
                    scalar_t sum = 0;
                    for (int warp = 0; warp < int(blockDim.x) / kWarp; ++warp) sum += partials[warp * kValues + slot];
                    const int64_t column = colour ? row_width - D + first + slot
                                                  : kGeometryGrads * int64_t(blockIdx.y) + slot - kChunk;
                    isect_rows[k * row_width + column] = sum;
                }
                // The next step's __syncthreads_or keeps its partials from overwriting these before
                // they are read.
            }
            if (valid) {
                behind += alpha * (color_dot - behind);
                T = T_i;
            }
        }
    }
}

// Deterministic mode, second pass: one thread per flattened Gaussian adds the rows of its intersections
// in intersection order (`order` lists intersections sorted stably by Gaussian, `starts[g]` where
// Gaussian g's begin, starts[C * N] = M).
template <typename scalar_t>
__global__ void reduce_rows_kernel(int64_t flat_gaussians, int64_t D, int64_t row_width,
                                   const scalar_t* __restrict__ isect_rows, const int64_t* __restrict__ order,
                                   const int64_t* __restrict__ starts, scalar_t* __restrict__ v_means2d,
                                   scalar_t* __restrict__ v_conics, scalar_t* __restrict__ v_colors,
                                   scalar_t* __restrict__ v_opacities) {
    const int64_t g = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (g >= flat_gaussians) return;
    const int64_t begin = starts[g], end = starts[g + 1];
    const int64_t geometry_columns = row_width - D;  // kGeometryGrads per channel chunk
    scalar_t geo[kGeometryGrads] = {};
    for (int64_t i = begin; i < end; ++i) {
        const scalar_t* row = isect_rows + order[i] * row_width;
        for (int64_t column = 0; column < geometry_columns; ++column) geo[column % kGeometryGrads] += row[column];
    }
    v_means2d[2 * g] += geo[0];
    v_means2d[2 * g + 1] += geo[1];
    v_conics[3 * g] += geo[2];
    v_conics[3 * g + 1] += geo[3];
    v_conics[3 * g + 2] += geo[4];
    v_opacities[g] += geo[5];
    for (int64_t d = 0; d < D; ++d) {
        scalar_t sum = 0;
        for (int64_t i = begin; i < end; ++i) sum += isect_rows[order[i] * row_width + geometry_columns + d];
        v_colors[g * D + d] += sum;
    }
}

}  // namespace

int64_t backward_row_width(int64_t channels) {
    int64_t width = 0;
    with_channel_chunk(channels, [&](auto chunk) { width = backward_row_width(channels, decltype(chunk)::value); });
    return width;
}

template <typename scalar_t>
void rasterize_backward(const RasterDims& dims, const BlendParams<scalar_t>& params, const scalar_t* means2d,
                        const scalar_t* conics, const scalar_t* colors, const scalar_t* opacities,
                        const scalar_t* backgrounds, const int32_t* isect_offsets, const int32_t* flatten_ids,
                        const scalar_t* transmittance, const int32_t* last_ids, const scalar_t* v_render,
                        const scalar_t* v_alpha, scalar_t* v_means2d, scalar_t* v_conics, scalar_t* v_colors,
                        scalar_t* v_opacities, const DeterministicRows<scalar_t>& rows, cudaStream_t stream) {
    if (dims.cameras * dims.tile_width * dims.tile_height == 0) return;
    const int threads = threads_per_tile(dims.tile_size);
    const bool deterministic = rows.isect_rows != nullptr;
    with_channel_chunk(dims.channels, [&](auto chunk) {
        constexpr int kChunk = decltype(chunk)::value;
        const auto launch = [&](auto kernel) {
            kernel<<<chunked_tile_grid(dims, kChunk), threads, GaussianBatch<scalar_t>::bytes(threads), stream>>>(
                dims, params, means2d, conics, colors, opacities, backgrounds, isect_offsets, flatten_ids,
                transmittance, last_ids, v_render, v_alpha, v_means2d, v_conics, v_colors, v_opacities,
                rows.isect_rows);
        };
        if (deterministic)
            launch(rasterize_bwd_kernel<scalar_t, kChunk, true>);
        else
            launch(rasterize_bwd_kernel<scalar_t, kChunk, false>);
    });
    if (!deterministic) return;
    const int64_t flat_gaussians = dims.cameras * dims.gaussians;
    if (flat_gaussians == 0) return;
    constexpr int kReduceThreads = 256;
    reduce_rows_kernel<scalar_t><<<unsigned((flat_gaussians + kReduceThreads - 1) / kReduceThreads), kReduceThreads, 0,
                                   stream>>>(flat_gaussians, dims.channels, backward_row_width(dims.channels),
                                             rows.isect_rows, rows.order, rows.starts, v_means2d, v_conics,
                                             v_colors, v_opacities);
}

#define D3_INSTANTIATE(T)                                                                                       \
    template void rasterize_backward<T>(const RasterDims&, const BlendParams<T>&, const T*, const T*, const T*, \
                                        const T*, const T*, const int32_t*, const int32_t*, const T*,           \
                                        const int32_t*, const T*, const T*, T*, T*, T*, T*,                     \
                                        const DeterministicRows<T>&, cudaStream_t);
D3_INSTANTIATE(float)
D3_INSTANTIATE(double)
#undef D3_INSTANTIATE

}  // namespace cuda
}  // namespace distill3d
