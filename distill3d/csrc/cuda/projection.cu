// EWA projection on the GPU: one thread per Gaussian builds its 3D covariance once and visits every
// camera (math in distill3d/projection_math.h, shared with the CPU). The backward sums a Gaussian's
// camera contributions in its own thread, so it needs no atomics.
#include "distill3d/projection_math.h"
#include "kernels_cuda.h"

namespace distill3d {
namespace cuda {

namespace {
constexpr int kThreads = 256;

inline unsigned blocks_for(int64_t n) { return unsigned((n + kThreads - 1) / kThreads); }

template <typename scalar_t>
__global__ void project_forward_kernel(int64_t C, int64_t N, ProjectionParams<scalar_t> params,
                                       const scalar_t* __restrict__ means, const scalar_t* __restrict__ quats,
                                       const scalar_t* __restrict__ scales, const scalar_t* __restrict__ viewmats,
                                       const scalar_t* __restrict__ Ks, int32_t* __restrict__ radii,
                                       scalar_t* __restrict__ means2d,
                                       scalar_t* __restrict__ conics, scalar_t* __restrict__ compensations) {
    const int64_t n = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (n >= N) return;
    scalar_t M[9], cov[9];
    covariance_3d(quats + 4 * n, scales + 3 * n, M, cov);
    for (int64_t cam = 0; cam < C; ++cam) {
        const int64_t i = cam * N + n;
        project_forward_one(viewmats + 16 * cam, Ks + 9 * cam, means + 3 * n, cov, params, radii + 2 * i,
                            means2d + 2 * i, conics + 3 * i, compensations + i);
    }
}

template <typename scalar_t>
__global__ void project_backward_kernel(int64_t C, int64_t N, ProjectionParams<scalar_t> params,
                                        const scalar_t* __restrict__ means, const scalar_t* __restrict__ quats,
                                        const scalar_t* __restrict__ scales, const scalar_t* __restrict__ viewmats,
                                        const scalar_t* __restrict__ Ks, const int32_t* __restrict__ radii,
                                        const scalar_t* __restrict__ v_means2d,
                                        const scalar_t* __restrict__ v_conics,
                                        const scalar_t* __restrict__ v_compensations, scalar_t* __restrict__ v_means,
                                        scalar_t* __restrict__ v_quats, scalar_t* __restrict__ v_scales) {
    const int64_t n = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (n >= N) return;
    scalar_t M[9], cov[9], v_cov[9] = {}, v_mean[3] = {};
    covariance_3d(quats + 4 * n, scales + 3 * n, M, cov);
    for (int64_t cam = 0; cam < C; ++cam) {
        const int64_t i = cam * N + n;
        scalar_t v_t[3] = {}, v_cov_cam[9];
        project_backward_one(viewmats + 16 * cam, Ks + 9 * cam, means + 3 * n, cov, params, radii[2 * i] > 0,
                             v_means2d + 2 * i, v_conics + 3 * i, v_compensations[i], v_t, v_cov_cam);
        camera_to_world_backward(viewmats + 16 * cam, v_t, v_cov_cam, v_mean, v_cov);
    }
    for (int j = 0; j < 3; ++j) v_means[3 * n + j] = v_mean[j];
    covariance_3d_backward(quats + 4 * n, scales + 3 * n, v_cov, v_quats + 4 * n, v_scales + 3 * n);
}
}  // namespace

template <typename scalar_t>
void project_forward(int64_t C, int64_t N, const ProjectionParams<scalar_t>& params, const scalar_t* means,
                     const scalar_t* quats, const scalar_t* scales, const scalar_t* viewmats, const scalar_t* Ks,
                     int32_t* radii, scalar_t* means2d, scalar_t* conics, scalar_t* compensations,
                     cudaStream_t stream) {
    if (C * N == 0) return;
    project_forward_kernel<scalar_t><<<blocks_for(N), kThreads, 0, stream>>>(
        C, N, params, means, quats, scales, viewmats, Ks, radii, means2d, conics, compensations);
}

template <typename scalar_t>
void project_backward(int64_t C, int64_t N, const ProjectionParams<scalar_t>& params, const scalar_t* means,
                      const scalar_t* quats, const scalar_t* scales, const scalar_t* viewmats, const scalar_t* Ks,
                      const int32_t* radii, const scalar_t* v_means2d,
                      const scalar_t* v_conics, const scalar_t* v_compensations, scalar_t* v_means,
                      scalar_t* v_quats, scalar_t* v_scales, cudaStream_t stream) {
    if (N == 0) return;
    project_backward_kernel<scalar_t><<<blocks_for(N), kThreads, 0, stream>>>(
        C, N, params, means, quats, scales, viewmats, Ks, radii, v_means2d, v_conics, v_compensations,
        v_means, v_quats, v_scales);
}

#define D3_INSTANTIATE(T)                                                                                          \
    template void project_forward<T>(int64_t, int64_t, const ProjectionParams<T>&, const T*, const T*, const T*,   \
                                     const T*, const T*, int32_t*, T*, T*, T*, cudaStream_t);                  \
    template void project_backward<T>(int64_t, int64_t, const ProjectionParams<T>&, const T*, const T*, const T*, \
                                      const T*, const T*, const int32_t*, const T*, const T*, const T*,  \
                                      T*, T*, T*, cudaStream_t);
D3_INSTANTIATE(float)
D3_INSTANTIATE(double)
#undef D3_INSTANTIATE

}  // namespace cuda
}  // namespace distill3d
