// Exact kNN on the CPU, in two passes per query: the squared distances to all N reference points (a
// contiguous loop over a coordinate-major copy of the reference cloud, which the compiler vectorises),
// then a bounded max-heap of the K best (distance, index) pairs among those within max_dist2. That is
// O(N D + N log K) per query with no [M, N] distance matrix or top-k of torch (cdist + topk), whose
// per-scan cost on the point detector's few thousand points does not shrink with the detector's width.
// A ball query (finite max_dist2) only heaps the points inside the ball, usually far fewer than N.
//
// Pairs are compared lexicographically (distance, then index), so the result is unique: the K
// smallest pairs, nearest first, ties to the lower index. The distance is summed in coordinate
// order without FMA contraction (the extension is built with -ffast-math).
#pragma GCC optimize("no-fast-math", "fp-contract=off")

#include "cpu/points_knn_cpu.h"

#include <algorithm>
#include <utility>
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
            std::vector<scalar_t> d(N);
            std::vector<std::pair<scalar_t, int64_t>> heap;  // max-heap: heap.front() is the worst kept pair
            heap.reserve(K);
#pragma omp for schedule(static)
            for (int64_t m = 0; m < M; ++m) {
                const int64_t row = b * M + m;
                const scalar_t* q = query + row * D;
                std::fill(d.begin(), d.end(), scalar_t(0));
                for (int64_t c = 0; c < D; ++c) {
                    const scalar_t qc = q[c];
                    const scalar_t* col = columns.data() + c * N;
                    scalar_t* out = d.data();
                    for (int64_t n = 0; n < N; ++n) {
                        const scalar_t diff = col[n] - qc;
                        out[n] += diff * diff;
                    }
                }
                heap.clear();
                int64_t nearest = 0;  // overall, inside the ball or not: the padding
                for (int64_t n = 0; n < N; ++n) {
                    if (d[n] < d[nearest]) nearest = n;
                    if (!(d[n] <= max_dist2)) continue;
                    if (static_cast<int64_t>(heap.size()) < K) {
                        heap.emplace_back(d[n], n);
                        std::push_heap(heap.begin(), heap.end());
                    } else if (d[n] < heap.front().first) {  // an equal distance has a higher index: never better
                        std::pop_heap(heap.begin(), heap.end());
                        heap.back() = {d[n], n};
                        std::push_heap(heap.begin(), heap.end());
                    }
                }
                std::sort_heap(heap.begin(), heap.end());  // ascending (distance, index)
                const int64_t found = static_cast<int64_t>(heap.size());
                for (int64_t j = 0; j < K; ++j) {
                    const int64_t n = j < found ? heap[j].second : nearest;
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
