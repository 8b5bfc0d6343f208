// CPU kernel of exact k-nearest-neighbour search for the point detectors (distill3d/points/sampling.py).
// Plain pointers and sizes, no torch types (bindings.cpp adapts).
#pragma once

#include <cstdint>

namespace distill3d {
namespace cpu {

// For each of the B x M query rows of query [B,M,D], the K reference rows of reference [B,N,D] with the
// smallest squared distance sum_d (q_d - r_d)^2 among those with a distance <= max_dist2, nearest
// first, ties to the lower index; slots left over (fewer than K inside max_dist2) repeat the nearest
// row overall (PointNet++'s ball-query padding; with max_dist2 = inf this is plain kNN). Writes the
// squared distances dist [B,M,K] and the indices idx [B,M,K] (into N). Requires 1 <= K <= N.
template <typename scalar_t>
void knn_points(int64_t B, int64_t M, int64_t N, int64_t D, int64_t K, scalar_t max_dist2, const scalar_t* query,
                const scalar_t* reference, scalar_t* dist, int64_t* idx);

}  // namespace cpu
}  // namespace distill3d
