// EWA projection of one 3D Gaussian into one camera and its derivative, shared by CPU and CUDA.
// The operations follow the torch reference (distill3d/render/projection.py) in the same order, so
// both round alike and the integer radii agree.
//
//   Sigma = M M^T, M = R(q / |q|) diag(s);   t = W mu + w;   Sigma_c = W Sigma W^T
//   u = clamp(tx / tz, -(cx / fx + m_x), (width - cx) / fx + m_x),  m_x = margin * width / 2 / fx  (same for v)
//   J = [[fx / tz, 0, -fx u / tz], [0, fy / tz, -fy v / tz]];   Sigma_2D = J Sigma_c J^T + eps2d I
//   conic = (c, -b, a) / det,  compensation = sqrt(max(0, det(Sigma_2D - eps2d I) / det)),
//   mean2d = (fx tx / tz + cx, fy ty / tz + cy),  radius = ceil(k sqrt(lambda_max(Sigma_2D)))
// Culled (radius 0, outputs 0): tz not in (near, far), det <= 0, a 2D variance a or c >= kMaxVariance2D
// (a splat over 10^8 pixels wide: its det, conic and integer radius would overflow), or the box
// mean2d +- radius off-screen.
// Depths (tz) are not an output here: the caller takes them from torch, bitwise equal to the reference's,
// because the tile sort keys hold their float bits.
//
// Every function is a template over the value type V of the per-Gaussian quantities: a scalar (float,
// double; CUDA and CPU) or a CPU SIMD vector holding one Gaussian per lane (cpu/projection_cpu.cpp
// specialises LaneOps for it). Camera quantities stay scalars. The code is branch-free (culled values
// are computed and selected away), so a lane performs exactly the scalar operations in the same order.
#pragma once

#include <cmath>
#include <cstdint>

#include "distill3d/common.h"

namespace distill3d {

// Largest 2D variance (pixels^2) of a splat that is rendered: det stays below 1e32 and the radius below
// 3e8, both representable in float32 / int32. Compared as finite numbers, so -ffast-math keeps the test.
// Must equal MAX_VARIANCE_2D in distill3d/render/projection.py.
constexpr double kMaxVariance2D = 1e16;

template <typename scalar_t>
struct ProjectionParams {
    int64_t width;
    int64_t height;
    scalar_t eps2d;
    scalar_t near_plane;
    scalar_t far_plane;
    scalar_t radius_sigmas;  // splat radius in standard deviations
    scalar_t clamp_margin;   // frustum widening of the Jacobian clamp, fraction of tan(fov / 2) per side
};

// Operations on a value type V that differ between scalars (here) and SIMD vectors (specialised on the
// CPU): its scalar type, comparison mask, integer (radius) type, broadcast, lane-wise select, sqrt, ceil.
template <typename V>
struct LaneOps {
    using scalar = V;
    using mask = bool;
    using index = int32_t;
    D3_HD static V splat(scalar x) { return x; }
    D3_HD static V select(mask m, V a, V b) { return m ? a : b; }
    D3_HD static V sqrt(V x) { return std::sqrt(x); }
    D3_HD static V ceil(V x) { return std::ceil(x); }
    D3_HD static index to_index(V x) { return index(x); }
};
template <typename V>
using ScalarOf = typename LaneOps<V>::scalar;
template <typename V>
using MaskOf = typename LaneOps<V>::mask;

// Row-major 3x3 product C = A B (B^T when `transpose_b`), summed in index order like the reference.
template <typename V>
D3_HD void matmul3(const V* A, const V* B, bool transpose_b, V* C) {
    for (int i = 0; i < 3; ++i)
        for (int j = 0; j < 3; ++j) {
            V sum = LaneOps<V>::splat(0);
            for (int k = 0; k < 3; ++k) sum += A[3 * i + k] * (transpose_b ? B[3 * j + k] : B[3 * k + j]);
            C[3 * i + j] = sum;
        }
}

// The unit quaternion q / max(|q|, 1e-12) (torch.nn.functional.normalize) and |q|.
template <typename V>
D3_HD V normalize_quat(const V* quat, V* unit) {
    using Ops = LaneOps<V>;
    const V norm = Ops::sqrt(quat[0] * quat[0] + quat[1] * quat[1] + quat[2] * quat[2] + quat[3] * quat[3]);
    const V denom = Ops::select(norm > ScalarOf<V>(1e-12), norm, Ops::splat(1e-12));
    for (int i = 0; i < 4; ++i) unit[i] = quat[i] / denom;
    return denom;
}

// Rotation matrix (row-major) of a unit quaternion (w, x, y, z).
template <typename V>
D3_HD void quat_to_rotmat(const V* q, V* R) {
    using S = ScalarOf<V>;
    const V w = q[0], x = q[1], y = q[2], z = q[3];
    R[0] = S(1) - S(2) * (y * y + z * z), R[1] = S(2) * (x * y - w * z), R[2] = S(2) * (x * z + w * y);
    R[3] = S(2) * (x * y + w * z), R[4] = S(1) - S(2) * (x * x + z * z), R[5] = S(2) * (y * z - w * x);
    R[6] = S(2) * (x * z - w * y), R[7] = S(2) * (y * z + w * x), R[8] = S(1) - S(2) * (x * x + y * y);
}

// dL/dq of R(q) given dL/dR (G, row-major), for unit q.
template <typename V>
D3_HD void quat_to_rotmat_backward(const V* q, const V* G, V* v_q) {
    using S = ScalarOf<V>;
    const V w = q[0], x = q[1], y = q[2], z = q[3];
    v_q[0] = S(2) * (-z * G[1] + y * G[2] + z * G[3] - x * G[5] - y * G[6] + x * G[7]);
    v_q[1] = S(2) * (y * G[1] + z * G[2] + y * G[3] - S(2) * x * G[4] - w * G[5] + z * G[6] + w * G[7] -
                     S(2) * x * G[8]);
    v_q[2] = S(2) * (S(-2) * y * G[0] + x * G[1] + w * G[2] + x * G[3] + z * G[5] - w * G[6] + z * G[7] -
                     S(2) * y * G[8]);
    v_q[3] = S(2) * (S(-2) * z * G[0] - w * G[1] + x * G[2] + w * G[3] - S(2) * z * G[4] + y * G[5] + x * G[6] +
                     y * G[7]);
}

// M = R diag(s) and Sigma = M M^T of one Gaussian.
template <typename V>
D3_HD void covariance_3d(const V* quat, const V* scale, V* M, V* cov) {
    V unit[4];
    normalize_quat(quat, unit);
    quat_to_rotmat(unit, M);
    for (int i = 0; i < 3; ++i)
        for (int j = 0; j < 3; ++j) M[3 * i + j] *= scale[j];
    matmul3(M, M, true, cov);
}

// Everything the forward computes for one (camera, Gaussian) pair; the backward recomputes it.
template <typename V>
struct ProjectedGaussian {
    V t[3];                     // camera-space mean
    MaskOf<V> in_depth;         // near < tz < far
    V tz;                       // tz, or 1 when !in_depth (keeps culled arithmetic finite, as the reference)
    V u, v;                     // clamped tx / tz, ty / tz
    MaskOf<V> u_free, v_free;   // the clamp was inactive (its gradient passes)
    V J[6];                     // 2x3 row-major
    V cov_cam[9];               // W Sigma W^T
    V a, b, c;                  // Sigma_2D with the low-pass added to a and c
    V det_no_blur, det;
    MaskOf<V> valid;  // in_depth, det > 0 and a, c < kMaxVariance2D
};

// The rotation block W of a row-major 4x4 world-to-camera matrix, broadcast to V.
template <typename V>
D3_HD void camera_rotation(const ScalarOf<V>* viewmat, V* W) {
    for (int i = 0; i < 3; ++i)
        for (int j = 0; j < 3; ++j) W[3 * i + j] = LaneOps<V>::splat(viewmat[4 * i + j]);
}

// camera: viewmat [4, 4] row-major (world -> camera) and K [3, 3].
template <typename V>
D3_HD void project_core(const ScalarOf<V>* viewmat, const ScalarOf<V>* K, const V* mean, const V* cov,
                        const ProjectionParams<ScalarOf<V>>& p, ProjectedGaussian<V>& g) {
    using S = ScalarOf<V>;
    using Ops = LaneOps<V>;
    V W[9];
    camera_rotation(viewmat, W);
    for (int i = 0; i < 3; ++i)
        g.t[i] = W[3 * i] * mean[0] + W[3 * i + 1] * mean[1] + W[3 * i + 2] * mean[2] + viewmat[4 * i + 3];
    g.in_depth = (g.t[2] > p.near_plane) & (g.t[2] < p.far_plane);
    g.tz = Ops::select(g.in_depth, g.t[2], Ops::splat(1));
    V W_cov[9];
    matmul3(W, cov, false, W_cov);
    matmul3(W_cov, W, true, g.cov_cam);

    const S fx = K[0], fy = K[4], cx = K[2], cy = K[5];
    const S margin_x = S(double(p.clamp_margin) * 0.5 * double(p.width)) / fx;
    const S margin_y = S(double(p.clamp_margin) * 0.5 * double(p.height)) / fy;
    const S lo_x = -(cx / fx + margin_x), hi_x = (S(p.width) - cx) / fx + margin_x;
    const S lo_y = -(cy / fy + margin_y), hi_y = (S(p.height) - cy) / fy + margin_y;
    const V x_ratio = g.t[0] / g.tz, y_ratio = g.t[1] / g.tz;
    g.u = Ops::select(x_ratio < lo_x, Ops::splat(lo_x), Ops::select(x_ratio > hi_x, Ops::splat(hi_x), x_ratio));
    g.v = Ops::select(y_ratio < lo_y, Ops::splat(lo_y), Ops::select(y_ratio > hi_y, Ops::splat(hi_y), y_ratio));
    g.u_free = (x_ratio >= lo_x) & (x_ratio <= hi_x);
    g.v_free = (y_ratio >= lo_y) & (y_ratio <= hi_y);
    const V tz2 = g.tz * g.tz;
    g.J[0] = fx / g.tz, g.J[1] = Ops::splat(0), g.J[2] = -fx * (g.tz * g.u) / tz2;
    g.J[3] = Ops::splat(0), g.J[4] = fy / g.tz, g.J[5] = -fy * (g.tz * g.v) / tz2;

    V JC[6];  // J Sigma_c
    for (int i = 0; i < 2; ++i)
        for (int j = 0; j < 3; ++j)
            JC[3 * i + j] = g.J[3 * i] * g.cov_cam[j] + g.J[3 * i + 1] * g.cov_cam[3 + j] + g.J[3 * i + 2] * g.cov_cam[6 + j];
    const V c00 = JC[0] * g.J[0] + JC[1] * g.J[1] + JC[2] * g.J[2];
    const V c01 = JC[0] * g.J[3] + JC[1] * g.J[4] + JC[2] * g.J[5];
    const V c10 = JC[3] * g.J[0] + JC[4] * g.J[1] + JC[5] * g.J[2];
    const V c11 = JC[3] * g.J[3] + JC[4] * g.J[4] + JC[5] * g.J[5];
    g.b = S(0.5) * (c01 + c10);
    g.det_no_blur = c00 * c11 - g.b * g.b;
    g.a = c00 + p.eps2d;
    g.c = c11 + p.eps2d;
    g.det = g.a * g.c - g.b * g.b;
    g.valid = g.in_depth & (g.det > S(0)) & (g.a < S(kMaxVariance2D)) & (g.c < S(kMaxVariance2D));
}

// Forward outputs of one pair; culled pairs get radius 0 and zero means2d / conic / compensation (their
// values are computed, dividing by 1 instead of their det, and selected away).
template <typename V>
D3_HD void project_forward_one(const ScalarOf<V>* viewmat, const ScalarOf<V>* K, const V* mean, const V* cov,
                               const ProjectionParams<ScalarOf<V>>& p, typename LaneOps<V>::index* radii,
                               V* mean2d, V* conic, V* compensation) {
    using S = ScalarOf<V>;
    using Ops = LaneOps<V>;
    ProjectedGaussian<V> g;
    project_core(viewmat, K, mean, cov, p, g);
    const V zero = Ops::splat(0);
    const V mx = K[0] * g.t[0] / g.tz + K[2], my = K[4] * g.t[1] / g.tz + K[5];
    const V half_trace = S(0.5) * (g.a + g.c);
    const V spread = half_trace * half_trace - g.det;
    const V lambda_max = half_trace + Ops::sqrt(Ops::select(spread > S(0), spread, zero));
    const V radius = Ops::ceil(p.radius_sigmas * Ops::sqrt(lambda_max));
    const MaskOf<V> on_screen = (mx + radius > S(0)) & (mx - radius < S(p.width)) & (my + radius > S(0)) &
                                (my - radius < S(p.height));
    const MaskOf<V> visible = g.valid & on_screen;
    const V det = Ops::select(visible, g.det, Ops::splat(1));
    radii[0] = radii[1] = Ops::to_index(Ops::select(visible, radius, zero));
    mean2d[0] = Ops::select(visible, mx, zero), mean2d[1] = Ops::select(visible, my, zero);
    conic[0] = Ops::select(visible, g.c / det, zero), conic[1] = Ops::select(visible, -g.b / det, zero);
    conic[2] = Ops::select(visible, g.a / det, zero);
    const V ratio = g.det_no_blur / det;
    *compensation = Ops::select(visible, Ops::sqrt(Ops::select(ratio > S(0), ratio, zero)), zero);
}

// Gradients of one pair: dL/dt (camera-space mean, +=) and dL/dSigma_c (=, symmetric) from the
// upstream gradients of its outputs. `visible` = its forward radius > 0 (else no gradient flows: an
// invisible pair's values are computed, dividing by 1 instead of its det, and selected away).
template <typename V>
D3_HD void project_backward_one(const ScalarOf<V>* viewmat, const ScalarOf<V>* K, const V* mean, const V* cov,
                                const ProjectionParams<ScalarOf<V>>& p, MaskOf<V> visible, const V* v_mean2d,
                                const V* v_conic, V v_compensation, V* v_t, V* v_cov_cam) {
    using S = ScalarOf<V>;
    using Ops = LaneOps<V>;
    ProjectedGaussian<V> g;
    project_core(viewmat, K, mean, cov, p, g);
    const S fx = K[0], fy = K[4];
    const V tz = g.tz, tz2 = tz * tz, zero = Ops::splat(0);

    // conic = (c, -b, a) / det and compensation = sqrt(det_no_blur / det).
    const V det = Ops::select(visible, g.det, Ops::splat(1)), det2 = det * det;
    V v_a = v_conic[2] / det, v_b = -v_conic[1] / det, v_c = v_conic[0] / det;
    V v_det = (-v_conic[0] * g.c + v_conic[1] * g.b - v_conic[2] * g.a) / det2;
    const V ratio = g.det_no_blur / det;
    const V v_ratio = Ops::select(ratio > S(0), v_compensation * S(0.5) / Ops::sqrt(ratio), zero);
    const V v_det_no_blur = v_ratio / det;
    v_det -= v_ratio * g.det_no_blur / det2;
    v_a += v_det * g.c + v_det_no_blur * (g.c - p.eps2d);
    v_c += v_det * g.a + v_det_no_blur * (g.a - p.eps2d);
    v_b -= S(2) * g.b * (v_det + v_det_no_blur);

    // Sigma_2D = J Sigma_c J^T with G = dL/dSigma_2D symmetric (b is the mean of both off-diagonals).
    const V G[4] = {v_a, S(0.5) * v_b, S(0.5) * v_b, v_c};
    V GJ[6];  // G J
    for (int i = 0; i < 2; ++i)
        for (int j = 0; j < 3; ++j) GJ[3 * i + j] = G[2 * i] * g.J[j] + G[2 * i + 1] * g.J[3 + j];
    for (int i = 0; i < 3; ++i)
        for (int j = 0; j < 3; ++j)
            v_cov_cam[3 * i + j] = Ops::select(visible, g.J[i] * GJ[j] + g.J[3 + i] * GJ[3 + j], zero);
    V v_J[6];  // 2 G J Sigma_c
    for (int i = 0; i < 2; ++i)
        for (int j = 0; j < 3; ++j)
            v_J[3 * i + j] = S(2) * (GJ[3 * i] * g.cov_cam[j] + GJ[3 * i + 1] * g.cov_cam[3 + j] +
                                     GJ[3 * i + 2] * g.cov_cam[6 + j]);

    // J entries as functions of tz, u, v; u = tx / tz where the clamp is inactive.
    V v_tz = -v_J[0] * fx / tz2 - v_J[4] * fy / tz2 + v_J[2] * fx * g.u / tz2 + v_J[5] * fy * g.v / tz2;
    const V v_u = -v_J[2] * fx / tz, v_v = -v_J[5] * fy / tz;
    V v_tx = Ops::select(g.u_free, v_u / tz, zero), v_ty = Ops::select(g.v_free, v_v / tz, zero);
    v_tz -= Ops::select(g.u_free, v_u * g.t[0] / tz2, zero);
    v_tz -= Ops::select(g.v_free, v_v * g.t[1] / tz2, zero);

    // mean2d = (fx tx / tz + cx, fy ty / tz + cy)
    v_tx += v_mean2d[0] * fx / tz;
    v_ty += v_mean2d[1] * fy / tz;
    v_tz -= (v_mean2d[0] * fx * g.t[0] + v_mean2d[1] * fy * g.t[1]) / tz2;
    v_t[0] += Ops::select(visible, v_tx, zero), v_t[1] += Ops::select(visible, v_ty, zero);
    v_t[2] += Ops::select(visible, v_tz, zero);
}

// Accumulates one camera's dL/dt and dL/dSigma_c into world space: v_mean += W^T v_t,
// v_cov += W^T v_cov_cam W.
template <typename V>
D3_HD void camera_to_world_backward(const ScalarOf<V>* viewmat, const V* v_t, const V* v_cov_cam, V* v_mean,
                                    V* v_cov) {
    V W[9];
    camera_rotation(viewmat, W);
    for (int j = 0; j < 3; ++j) v_mean[j] += W[j] * v_t[0] + W[3 + j] * v_t[1] + W[6 + j] * v_t[2];
    V VW[9];  // v_cov_cam W
    matmul3(v_cov_cam, W, false, VW);
    for (int i = 0; i < 3; ++i)
        for (int j = 0; j < 3; ++j) v_cov[3 * i + j] += W[i] * VW[j] + W[3 + i] * VW[3 + j] + W[6 + i] * VW[6 + j];
}

// dL/dq and dL/ds of Sigma = M M^T, M = R(q / |q|) diag(s), from a symmetric dL/dSigma.
template <typename V>
D3_HD void covariance_3d_backward(const V* quat, const V* scale, const V* v_cov, V* v_quat, V* v_scale) {
    using S = ScalarOf<V>;
    V unit[4], R[9];
    const V norm = normalize_quat(quat, unit);
    quat_to_rotmat(unit, R);
    V v_R[9];
    for (int j = 0; j < 3; ++j) v_scale[j] = LaneOps<V>::splat(0);
    for (int i = 0; i < 3; ++i)
        for (int j = 0; j < 3; ++j) {
            // dL/dM = 2 dL/dSigma M
            const V v_M = S(2) * (v_cov[3 * i] * R[j] * scale[j] + v_cov[3 * i + 1] * R[3 + j] * scale[j] +
                                                v_cov[3 * i + 2] * R[6 + j] * scale[j]);
            v_scale[j] += v_M * R[3 * i + j];
            v_R[3 * i + j] = v_M * scale[j];
        }
    V v_unit[4];
    quat_to_rotmat_backward(unit, v_R, v_unit);
    const V along = unit[0] * v_unit[0] + unit[1] * v_unit[1] + unit[2] * v_unit[2] + unit[3] * v_unit[3];
    for (int i = 0; i < 4; ++i) v_quat[i] = (v_unit[i] - unit[i] * along) / norm;
}

}  // namespace distill3d
