// Farthest point sampling on the CPU: one OpenMP thread per cloud, one pass over the N points per
// sample (the distance update and the argmax are fused), O(S N) with no per-sample dispatch.
//
// The extension is compiled with -ffast-math, which would let GCC contract dx*dx + dy*dy into an FMA
// and reorder the sum; a different last bit can move the argmax between near-equal points, so this
// file keeps IEEE arithmetic and the kernel returns exactly the torch reference's indices.
#pragma GCC optimize("no-fast-math", "fp-contract=off")

#include "cpu/sampling_cpu.h"

#include <limits>
#include <vector>

namespace distill3d {
namespace cpu {

template <typename scalar_t>
void farthest_point_sample(int64_t B, int64_t N, int64_t S, const scalar_t* xyz, int64_t* idx) {
#pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < B; ++b) {
        const scalar_t* p = xyz + b * N * 3;
        int64_t* out = idx + b * S;
        // max() rather than infinity: robust even where finite-math assumptions survive the pragma
        std::vector<scalar_t> nearest(N, std::numeric_limits<scalar_t>::max());
        int64_t farthest = 0;
        for (int64_t i = 0; i < S; ++i) {
            out[i] = farthest;
            const scalar_t cx = p[3 * farthest], cy = p[3 * farthest + 1], cz = p[3 * farthest + 2];
            scalar_t best = scalar_t(-1);  // distances are >= 0
            int64_t best_index = 0;
            for (int64_t n = 0; n < N; ++n) {
                const scalar_t dx = p[3 * n] - cx, dy = p[3 * n + 1] - cy, dz = p[3 * n + 2] - cz;
                const scalar_t xx = dx * dx, yy = dy * dy, zz = dz * dz;
                const scalar_t d = (xx + yy) + zz;
                const scalar_t m = d < nearest[n] ? d : nearest[n];
                nearest[n] = m;
                if (m > best) {  // strict: the first maximum wins, as torch.argmax
                    best = m;
                    best_index = n;
                }
            }
            farthest = best_index;
        }
    }
}

template void farthest_point_sample<float>(int64_t, int64_t, int64_t, const float*, int64_t*);
template void farthest_point_sample<double>(int64_t, int64_t, int64_t, const double*, int64_t*);

}  // namespace cpu
}  // namespace distill3d
