// EWA projection on the CPU: OpenMP threads take blocks of one SIMD vector of Gaussians (`Vec`, a GCC
// vector extension: 8 floats or 4 doubles); a block is projected as one vector per quantity, one
// Gaussian a lane, by the math of distill3d/projection_math.h (shared with CUDA), whose lanes perform
// the scalar operations in the scalar order. A block builds its 3D covariances once and visits
// every camera; the backward sums a Gaussian's camera contributions in its lane, so it needs no atomics.
// Inputs and outputs are Gaussian-major ([N, 3], [C, N, 2], ...): a block gathers them into lanes and
// scatters the results.
//
// The extension is compiled with -ffast-math, under which GCC computes vectorised float division and sqrt
// from approximate reciprocals (RCPPS / RSQRTPS and a Newton step) and may reassociate sums; this file
// opts out of those unsafe optimisations, so every lane rounds each operation as IEEE scalar code does
// (the one liberty left is fusing a multiply and an add into an FMA, as scalar code may too) and the
// integer radii agree with the torch reference.
#pragma GCC optimize("no-unsafe-math-optimizations", "no-trapping-math")

#include <algorithm>
#include <cmath>
#include <cstring>

#include "distill3d/projection_math.h"
#include "kernels_cpu.h"

namespace distill3d {
namespace cpu {

// Bytes of one projection vector: an AVX2 register.
constexpr int64_t kVecBytes = 32;
// Gaussians per vector (lanes) of scalar_t.
template <typename scalar_t>
constexpr int64_t kVecLanes = kVecBytes / int64_t(sizeof(scalar_t));

template <typename T, int64_t lanes>
struct VecType {
    typedef T type __attribute__((vector_size(lanes * sizeof(T))));
};
// A vector of kVecLanes<scalar_t> values of type T (T = scalar_t, or int32_t for radii).
template <typename T, typename scalar_t = T>
using Vec = typename VecType<T, kVecLanes<scalar_t>>::type;

// LaneOps of Vec<scalar_t> (see distill3d/projection_math.h).
template <typename scalar_t>
struct VecLaneOps {
    using V = Vec<scalar_t>;
    using scalar = scalar_t;
    using mask = decltype(V{} < V{});  // a lane is all ones (true) or 0
    using index = Vec<int32_t, scalar_t>;
    static V splat(scalar_t x) {
        V v;
        for (int64_t l = 0; l < kVecLanes<scalar_t>; ++l) v[l] = x;
        return v;
    }
    static V select(mask m, V a, V b) { return m ? a : b; }
    static V sqrt(V x) {
        for (int64_t l = 0; l < kVecLanes<scalar_t>; ++l) x[l] = std::sqrt(x[l]);
        return x;
    }
    static V ceil(V x) {
        for (int64_t l = 0; l < kVecLanes<scalar_t>; ++l) x[l] = std::ceil(x[l]);
        return x;
    }
    static index to_index(V x) { return __builtin_convertvector(x, index); }
};

}  // namespace cpu

template <>
struct LaneOps<cpu::Vec<float>> : cpu::VecLaneOps<float> {};
template <>
struct LaneOps<cpu::Vec<double>> : cpu::VecLaneOps<double> {};

namespace cpu {

namespace {

// lanes[k][l] = src[width * (begin + l) + k] for the block's `count` Gaussians (0 in the lanes past N).
template <int width, typename scalar_t, typename T>
inline void gather_lanes(const T* src, int64_t begin, int64_t count, Vec<T, scalar_t>* lanes) {
    constexpr int64_t n_lanes = kVecLanes<scalar_t>;
    alignas(kVecBytes) T buffer[width][n_lanes] = {};
    for (int64_t l = 0; l < count; ++l)
        for (int k = 0; k < width; ++k) buffer[k][l] = src[width * (begin + l) + k];
    std::memcpy(lanes, buffer, sizeof(buffer));
}

// dst[width * (begin + l) + k] = lanes[k][l] for the block's `count` Gaussians.
template <int width, typename scalar_t, typename T>
inline void scatter_lanes(const Vec<T, scalar_t>* lanes, int64_t begin, int64_t count, T* dst) {
    constexpr int64_t n_lanes = kVecLanes<scalar_t>;
    alignas(kVecBytes) T buffer[width][n_lanes];
    std::memcpy(buffer, lanes, sizeof(buffer));
    for (int64_t l = 0; l < count; ++l)
        for (int k = 0; k < width; ++k) dst[width * (begin + l) + k] = buffer[k][l];
}

}  // namespace

template <typename scalar_t>
void project_forward(int64_t C, int64_t N, const ProjectionParams<scalar_t>& params, const scalar_t* means,
                     const scalar_t* quats, const scalar_t* scales, const scalar_t* viewmats, const scalar_t* Ks,
                     int32_t* radii, scalar_t* means2d, scalar_t* conics, scalar_t* compensations) {
    using V = Vec<scalar_t>;
    constexpr int64_t lanes = kVecLanes<scalar_t>;
    const int64_t blocks = (N + lanes - 1) / lanes;
#pragma omp parallel for schedule(static) if (C * N >= kMinParallelGaussians)
    for (int64_t block = 0; block < blocks; ++block) {
        const int64_t begin = block * lanes, count = std::min(lanes, N - begin);
        V mean[3], quat[4], scale[3], M[9], cov[9];
        gather_lanes<3, scalar_t>(means, begin, count, mean);
        gather_lanes<4, scalar_t>(quats, begin, count, quat);
        gather_lanes<3, scalar_t>(scales, begin, count, scale);
        covariance_3d(quat, scale, M, cov);
        for (int64_t cam = 0; cam < C; ++cam) {
            Vec<int32_t, scalar_t> radius[2];
            V mean2d[2], conic[3], compensation;
            project_forward_one(viewmats + 16 * cam, Ks + 9 * cam, mean, cov, params, radius, mean2d, conic,
                                &compensation);
            const int64_t first = cam * N + begin;  // flat (camera, Gaussian) index of lane 0
            scatter_lanes<2, scalar_t>(radius, first, count, radii);
            scatter_lanes<2, scalar_t>(mean2d, first, count, means2d);
            scatter_lanes<3, scalar_t>(conic, first, count, conics);
            scatter_lanes<1, scalar_t>(&compensation, first, count, compensations);
        }
    }
}

template <typename scalar_t>
void project_backward(int64_t C, int64_t N, const ProjectionParams<scalar_t>& params, const scalar_t* means,
                      const scalar_t* quats, const scalar_t* scales, const scalar_t* viewmats, const scalar_t* Ks,
                      const int32_t* radii, const scalar_t* v_means2d,
                      const scalar_t* v_conics, const scalar_t* v_compensations, scalar_t* v_means,
                      scalar_t* v_quats, scalar_t* v_scales) {
    using V = Vec<scalar_t>;
    constexpr int64_t lanes = kVecLanes<scalar_t>;
    using Mask = MaskOf<V>;
    const int64_t blocks = (N + lanes - 1) / lanes;
#pragma omp parallel for schedule(static) if (C * N >= kMinParallelGaussians)
    for (int64_t block = 0; block < blocks; ++block) {
        const int64_t begin = block * lanes, count = std::min(lanes, N - begin);
        V mean[3], quat[4], scale[3], M[9], cov[9], v_cov[9] = {}, v_mean[3] = {};
        gather_lanes<3, scalar_t>(means, begin, count, mean);
        gather_lanes<4, scalar_t>(quats, begin, count, quat);
        gather_lanes<3, scalar_t>(scales, begin, count, scale);
        covariance_3d(quat, scale, M, cov);
        for (int64_t cam = 0; cam < C; ++cam) {
            const int64_t first = cam * N + begin;
            Vec<int32_t, scalar_t> radius[2];
            V v_mean2d[2], v_conic[3], v_compensation, v_t[3] = {}, v_cov_cam[9];
            gather_lanes<2, scalar_t>(radii, first, count, radius);
            gather_lanes<2, scalar_t>(v_means2d, first, count, v_mean2d);
            gather_lanes<3, scalar_t>(v_conics, first, count, v_conic);
            gather_lanes<1, scalar_t>(v_compensations, first, count, &v_compensation);
            const Mask visible = __builtin_convertvector(radius[0] > 0, Mask);
            project_backward_one(viewmats + 16 * cam, Ks + 9 * cam, mean, cov, params, visible, v_mean2d, v_conic,
                                 v_compensation, v_t, v_cov_cam);
            camera_to_world_backward(viewmats + 16 * cam, v_t, v_cov_cam, v_mean, v_cov);
        }
        V v_quat[4], v_scale[3];
        covariance_3d_backward(quat, scale, v_cov, v_quat, v_scale);
        scatter_lanes<3, scalar_t>(v_mean, begin, count, v_means);
        scatter_lanes<4, scalar_t>(v_quat, begin, count, v_quats);
        scatter_lanes<3, scalar_t>(v_scale, begin, count, v_scales);
    }
}

#define D3_INSTANTIATE(T)                                                                                        \
    template void project_forward<T>(int64_t, int64_t, const ProjectionParams<T>&, const T*, const T*, const T*, \
                                     const T*, const T*, int32_t*, T*, T*, T*);                              \
    template void project_backward<T>(int64_t, int64_t, const ProjectionParams<T>&, const T*, const T*,         \
                                      const T*, const T*, const T*, const int32_t*, const T*, const T*, const T*, \
                                      T*, T*, T*);
D3_INSTANTIATE(float)
D3_INSTANTIATE(double)
#undef D3_INSTANTIATE

}  // namespace cpu
}  // namespace distill3d
