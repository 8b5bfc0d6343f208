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

// Row-major 3x3 product C = A B (B^T when `transpose_b`), summed in index order like the reference.
template <typename scalar_t>
D3_HD void matmul3(const scalar_t* A, const scalar_t* B, bool transpose_b, scalar_t* C) {
    for (int i = 0; i < 3; ++i)
        for (int j = 0; j < 3; ++j) {
            scalar_t sum = scalar_t(0);
            for (int k = 0; k < 3; ++k) sum += A[3 * i + k] * (transpose_b ? B[3 * j + k] : B[3 * k + j]);
            C[3 * i + j] = sum;
        }
}

// The unit quaternion q / max(|q|, 1e-12) (torch.nn.functional.normalize) and |q|.
template <typename scalar_t>
D3_HD scalar_t normalize_quat(const scalar_t* quat, scalar_t* unit) {
    const scalar_t norm = std::sqrt(quat[0] * quat[0] + quat[1] * quat[1] + quat[2] * quat[2] + quat[3] * quat[3]);
    const scalar_t denom = norm > scalar_t(1e-12) ? norm : scalar_t(1e-12);
    for (int i = 0; i < 4; ++i) unit[i] = quat[i] / denom;
    return denom;
}

// Rotation matrix (row-major) of a unit quaternion (w, x, y, z).
template <typename scalar_t>
D3_HD void quat_to_rotmat(const scalar_t* q, scalar_t* R) {
    const scalar_t w = q[0], x = q[1], y = q[2], z = q[3];
    R[0] = 1 - 2 * (y * y + z * z), R[1] = 2 * (x * y - w * z), R[2] = 2 * (x * z + w * y);
    R[3] = 2 * (x * y + w * z), R[4] = 1 - 2 * (x * x + z * z), R[5] = 2 * (y * z - w * x);
    R[6] = 2 * (x * z - w * y), R[7] = 2 * (y * z + w * x), R[8] = 1 - 2 * (x * x + y * y);
}

// dL/dq of R(q) given dL/dR (G, row-major), for unit q.
template <typename scalar_t>
D3_HD void quat_to_rotmat_backward(const scalar_t* q, const scalar_t* G, scalar_t* v_q) {
    const scalar_t w = q[0], x = q[1], y = q[2], z = q[3];
    v_q[0] = 2 * (-z * G[1] + y * G[2] + z * G[3] - x * G[5] - y * G[6] + x * G[7]);
    v_q[1] = 2 * (y * G[1] + z * G[2] + y * G[3] - 2 * x * G[4] - w * G[5] + z * G[6] + w * G[7] - 2 * x * G[8]);
    v_q[2] = 2 * (-2 * y * G[0] + x * G[1] + w * G[2] + x * G[3] + z * G[5] - w * G[6] + z * G[7] - 2 * y * G[8]);
    v_q[3] = 2 * (-2 * z * G[0] - w * G[1] + x * G[2] + w * G[3] - 2 * z * G[4] + y * G[5] + x * G[6] + y * G[7]);
}

// M = R diag(s) and Sigma = M M^T of one Gaussian.
template <typename scalar_t>
D3_HD void covariance_3d(const scalar_t* quat, const scalar_t* scale, scalar_t* M, scalar_t* cov) {
    scalar_t unit[4];
    normalize_quat(quat, unit);
    quat_to_rotmat(unit, M);
    for (int i = 0; i < 3; ++i)
        for (int j = 0; j < 3; ++j) M[3 * i + j] *= scale[j];
    matmul3(M, M, true, cov);
}

// Everything the forward computes for one (camera, Gaussian) pair; the backward recomputes it.
template <typename scalar_t>
struct ProjectedGaussian {
    scalar_t t[3];        // camera-space mean
    bool in_depth;        // near < tz < far
    scalar_t tz;          // tz, or 1 when !in_depth (keeps culled arithmetic finite, as the reference)
    scalar_t u, v;        // clamped tx / tz, ty / tz
    bool u_free, v_free;  // the clamp was inactive (its gradient passes)
    scalar_t J[6];        // 2x3 row-major
    scalar_t cov_cam[9];  // W Sigma W^T
    scalar_t a, b, c;     // Sigma_2D with the low-pass added to a and c
    scalar_t det_no_blur, det;
    bool valid;  // in_depth, det > 0 and a, c < kMaxVariance2D
};

// camera: viewmat [4, 4] row-major (world -> camera) and K [3, 3].
template <typename scalar_t>
D3_HD void project_core(const scalar_t* viewmat, const scalar_t* K, const scalar_t* mean, const scalar_t* cov,
                        const ProjectionParams<scalar_t>& p, ProjectedGaussian<scalar_t>& g) {
    const scalar_t W[9] = {viewmat[0], viewmat[1], viewmat[2], viewmat[4], viewmat[5],
                           viewmat[6], viewmat[8], viewmat[9], viewmat[10]};
    for (int i = 0; i < 3; ++i)
        g.t[i] = W[3 * i] * mean[0] + W[3 * i + 1] * mean[1] + W[3 * i + 2] * mean[2] + viewmat[4 * i + 3];
    g.in_depth = (g.t[2] > p.near_plane) & (g.t[2] < p.far_plane);
    g.tz = g.in_depth ? g.t[2] : scalar_t(1);
    scalar_t W_cov[9];
    matmul3(W, cov, false, W_cov);
    matmul3(W_cov, W, true, g.cov_cam);

    const scalar_t fx = K[0], fy = K[4], cx = K[2], cy = K[5];
    const scalar_t margin_x = scalar_t(double(p.clamp_margin) * 0.5 * double(p.width)) / fx;
    const scalar_t margin_y = scalar_t(double(p.clamp_margin) * 0.5 * double(p.height)) / fy;
    const scalar_t lo_x = -(cx / fx + margin_x), hi_x = (scalar_t(p.width) - cx) / fx + margin_x;
    const scalar_t lo_y = -(cy / fy + margin_y), hi_y = (scalar_t(p.height) - cy) / fy + margin_y;
    const scalar_t x_ratio = g.t[0] / g.tz, y_ratio = g.t[1] / g.tz;
    g.u = x_ratio < lo_x ? lo_x : (x_ratio > hi_x ? hi_x : x_ratio);
    g.v = y_ratio < lo_y ? lo_y : (y_ratio > hi_y ? hi_y : y_ratio);
    g.u_free = (x_ratio >= lo_x) & (x_ratio <= hi_x);
    g.v_free = (y_ratio >= lo_y) & (y_ratio <= hi_y);
    const scalar_t tz2 = g.tz * g.tz;
    g.J[0] = fx / g.tz, g.J[1] = 0, g.J[2] = -fx * (g.tz * g.u) / tz2;
    g.J[3] = 0, g.J[4] = fy / g.tz, g.J[5] = -fy * (g.tz * g.v) / tz2;

    scalar_t JC[6];  // J Sigma_c
    for (int i = 0; i < 2; ++i)
        for (int j = 0; j < 3; ++j)
            JC[3 * i + j] = g.J[3 * i] * g.cov_cam[j] + g.J[3 * i + 1] * g.cov_cam[3 + j] + g.J[3 * i + 2] * g.cov_cam[6 + j];
    const scalar_t c00 = JC[0] * g.J[0] + JC[1] * g.J[1] + JC[2] * g.J[2];
    const scalar_t c01 = JC[0] * g.J[3] + JC[1] * g.J[4] + JC[2] * g.J[5];
    const scalar_t c10 = JC[3] * g.J[0] + JC[4] * g.J[1] + JC[5] * g.J[2];
    const scalar_t c11 = JC[3] * g.J[3] + JC[4] * g.J[4] + JC[5] * g.J[5];
    g.b = scalar_t(0.5) * (c01 + c10);
    g.det_no_blur = c00 * c11 - g.b * g.b;
    g.a = c00 + p.eps2d;
    g.c = c11 + p.eps2d;
    g.det = g.a * g.c - g.b * g.b;
    g.valid = g.in_depth & (g.det > scalar_t(0)) & (g.a < scalar_t(kMaxVariance2D)) & (g.c < scalar_t(kMaxVariance2D));
}

// Forward outputs of one pair; culled pairs get radius 0 and zero means2d / conic / compensation.
template <typename scalar_t>
D3_HD void project_forward_one(const scalar_t* viewmat, const scalar_t* K, const scalar_t* mean,
                               const scalar_t* cov, const ProjectionParams<scalar_t>& p, int32_t* radii,
                               scalar_t* mean2d, scalar_t* conic, scalar_t* compensation) {
    ProjectedGaussian<scalar_t> g;
    project_core(viewmat, K, mean, cov, p, g);
    radii[0] = radii[1] = 0;
    mean2d[0] = mean2d[1] = conic[0] = conic[1] = conic[2] = *compensation = scalar_t(0);
    if (!g.valid) return;
    const scalar_t mx = K[0] * g.t[0] / g.tz + K[2], my = K[4] * g.t[1] / g.tz + K[5];
    const scalar_t half_trace = scalar_t(0.5) * (g.a + g.c);
    const scalar_t spread = half_trace * half_trace - g.det;
    const scalar_t lambda_max = half_trace + std::sqrt(spread > scalar_t(0) ? spread : scalar_t(0));
    const scalar_t radius = std::ceil(p.radius_sigmas * std::sqrt(lambda_max));
    const bool on_screen = (mx + radius > scalar_t(0)) & (mx - radius < scalar_t(p.width)) &
                           (my + radius > scalar_t(0)) & (my - radius < scalar_t(p.height));
    if (!on_screen) return;
    radii[0] = radii[1] = int32_t(radius);
    mean2d[0] = mx, mean2d[1] = my;
    conic[0] = g.c / g.det, conic[1] = -g.b / g.det, conic[2] = g.a / g.det;
    const scalar_t ratio = g.det_no_blur / g.det;
    *compensation = std::sqrt(ratio > scalar_t(0) ? ratio : scalar_t(0));
}

// Gradients of one pair: dL/dt (camera-space mean, +=) and dL/dSigma_c (=, symmetric) from the
// upstream gradients of its outputs. `visible` = its forward radius > 0 (else no gradient flows).
template <typename scalar_t>
D3_HD void project_backward_one(const scalar_t* viewmat, const scalar_t* K, const scalar_t* mean,
                                const scalar_t* cov, const ProjectionParams<scalar_t>& p, bool visible,
                                const scalar_t* v_mean2d, const scalar_t* v_conic,
                                scalar_t v_compensation, scalar_t* v_t, scalar_t* v_cov_cam) {
    for (int i = 0; i < 9; ++i) v_cov_cam[i] = scalar_t(0);
    if (!visible) return;
    ProjectedGaussian<scalar_t> g;
    project_core(viewmat, K, mean, cov, p, g);
    const scalar_t fx = K[0], fy = K[4], tz = g.tz, tz2 = tz * tz;

    // conic = (c, -b, a) / det and compensation = sqrt(det_no_blur / det).
    const scalar_t det2 = g.det * g.det;
    scalar_t v_a = v_conic[2] / g.det, v_b = -v_conic[1] / g.det, v_c = v_conic[0] / g.det;
    scalar_t v_det = (-v_conic[0] * g.c + v_conic[1] * g.b - v_conic[2] * g.a) / det2;
    const scalar_t ratio = g.det_no_blur / g.det;
    const scalar_t v_ratio = ratio > scalar_t(0) ? v_compensation * scalar_t(0.5) / std::sqrt(ratio) : scalar_t(0);
    const scalar_t v_det_no_blur = v_ratio / g.det;
    v_det -= v_ratio * g.det_no_blur / det2;
    v_a += v_det * g.c + v_det_no_blur * (g.c - p.eps2d);
    v_c += v_det * g.a + v_det_no_blur * (g.a - p.eps2d);
    v_b -= scalar_t(2) * g.b * (v_det + v_det_no_blur);

    // Sigma_2D = J Sigma_c J^T with V = dL/dSigma_2D symmetric (b is the mean of both off-diagonals).
    const scalar_t V[4] = {v_a, scalar_t(0.5) * v_b, scalar_t(0.5) * v_b, v_c};
    scalar_t VJ[6];  // V J
    for (int i = 0; i < 2; ++i)
        for (int j = 0; j < 3; ++j) VJ[3 * i + j] = V[2 * i] * g.J[j] + V[2 * i + 1] * g.J[3 + j];
    for (int i = 0; i < 3; ++i)
        for (int j = 0; j < 3; ++j) v_cov_cam[3 * i + j] = g.J[i] * VJ[j] + g.J[3 + i] * VJ[3 + j];
    scalar_t v_J[6];  // 2 V J Sigma_c
    for (int i = 0; i < 2; ++i)
        for (int j = 0; j < 3; ++j)
            v_J[3 * i + j] = scalar_t(2) * (VJ[3 * i] * g.cov_cam[j] + VJ[3 * i + 1] * g.cov_cam[3 + j] +
                                            VJ[3 * i + 2] * g.cov_cam[6 + j]);

    // J entries as functions of tz, u, v; u = tx / tz where the clamp is inactive.
    scalar_t v_tz = -v_J[0] * fx / tz2 - v_J[4] * fy / tz2 + v_J[2] * fx * g.u / tz2 + v_J[5] * fy * g.v / tz2;
    const scalar_t v_u = -v_J[2] * fx / tz, v_v = -v_J[5] * fy / tz;
    scalar_t v_tx = 0, v_ty = 0;
    if (g.u_free) v_tx += v_u / tz, v_tz -= v_u * g.t[0] / tz2;
    if (g.v_free) v_ty += v_v / tz, v_tz -= v_v * g.t[1] / tz2;

    // mean2d = (fx tx / tz + cx, fy ty / tz + cy)
    v_tx += v_mean2d[0] * fx / tz;
    v_ty += v_mean2d[1] * fy / tz;
    v_tz -= (v_mean2d[0] * fx * g.t[0] + v_mean2d[1] * fy * g.t[1]) / tz2;
    v_t[0] += v_tx, v_t[1] += v_ty, v_t[2] += v_tz;
}

// Accumulates one camera's dL/dt and dL/dSigma_c into world space: v_mean += W^T v_t,
// v_cov += W^T v_cov_cam W.
template <typename scalar_t>
D3_HD void camera_to_world_backward(const scalar_t* viewmat, const scalar_t* v_t, const scalar_t* v_cov_cam,
                                    scalar_t* v_mean, scalar_t* v_cov) {
    const scalar_t W[9] = {viewmat[0], viewmat[1], viewmat[2], viewmat[4], viewmat[5],
                           viewmat[6], viewmat[8], viewmat[9], viewmat[10]};
    for (int j = 0; j < 3; ++j) v_mean[j] += W[j] * v_t[0] + W[3 + j] * v_t[1] + W[6 + j] * v_t[2];
    scalar_t VW[9];  // v_cov_cam W
    matmul3(v_cov_cam, W, false, VW);
    for (int i = 0; i < 3; ++i)
        for (int j = 0; j < 3; ++j) v_cov[3 * i + j] += W[i] * VW[j] + W[3 + i] * VW[3 + j] + W[6 + i] * VW[6 + j];
}

// dL/dq and dL/ds of Sigma = M M^T, M = R(q / |q|) diag(s), from a symmetric dL/dSigma.
template <typename scalar_t>
D3_HD void covariance_3d_backward(const scalar_t* quat, const scalar_t* scale, const scalar_t* v_cov,
                                  scalar_t* v_quat, scalar_t* v_scale) {
    scalar_t unit[4], R[9];
    const scalar_t norm = normalize_quat(quat, unit);
    quat_to_rotmat(unit, R);
    scalar_t v_R[9];
    for (int j = 0; j < 3; ++j) v_scale[j] = scalar_t(0);
    for (int i = 0; i < 3; ++i)
        for (int j = 0; j < 3; ++j) {
            // dL/dM = 2 dL/dSigma M
            const scalar_t v_M = scalar_t(2) * (v_cov[3 * i] * R[j] * scale[j] + v_cov[3 * i + 1] * R[3 + j] * scale[j] +
                                                v_cov[3 * i + 2] * R[6 + j] * scale[j]);
            v_scale[j] += v_M * R[3 * i + j];
            v_R[3 * i + j] = v_M * scale[j];
        }
    scalar_t v_unit[4];
    quat_to_rotmat_backward(unit, v_R, v_unit);
    const scalar_t along = unit[0] * v_unit[0] + unit[1] * v_unit[1] + unit[2] * v_unit[2] + unit[3] * v_unit[3];
    for (int i = 0; i < 4; ++i) v_quat[i] = (v_unit[i] - unit[i] * along) / norm;
}

}  // namespace distill3d
