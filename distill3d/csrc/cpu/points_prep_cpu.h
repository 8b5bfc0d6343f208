// CPU kernels of the point detectors' per-scan preprocessing (distill3d/points/detector.py, pillars.py):
// cropping a scan to the detection range and the per-point inputs of the pillar feature net.
// Plain pointers and sizes, no torch types (bindings.cpp adapts).
#pragma once

#include <cstdint>

namespace distill3d {
namespace cpu {

// Indices (ascending) of the rows of points [P,C] (C >= 3) with lo[a] <= points[p,a] < hi[a] for the
// three axes a (a NaN coordinate is outside); writes keep[0..count) and returns count.
template <typename scalar_t>
int64_t crop_points(int64_t P, int64_t C, const scalar_t* points, const scalar_t* lo, const scalar_t* hi, int64_t* keep);

// For the P points [P,4] of B scans (counts[b] consecutive points each, already cropped) on an H x W
// pillar grid with corner (x0, y0) and pillar side s: the pillar of each point,
// ix = clamp(trunc((x - x0) / s), 0, W - 1), iy likewise, as cell[p] = (b H + iy) W + ix, and its nine
// features feats[p] = (x, y, z, r, x - mx, y - my, z - mz, x - cx, y - cy) with (mx, my, mz) the mean of
// the pillar's points (summed in point order) and cx = (ix + 0.5) s + x0, cy likewise. Every step is the
// float arithmetic of the torch reference (pillars.py), so both give the same bits.
template <typename scalar_t>
void pillar_point_features(int64_t B, const int64_t* counts, const scalar_t* points, scalar_t x0, scalar_t y0,
                           scalar_t pillar_size, int64_t H, int64_t W, int64_t* cell, scalar_t* feats);

}  // namespace cpu
}  // namespace distill3d
