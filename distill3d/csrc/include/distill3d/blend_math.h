// Per (Gaussian, pixel) math of alpha compositing and its derivative, shared by CPU and CUDA.
//
//   d = pixel_centre - mean2d
//   sigma = 0.5 * (a dx^2 + c dy^2) + b dx dy        (conic [[a, b], [b, c]] = cov2d^-1)
//   alpha = min(alpha_max, opacity * exp(-sigma))     (skipped if sigma < 0 or alpha < alpha_min)
//
// Backward, given dL/dalpha (the clamp at alpha_max has zero gradient, as in gsplat):
//   dL/dopacity = exp(-sigma) dL/dalpha,   dL/dsigma = -opacity exp(-sigma) dL/dalpha
//   dL/dmean2d  = -dL/dsigma (a dx + b dy, b dx + c dy)
//   dL/dconic   =  dL/dsigma (dx^2 / 2, dx dy, dy^2 / 2)
#pragma once

#include <cmath>

#include "distill3d/common.h"

namespace distill3d {

// Mahalanobis half-distance of a pixel centre offset (dx, dy) under the conic (a, b, c).
template <typename scalar_t>
D3_HD scalar_t gaussian_sigma(scalar_t dx, scalar_t dy, scalar_t a, scalar_t b, scalar_t c) {
    return scalar_t(0.5) * (a * dx * dx + c * dy * dy) + b * dx * dy;
}

// exp(-sigma) with sigma clamped to [0, kMaxSigma] first: a negative sigma is skipped anyway, and both
// clamps only touch pairs whose alpha is skipped (exp(-kMaxSigma) < 1e-34 < alpha_min). They keep the
// argument in the range where vectorised exp (glibc libmvec) stays on its fast path; beyond ~87 it
// underflows and falls back to scalar code per lane, which made far-away pixels several times slower.
constexpr double kMaxSigma = 80.0;

template <typename scalar_t>
D3_HD scalar_t gaussian_falloff(scalar_t sigma) {
    const scalar_t clamped = sigma > scalar_t(0) ? (sigma < scalar_t(kMaxSigma) ? sigma : scalar_t(kMaxSigma)) : scalar_t(0);
    return std::exp(-clamped);
}

// Whether an evaluated alpha takes part in compositing. Bitwise & rather than && here and in the
// pixel loops: short-circuit branches stop GCC from vectorising them.
template <typename scalar_t>
D3_HD bool alpha_blends(scalar_t sigma, scalar_t alpha, const BlendParams<scalar_t>& p) {
    return (sigma >= scalar_t(0)) & (alpha >= p.alpha_min);
}

// Half-extents (x, y) of the pixels a Gaussian can blend into: alpha >= alpha_min needs
// sigma <= s = ln(opacity / alpha_min), the ellipse d^T Q d <= 2 s of the conic Q, whose extents are
// sqrt(2 s Sigma_xx) and sqrt(2 s Sigma_yy) with Sigma = Q^-1: Sigma_xx = c / (a c - b^2),
// Sigma_yy = a / (a c - b^2). Evaluated in double, where the products of the float conic are exact and
// the determinant loses nothing but for conics within 1e-16 of degenerate. Negative: it blends nowhere;
// a degenerate conic gives kUnboundedExtent (finite, as fast-math code must not meet infinities).
constexpr double kUnboundedExtent = 1e30;

template <typename scalar_t>
D3_HD void blend_half_extents(scalar_t a, scalar_t b, scalar_t c, scalar_t opacity, const BlendParams<scalar_t>& p,
                              double& half_x, double& half_y) {
    half_x = half_y = -1;
    if (!(opacity >= p.alpha_min)) return;
    const double ad = double(a), bd = double(b), cd = double(c);
    const double det = ad * cd - bd * bd;
    half_x = half_y = kUnboundedExtent;
    if (!(det > 0) || !(ad > 0) || !(cd > 0)) return;
    const double two_s = 2 * std::log(double(opacity) / double(p.alpha_min));
    half_x = std::sqrt(two_s * cd / det);
    half_y = std::sqrt(two_s * ad / det);
}

// Gradients of one (Gaussian, pixel) pair given dL/dalpha. Writes dL/dsigma-derived terms into the
// six accumulators (mean x, mean y, conic a, b, c, opacity). `raw_alpha` = opacity * exp(-sigma)
// before the clamp; above alpha_max the clamp holds and nothing flows back.
template <typename scalar_t>
D3_HD void alpha_backward(scalar_t dx, scalar_t dy, scalar_t a, scalar_t b, scalar_t c, scalar_t falloff,
                          scalar_t raw_alpha, scalar_t v_alpha, const BlendParams<scalar_t>& p,
                          scalar_t& v_mx, scalar_t& v_my, scalar_t& v_a, scalar_t& v_b, scalar_t& v_c,
                          scalar_t& v_opacity) {
    const scalar_t unclamped = raw_alpha <= p.alpha_max ? scalar_t(1) : scalar_t(0);
    const scalar_t v_sigma = -raw_alpha * v_alpha * unclamped;
    v_opacity = falloff * v_alpha * unclamped;
    v_mx = -v_sigma * (a * dx + b * dy);
    v_my = -v_sigma * (b * dx + c * dy);
    v_a = scalar_t(0.5) * v_sigma * dx * dx;
    v_b = v_sigma * dx * dy;
    v_c = scalar_t(0.5) * v_sigma * dy * dy;
}

}  // namespace distill3d
