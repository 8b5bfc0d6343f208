// CUDA kernels of the rasterizer behind plain-pointer launchers (no torch types), so the .cu files
// compile with a bare `nvcc -c`. All pointers are device pointers to contiguous arrays; the shapes
// are those of the CPU kernels in csrc/cpu/kernels_cpu.h. Launches go to `stream`.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "distill3d/common.h"
#include "distill3d/projection_math.h"

namespace distill3d {
namespace cuda {

// Projection (shapes as in csrc/cpu/kernels_cpu.h): one thread per Gaussian, looping over cameras.
template <typename scalar_t>
void project_forward(int64_t C, int64_t N, const ProjectionParams<scalar_t>& params, const scalar_t* means,
                     const scalar_t* quats, const scalar_t* scales, const scalar_t* viewmats, const scalar_t* Ks,
                     int32_t* radii, scalar_t* means2d, scalar_t* conics, scalar_t* compensations,
                     cudaStream_t stream);

template <typename scalar_t>
void project_backward(int64_t C, int64_t N, const ProjectionParams<scalar_t>& params, const scalar_t* means,
                      const scalar_t* quats, const scalar_t* scales, const scalar_t* viewmats, const scalar_t* Ks,
                      const int32_t* radii, const scalar_t* v_means2d,
                      const scalar_t* v_conics, const scalar_t* v_compensations, scalar_t* v_means,
                      scalar_t* v_quats, scalar_t* v_scales, cudaStream_t stream);

template <typename scalar_t>
void isect_count(int64_t C, int64_t N, const scalar_t* means2d, const int32_t* radii, int64_t tile_size,
                 int64_t tile_width, int64_t tile_height, int32_t* tiles_per_gauss, cudaStream_t stream);

// Unsorted keys / flatten ids; `starts` = exclusive prefix sum of tiles_per_gauss. The caller sorts
// the keys with a stable sort (torch's radix sort) and permutes the ids alike.
template <typename scalar_t>
void isect_fill(int64_t C, int64_t N, const scalar_t* means2d, const int32_t* radii, const scalar_t* depths,
                int64_t tile_size, int64_t tile_width, int64_t tile_height, const int32_t* tiles_per_gauss,
                const int64_t* starts, int64_t* isect_ids, int32_t* flatten_ids, cudaStream_t stream);

void isect_offset_encode(int64_t M, const int64_t* isect_ids, int64_t C, int64_t tile_width, int64_t tile_height,
                         int32_t* offsets, cudaStream_t stream);

template <typename scalar_t>
void rasterize_forward(const RasterDims& dims, const BlendParams<scalar_t>& params, const scalar_t* means2d,
                       const scalar_t* conics, const scalar_t* colors, const scalar_t* opacities,
                       const scalar_t* backgrounds, const int32_t* isect_offsets, const int32_t* flatten_ids,
                       scalar_t* render, scalar_t* transmittance, int32_t* last_ids, cudaStream_t stream);

// Buffers of the deterministic backward (all null: the atomic one). The caller allocates them.
template <typename scalar_t>
struct DeterministicRows {
    scalar_t* isect_rows = nullptr;   // [M, backward_row_width(D)], zero-initialised
    const int64_t* order = nullptr;   // [M] intersection indices sorted stably by flatten id
    const int64_t* starts = nullptr;  // [C * N + 1]: first position in `order` of each flatten id, then M
};

// Values per intersection row of the deterministic backward for D = `channels`.
int64_t backward_row_width(int64_t channels);

// Accumulates into zero-initialised gradients (shapes as on the CPU). With `rows` set, each Gaussian's
// per-tile gradients are summed in a fixed order (bitwise reproducible) instead of with atomics.
template <typename scalar_t>
void rasterize_backward(const RasterDims& dims, const BlendParams<scalar_t>& params, const scalar_t* means2d,
                        const scalar_t* conics, const scalar_t* colors, const scalar_t* opacities,
                        const scalar_t* backgrounds, const int32_t* isect_offsets, const int32_t* flatten_ids,
                        const scalar_t* transmittance, const int32_t* last_ids, const scalar_t* v_render,
                        const scalar_t* v_alpha, scalar_t* v_means2d, scalar_t* v_conics, scalar_t* v_colors,
                        scalar_t* v_opacities, const DeterministicRows<scalar_t>& rows, cudaStream_t stream);

}  // namespace cuda
}  // namespace distill3d
