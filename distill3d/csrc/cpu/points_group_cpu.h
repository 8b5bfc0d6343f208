// CPU kernel of PointNet++'s grouping for the point detectors (distill3d/points/point_detector.py).
// Plain pointers and sizes, no torch types (bindings.cpp adapts).
#pragma once

#include <cstdint>

namespace distill3d {
namespace cpu {

// For each of the B x S x K group slots (group [B,S,K], indices into N), the row
// out[b,s,j] = ((xyz[b,g] - centres[b,s]) / radius, feats[b,g]) with g = group[b,s,j], of 3 + C values:
// xyz [B,N,3], feats [B,N,C], centres [B,S,3], out [B,S,K,3+C]. The relative coordinates are one IEEE
// subtraction and one division per value, as the torch reference computes them.
template <typename scalar_t>
void group_points(int64_t B, int64_t N, int64_t C, int64_t S, int64_t K, const scalar_t* xyz, const scalar_t* feats,
                  const scalar_t* centres, const int64_t* group, scalar_t radius, scalar_t* out);

}  // namespace cpu
}  // namespace distill3d
