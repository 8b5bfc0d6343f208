// Tile binning on the GPU: one thread per projected Gaussian counts / writes its tile keys (math in
// distill3d/tile_math.h, shared with the CPU); the caller sorts the keys (torch's stable radix sort);
// one thread per sorted intersection writes the tile offsets at run boundaries.
#include "distill3d/tile_math.h"
#include "kernels_cuda.h"

namespace distill3d {
namespace cuda {

namespace {
constexpr int kThreads = 256;

inline unsigned blocks_for(int64_t n) { return unsigned((n + kThreads - 1) / kThreads); }

template <typename scalar_t>
__global__ void isect_count_kernel(int64_t CN, const scalar_t* __restrict__ means2d, const int32_t* __restrict__ radii,
                                   int64_t tile_size, int64_t tile_width, int64_t tile_height,
                                   int32_t* __restrict__ tiles_per_gauss) {
    const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i >= CN) return;
    const TileRect r = tile_rect(means2d[2 * i], means2d[2 * i + 1], radii[2 * i], radii[2 * i + 1], tile_size,
                                 tile_width, tile_height);
    tiles_per_gauss[i] = int32_t(r.count());
}

template <typename scalar_t>
__global__ void isect_fill_kernel(int64_t C, int64_t N, const scalar_t* __restrict__ means2d,
                                  const int32_t* __restrict__ radii, const scalar_t* __restrict__ depths,
                                  int64_t tile_size, int64_t tile_width, int64_t tile_height,
                                  const int32_t* __restrict__ tiles_per_gauss, const int64_t* __restrict__ starts,
                                  int tile_bits, int64_t* __restrict__ isect_ids, int32_t* __restrict__ flatten_ids) {
    const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i >= C * N || tiles_per_gauss[i] == 0) return;
    fill_intersections(i, N, means2d, radii, depths, tile_size, tile_width, tile_height, tile_bits, starts[i],
                       isect_ids, flatten_ids);
}

// offsets[t] = first intersection of flat tile t; tiles between two runs (empty ones) share the start
// of the next run, and tiles after the last run get M.
__global__ void isect_offset_kernel(int64_t M, const int64_t* __restrict__ isect_ids, int tile_bits,
                                    int64_t tiles_per_camera, int64_t num_tiles, int32_t* __restrict__ offsets) {
    const int64_t m = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (m > M) return;
    const int64_t tile = m < M ? isect_key_tile(isect_ids[m], tile_bits, tiles_per_camera) : num_tiles;
    const int64_t prev = m > 0 ? isect_key_tile(isect_ids[m - 1], tile_bits, tiles_per_camera) : -1;
    for (int64_t t = prev + 1; t <= tile && t < num_tiles; ++t) offsets[t] = int32_t(m);
}
}  // namespace

template <typename scalar_t>
void isect_count(int64_t C, int64_t N, const scalar_t* means2d, const int32_t* radii, int64_t tile_size,
                 int64_t tile_width, int64_t tile_height, int32_t* tiles_per_gauss, cudaStream_t stream) {
    if (C * N == 0) return;
    isect_count_kernel<scalar_t><<<blocks_for(C * N), kThreads, 0, stream>>>(C * N, means2d, radii, tile_size,
                                                                             tile_width, tile_height, tiles_per_gauss);
}

template <typename scalar_t>
void isect_fill(int64_t C, int64_t N, const scalar_t* means2d, const int32_t* radii, const scalar_t* depths,
                int64_t tile_size, int64_t tile_width, int64_t tile_height, const int32_t* tiles_per_gauss,
                const int64_t* starts, int64_t* isect_ids, int32_t* flatten_ids, cudaStream_t stream) {
    if (C * N == 0) return;
    isect_fill_kernel<scalar_t><<<blocks_for(C * N), kThreads, 0, stream>>>(
        C, N, means2d, radii, depths, tile_size, tile_width, tile_height, tiles_per_gauss, starts,
        bits_for(tile_width * tile_height), isect_ids, flatten_ids);
}

void isect_offset_encode(int64_t M, const int64_t* isect_ids, int64_t C, int64_t tile_width, int64_t tile_height,
                         int32_t* offsets, cudaStream_t stream) {
    const int64_t tiles_per_camera = tile_width * tile_height;
    isect_offset_kernel<<<blocks_for(M + 1), kThreads, 0, stream>>>(M, isect_ids, bits_for(tiles_per_camera),
                                                                    tiles_per_camera, C * tiles_per_camera, offsets);
}

#define D3_INSTANTIATE(T)                                                                                          \
    template void isect_count<T>(int64_t, int64_t, const T*, const int32_t*, int64_t, int64_t, int64_t, int32_t*,  \
                                 cudaStream_t);                                                                    \
    template void isect_fill<T>(int64_t, int64_t, const T*, const int32_t*, const T*, int64_t, int64_t, int64_t,   \
                                const int32_t*, const int64_t*, int64_t*, int32_t*, cudaStream_t);
D3_INSTANTIATE(float)
D3_INSTANTIATE(double)
#undef D3_INSTANTIATE

}  // namespace cuda
}  // namespace distill3d
