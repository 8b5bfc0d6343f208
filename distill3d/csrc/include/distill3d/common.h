// Definitions shared by the CPU (C++/OpenMP) and CUDA rasterizer kernels.
//
// Everything in csrc/include is header-only and free of torch headers, so the same math compiles
// into the CPU extension, into the CUDA kernels and into a plain `nvcc -c` compile check.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define D3_HD __host__ __device__ __forceinline__
#else
#define D3_HD inline
#endif

namespace distill3d {

// Alpha-compositing thresholds (3DGS defaults live in the Python config, not here):
//   alpha = min(alpha_max, opacity * exp(-sigma)); skipped if alpha < alpha_min;
//   a pixel stops before the Gaussian that would bring its transmittance to <= transmittance_min.
template <typename scalar_t>
struct BlendParams {
    scalar_t alpha_min;
    scalar_t alpha_max;
    scalar_t transmittance_min;
};

// Sizes of one compositing call. Colours are [C, N, D]; channels [0, geometry_channels) (plus the
// alpha output) send gradients to means2d / conics / opacities, the remaining ones only to colours.
struct RasterDims {
    int64_t cameras;            // C
    int64_t gaussians;          // N
    int64_t channels;           // D
    int64_t geometry_channels;  // G, 0 <= G <= D
    int64_t width;
    int64_t height;
    int64_t tile_size;
    int64_t tile_width;   // ceil(width / tile_size)
    int64_t tile_height;  // ceil(height / tile_size)
    int64_t intersections;  // M = length of flatten_ids
};

// Below this many (Gaussian, pixel) pairs of tile-list work a CPU call stays on one thread: waking
// the OpenMP team costs more than it saves, and far more on a loaded machine (gradcheck's many tiny
// calls wait on descheduled threads).
constexpr int64_t kMinParallelPairs = int64_t(1) << 16;
// The same for the per-Gaussian loops of tile binning.
constexpr int64_t kMinParallelGaussians = int64_t(1) << 14;

D3_HD bool worth_parallel(const RasterDims& dims) {
    return dims.intersections * dims.tile_size * dims.tile_size >= kMinParallelPairs;
}

}  // namespace distill3d
