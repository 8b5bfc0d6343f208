// Exact kNN on the CPU, in two passes per query: the squared distances to all N reference points (a
// contiguous loop over a coordinate-major copy of the reference cloud, which the compiler vectorises),
// then one scan that keeps the K best (distance, index) pairs among those within max_dist2 in a sorted
// buffer. Once the buffer is full a point must beat its last entry, so after the first few points
// almost every point costs one predictable comparison; an insertion shifts at most K entries. That is
// O(N D + N + insertions K) per query with no [M, N] distance matrix or top-k of torch (cdist + topk),
// whose per-scan cost on the point detector's few thousand points does not shrink with the width.
// (A max-heap instead, and tracking the overall nearest point inside the scan for the padding, were
// 2-3x slower on the detectors' searches: the padding needs that point only when the ball is empty.)
//
// Pairs are compared lexicographically (distance, then index): scanning in index order, an equal
// distance never displaces a kept pair, so the result is unique: the K smallest pairs, nearest first,
// ties to the lower index. The distance is summed in coordinate order without FMA contraction (the
// extension is built with -ffast-math).
#pragma GCC optimize("no-fast-math", "fp-contract=off")

#include "cpu/points_knn_cpu.h"

#include <vector>

namespace distill3d {
namespace cpu {

template <typename scalar_t>
void knn_points(int64_t B, int64_t M, int64_t N, int64_t D, int64_t K, scalar_t max_dist2, const scalar_t* query,
                const scalar_t* reference, scalar_t* dist, int64_t* idx) {
    std::vector<scalar_t> columns(N * D);  // reference cloud b, coordinate-major: columns[c * N + n]
    for (int64_t b = 0; b < B; ++b) {
        const scalar_t* r = reference + b * N * D;
        for (int64_t n = 0; n < N; ++n)
            for (int64_t c = 0; c < D; ++c) columns[c * N + n] = r[n * D + c];
#pragma omp parallel
        {
            std::vector<scalar_t> d_store(N), kept_dist(K);
            std::vector<int64_t> kept_index(K);
            scalar_t* __restrict d = d_store.data();
#pragma omp for schedule(static)
            for (int64_t m = 0; m < M; ++m) {
                const int64_t row = b * M + m;
                const scalar_t* q = query + row * D;
                for (int64_t c = 0; c < D; ++c) {
                    const scalar_t qc = q[c];
                    const scalar_t* __restrict col = columns.data() + c * N;
                    if (c == 0) {
                        for (int64_t n = 0; n < N; ++n) {
                            const scalar_t diff = col[n] - qc;
                            d[n] = diff * diff;
                        }
                    } else {
                        for (int64_t n = 0; n < N; ++n) {
                            const scalar_t diff = col[n] - qc;
                            d[n] += diff * diff;
                        }
                    }
                }
                // kept_dist[0..found) ascending; a point enters with d <= max_dist2 while the buffer
                // has room, and with d < its last entry once it is full
                int64_t found = 0;
                scalar_t bound = max_dist2;
                for (int64_t n = 0; n < N; ++n) {
                    const scalar_t v = d[n];
                    if (found < K ? !(v <= bound) : !(v < bound)) continue;
                    int64_t j = found < K ? found++ : K - 1;
                    for (; j > 0 && v < kept_dist[j - 1]; --j) {
                        kept_dist[j] = kept_dist[j - 1];
                        kept_index[j] = kept_index[j - 1];
                    }
                    kept_dist[j] = v;
                    kept_index[j] = n;
                    if (found == K) bound = kept_dist[K - 1];
                }
                // padding: the nearest point overall, which is the first kept one unless the ball is empty
                int64_t nearest = found > 0 ? kept_index[0] : 0;
                if (found == 0)
                    for (int64_t n = 1; n < N; ++n)
                        if (d[n] < d[nearest]) nearest = n;
                for (int64_t j = 0; j < K; ++j) {
                    const int64_t n = j < found ? kept_index[j] : nearest;
                    dist[row * K + j] = d[n];
                    idx[row * K + j] = n;
                }
            }
        }
    }
}

template void knn_points<float>(int64_t, int64_t, int64_t, int64_t, int64_t, float, const float*, const float*, float*,
                                int64_t*);
template void knn_points<double>(int64_t, int64_t, int64_t, int64_t, int64_t, double, const double*, const double*,
                                 double*, int64_t*);

}  // namespace cpu
}  // namespace distill3d
