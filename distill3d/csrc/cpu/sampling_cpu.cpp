// Farthest point sampling on the CPU: one OpenMP thread per cloud, one pass over the N points per
// sample, O(S N) with no per-sample dispatch. The points are copied to structure-of-arrays form once,
// so the pass (distance, running minimum, maximum of the minima) vectorises; a second, usually short,
// scan then finds the first point holding that maximum (torch.argmax's tie rule).
//
// The maximum is taken over the bit patterns of the minima as integers: they are non-negative floats
// (a NaN distance never replaces the initial max()), which order as their bits, and an integer max
// reduction vectorises under IEEE semantics where a float one does not.
//
// The extension is compiled with -ffast-math, which would let GCC contract dx*dx + dy*dy into an FMA
// and reorder the sum; a different last bit can move the argmax between near-equal points, so this
// file keeps IEEE arithmetic and the kernel returns exactly the torch reference's indices.
#pragma GCC optimize("no-fast-math", "fp-contract=off")

#include "cpu/sampling_cpu.h"

#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

namespace distill3d {
namespace cpu {

template <typename scalar_t>
void farthest_point_sample(int64_t B, int64_t N, int64_t S, const scalar_t* xyz, int64_t* idx) {
    using bits_t = std::conditional_t<sizeof(scalar_t) == 4, int32_t, int64_t>;
    static_assert(sizeof(bits_t) == sizeof(scalar_t), "one integer per float");
#pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < B; ++b) {
        const scalar_t* p = xyz + b * N * 3;
        int64_t* out = idx + b * S;
        std::vector<scalar_t> coords(3 * N);
        scalar_t* __restrict xs = coords.data();
        scalar_t* __restrict ys = xs + N;
        scalar_t* __restrict zs = ys + N;
        for (int64_t n = 0; n < N; ++n) {
            xs[n] = p[3 * n];
            ys[n] = p[3 * n + 1];
            zs[n] = p[3 * n + 2];
        }
        // max() rather than infinity: robust even where finite-math assumptions survive the pragma
        std::vector<scalar_t> nearest_store(N, std::numeric_limits<scalar_t>::max());
        scalar_t* __restrict nearest = nearest_store.data();
        int64_t farthest = 0;
        for (int64_t i = 0; i < S; ++i) {
            out[i] = farthest;
            const scalar_t cx = xs[farthest], cy = ys[farthest], cz = zs[farthest];
            bits_t best_bits = 0;  // the bits of +0.0: distances are >= 0
            for (int64_t n = 0; n < N; ++n) {
                const scalar_t dx = xs[n] - cx, dy = ys[n] - cy, dz = zs[n] - cz;
                const scalar_t xx = dx * dx, yy = dy * dy, zz = dz * dz;
                const scalar_t d = (xx + yy) + zz;
                const scalar_t m = d < nearest[n] ? d : nearest[n];
                nearest[n] = m;
                bits_t m_bits;
                std::memcpy(&m_bits, &m, sizeof(m_bits));
                best_bits = m_bits > best_bits ? m_bits : best_bits;
            }
            scalar_t best;
            std::memcpy(&best, &best_bits, sizeof(best));
            int64_t n = 0;
            while (nearest[n] != best) ++n;  // the first maximum (best is one of the minima)
            farthest = n;
        }
    }
}

template void farthest_point_sample<float>(int64_t, int64_t, int64_t, const float*, int64_t*);
template void farthest_point_sample<double>(int64_t, int64_t, int64_t, const double*, int64_t*);

}  // namespace cpu
}  // namespace distill3d
