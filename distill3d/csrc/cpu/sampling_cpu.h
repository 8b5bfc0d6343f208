// CPU kernel of farthest point sampling for the point detectors (distill3d/points/sampling.py).
// Plain pointers and sizes, no torch types (bindings.cpp adapts).
#pragma once

#include <cstdint>

namespace distill3d {
namespace cpu {

// Writes idx [B,S]: for each of B clouds xyz [B,N,3], c_0 = 0 and c_i = argmax_p min_{j<i} |p - c_j|^2,
// ties to the lowest index. The squared distance is ((dx*dx + dy*dy) + dz*dz) in scalar_t with no
// contraction, the exact arithmetic of the torch reference, so both return the same indices.
template <typename scalar_t>
void farthest_point_sample(int64_t B, int64_t N, int64_t S, const scalar_t* xyz, int64_t* idx);

}  // namespace cpu
}  // namespace distill3d
