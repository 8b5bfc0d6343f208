// Forward alpha compositing on the GPU (formula in csrc/cpu/rasterize_fwd_cpu.cpp; per-pair math in
// distill3d/blend_math.h, shared with the CPU). One block per (tile, chunk of kChunk channels), one
// pixel per thread, the chunk's sums in registers. Accumulating straight into `render` instead
// (one read-modify-write of global memory per blend and channel, strided by D across a warp) ran
// up to 14x slower than gsplat at D = 128 on an H200 (README, rasterizer section). Each chunk
// re-evaluates the tile's alphas, as gsplat's channel chunks do; the arithmetic is identical in every
// chunk, so they stop at the same Gaussian and chunk 0 alone writes transmittance and last index.
#include "distill3d/blend_math.h"
#include "kernels_cuda.h"
#include "raster_tile.cuh"

namespace distill3d {
namespace cuda {

namespace {
template <typename scalar_t, int kChunk>
__global__ void rasterize_fwd_kernel(RasterDims dims, BlendParams<scalar_t> params,
                                     const scalar_t* __restrict__ means2d, const scalar_t* __restrict__ conics,
                                     const scalar_t* __restrict__ colors, const scalar_t* __restrict__ opacities,
                                     const scalar_t* __restrict__ backgrounds, const int32_t* __restrict__ isect_offsets,
                                     const int32_t* __restrict__ flatten_ids, scalar_t* __restrict__ render,
                                     scalar_t* __restrict__ transmittance, int32_t* __restrict__ last_ids) {
    extern __shared__ unsigned char smem[];
    const int capacity = blockDim.x;
    GaussianBatch<scalar_t> batch(smem, capacity);
    const TilePixel px(dims, isect_offsets);
    const int64_t D = dims.channels;
    const int64_t first = int64_t(blockIdx.y) * kChunk;  // this block's first channel
    const int width = int(min(int64_t(kChunk), D - first));
    scalar_t sum[kChunk];
#pragma unroll
    for (int c = 0; c < kChunk; ++c) sum[c] = scalar_t(0);
    const scalar_t cx = scalar_t(px.x) + scalar_t(0.5), cy = scalar_t(px.y) + scalar_t(0.5);
    scalar_t T = 1;
    int32_t last = -1;
    bool done = !px.inside;

    for (int64_t start = px.isect_begin; start < px.isect_end; start += capacity) {
        // Barrier before the batch is overwritten; stop once every pixel of the tile is done.
        if (__syncthreads_count(done) == capacity) break;
        if (start + threadIdx.x < px.isect_end)
            batch.load(threadIdx.x, start + threadIdx.x, flatten_ids, means2d, conics, opacities);
        __syncthreads();
        const int n = int(min(int64_t(capacity), px.isect_end - start));
        for (int j = 0; j < n && !done; ++j) {
            const scalar_t dx = cx - batch.xy[2 * j], dy = cy - batch.xy[2 * j + 1];
            const scalar_t sigma = gaussian_sigma(dx, dy, batch.conic[3 * j], batch.conic[3 * j + 1], batch.conic[3 * j + 2]);
            const scalar_t alpha = min(params.alpha_max, batch.opacity[j] * gaussian_falloff(sigma));
            if (!alpha_blends(sigma, alpha, params)) continue;
            const scalar_t next_T = T * (scalar_t(1) - alpha);
            if (next_T <= params.transmittance_min) {
                done = true;
                break;
            }
            const scalar_t w = alpha * T;
            const scalar_t* col = colors + int64_t(batch.ids[j]) * D + first;
#pragma unroll
            for (int c = 0; c < kChunk; ++c)
                if (c < width) sum[c] += w * col[c];
            T = next_T;
            last = int32_t(start + j);
        }
    }
    if (!px.inside) return;
    scalar_t* out = render + px.pixel * D + first;
    const scalar_t* bg = backgrounds == nullptr ? nullptr : backgrounds + px.camera * D + first;
#pragma unroll
    for (int c = 0; c < kChunk; ++c)
        if (c < width) out[c] = sum[c] + (bg == nullptr ? scalar_t(0) : T * bg[c]);
    if (blockIdx.y == 0) {
        transmittance[px.pixel] = T;
        last_ids[px.pixel] = last;
    }
}

}  // namespace

template <typename scalar_t>
void rasterize_forward(const RasterDims& dims, const BlendParams<scalar_t>& params, const scalar_t* means2d,
                       const scalar_t* conics, const scalar_t* colors, const scalar_t* opacities,
                       const scalar_t* backgrounds, const int32_t* isect_offsets, const int32_t* flatten_ids,
                       scalar_t* render, scalar_t* transmittance, int32_t* last_ids, cudaStream_t stream) {
    if (dims.cameras * dims.tile_width * dims.tile_height == 0) return;
    const int threads = threads_per_tile(dims.tile_size);
    with_channel_chunk(dims.channels, [&](auto chunk) {
        constexpr int kChunk = decltype(chunk)::value;
        rasterize_fwd_kernel<scalar_t, kChunk>
            <<<chunked_tile_grid(dims, kChunk), threads, GaussianBatch<scalar_t>::bytes(threads), stream>>>(
                dims, params, means2d, conics, colors, opacities, backgrounds, isect_offsets, flatten_ids, render,
                transmittance, last_ids);
    });
}

#define D3_INSTANTIATE(T)                                                                                      \
    template void rasterize_forward<T>(const RasterDims&, const BlendParams<T>&, const T*, const T*, const T*, \
                                       const T*, const T*, const int32_t*, const int32_t*, T*, T*, int32_t*,   \
                                       cudaStream_t);
D3_INSTANTIATE(float)
D3_INSTANTIATE(double)
#undef D3_INSTANTIATE

}  // namespace cuda
}  // namespace distill3d
