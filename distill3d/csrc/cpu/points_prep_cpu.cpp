// Per-scan preprocessing of the point detectors on the CPU, each a single pass or two over the points
// where torch spends a dozen elementwise ops, index conversions and scatters (2.1-2.4 ms of a pillar
// detector's scan on one thread, the same for a teacher and its narrow student): see points_prep_cpu.h.
//
// IEEE arithmetic without FMA contraction (the extension is built with -ffast-math), so the pillar
// indices and features equal the torch reference's bit for bit.
#pragma GCC optimize("no-fast-math", "fp-contract=off")

#include "cpu/points_prep_cpu.h"

#include <algorithm>
#include <vector>

namespace distill3d {
namespace cpu {

template <typename scalar_t>
int64_t crop_points(int64_t P, int64_t C, const scalar_t* points, const scalar_t* lo, const scalar_t* hi, int64_t* keep) {
    const scalar_t lx = lo[0], ly = lo[1], lz = lo[2], hx = hi[0], hy = hi[1], hz = hi[2];
    int64_t count = 0;
    for (int64_t p = 0; p < P; ++p) {
        const scalar_t* q = points + p * C;
        const bool inside = (q[0] >= lx) & (q[0] < hx) & (q[1] >= ly) & (q[1] < hy) & (q[2] >= lz) & (q[2] < hz);
        keep[count] = p;  // written always, kept only if inside: no branch to mispredict
        count += inside;
    }
    return count;
}

template <typename scalar_t>
void pillar_point_features(int64_t B, const int64_t* counts, const scalar_t* points, scalar_t x0, scalar_t y0,
                           scalar_t pillar_size, int64_t H, int64_t W, int64_t* cell, scalar_t* feats) {
    const scalar_t half = scalar_t(0.5);
    std::vector<scalar_t> sums(H * W * 3);
    std::vector<int64_t> members(H * W);
    int64_t start = 0;
    for (int64_t b = 0; b < B; ++b) {
        const int64_t end = start + counts[b];
        std::fill(sums.begin(), sums.end(), scalar_t(0));
        std::fill(members.begin(), members.end(), 0);
        for (int64_t p = start; p < end; ++p) {  // pass 1: pillars, and their sums in point order
            const scalar_t* q = points + 4 * p;
            // trunc toward zero (torch's .long()), then clamp, as the reference
            const int64_t ix = std::min(std::max(static_cast<int64_t>((q[0] - x0) / pillar_size), int64_t(0)), W - 1);
            const int64_t iy = std::min(std::max(static_cast<int64_t>((q[1] - y0) / pillar_size), int64_t(0)), H - 1);
            const int64_t c = iy * W + ix;
            cell[p] = b * H * W + c;
            sums[3 * c] += q[0];
            sums[3 * c + 1] += q[1];
            sums[3 * c + 2] += q[2];
            members[c] += 1;
        }
        for (int64_t p = start; p < end; ++p) {  // pass 2: features
            const scalar_t* q = points + 4 * p;
            const int64_t c = cell[p] - b * H * W;
            const int64_t ix = c % W, iy = c / W;
            const scalar_t n = static_cast<scalar_t>(members[c]);
            scalar_t* f = feats + 9 * p;
            f[0] = q[0];
            f[1] = q[1];
            f[2] = q[2];
            f[3] = q[3];
            f[4] = q[0] - sums[3 * c] / n;
            f[5] = q[1] - sums[3 * c + 1] / n;
            f[6] = q[2] - sums[3 * c + 2] / n;
            f[7] = q[0] - ((static_cast<scalar_t>(ix) + half) * pillar_size + x0);
            f[8] = q[1] - ((static_cast<scalar_t>(iy) + half) * pillar_size + y0);
        }
        start = end;
    }
}

template int64_t crop_points<float>(int64_t, int64_t, const float*, const float*, const float*, int64_t*);
template int64_t crop_points<double>(int64_t, int64_t, const double*, const double*, const double*, int64_t*);
template void pillar_point_features<float>(int64_t, const int64_t*, const float*, float, float, float, int64_t, int64_t,
                                           int64_t*, float*);
template void pillar_point_features<double>(int64_t, const int64_t*, const double*, double, double, double, int64_t,
                                            int64_t, int64_t*, double*);

}  // namespace cpu
}  // namespace distill3d
