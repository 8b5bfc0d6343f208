// PointNet++ grouping on the CPU: each group row is written once, straight from the point and centre it
// stands for, where torch gathers the coordinates, subtracts, divides, gathers the features and
// concatenates (five passes over the S K rows; the proposal head has 16384 of them per scan, and this
// cost does not shrink with the detector's width). See points_group_cpu.h.
//
// IEEE arithmetic (the extension is built with -ffast-math, which could turn the division into a
// multiplication by the reciprocal): the rows equal the torch reference's bit for bit.
#pragma GCC optimize("no-fast-math", "fp-contract=off")

#include "cpu/points_group_cpu.h"

namespace distill3d {
namespace cpu {

template <typename scalar_t>
void group_points(int64_t B, int64_t N, int64_t C, int64_t S, int64_t K, const scalar_t* xyz, const scalar_t* feats,
                  const scalar_t* centres, const int64_t* group, scalar_t radius, scalar_t* out) {
    const int64_t width = 3 + C;
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t b = 0; b < B; ++b) {
        for (int64_t s = 0; s < S; ++s) {
            const scalar_t* c = centres + (b * S + s) * 3;
            const int64_t* g = group + (b * S + s) * K;
            scalar_t* row = out + (b * S + s) * K * width;
            for (int64_t j = 0; j < K; ++j, row += width) {
                const scalar_t* p = xyz + (b * N + g[j]) * 3;
                const scalar_t* f = feats + (b * N + g[j]) * C;
                row[0] = (p[0] - c[0]) / radius;
                row[1] = (p[1] - c[1]) / radius;
                row[2] = (p[2] - c[2]) / radius;
                for (int64_t k = 0; k < C; ++k) row[3 + k] = f[k];
            }
        }
    }
}

template void group_points<float>(int64_t, int64_t, int64_t, int64_t, int64_t, const float*, const float*, const float*,
                                  const int64_t*, float, float*);
template void group_points<double>(int64_t, int64_t, int64_t, int64_t, int64_t, const double*, const double*,
                                   const double*, const int64_t*, double, double*);

}  // namespace cpu
}  // namespace distill3d
