// Torch bindings of the native rasterizer: checks devices / dtypes / contiguity, allocates outputs and
// calls the plain-pointer kernels of csrc/cpu (and csrc/cuda when built with D3_WITH_CUDA).
// Argument validation with user-facing messages happens in distill3d/render/native.py; the TORCH_CHECKs
// here only guard the kernels against misuse of this internal module.
// ATen + torch's pybind11 casters instead of <torch/extension.h>: the same API for this file at less
// than half the compile time (the build runs on first use).
#include <ATen/ATen.h>
#include <torch/csrc/utils/pybind.h>

#include <optional>
#include <tuple>

#include "cpu/kernels_cpu.h"
#include "cpu/points_group_cpu.h"
#include "cpu/points_knn_cpu.h"
#include "cpu/points_prep_cpu.h"
#include "cpu/sampling_cpu.h"
#if defined(D3_WITH_CUDA)
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAGuard.h>

#include "cuda/kernels_cuda.h"
#endif

namespace {

using distill3d::BlendParams;
using distill3d::RasterDims;

void check_input(const at::Tensor& t, const char* name, const at::Device& device) {
    TORCH_CHECK(t.device() == device, name, " must be on ", device, ", got ", t.device());
    TORCH_CHECK(t.is_contiguous(), name, " must be contiguous");
}

bool on_cuda(const at::Tensor& t) { return t.device().is_cuda(); }

#if defined(D3_WITH_CUDA)
cudaStream_t stream() { return c10::cuda::getCurrentCUDAStream(); }
// Kernels launch on the inputs' GPU (a no-op guard for CPU tensors).
#define D3_DEVICE_GUARD(t) const c10::cuda::OptionalCUDAGuard device_guard(device_of(t))
#else
#define D3_DEVICE_GUARD(t)
#endif

void require_cuda_build(const at::Tensor& t) {
#if !defined(D3_WITH_CUDA)
    TORCH_CHECK(!on_cuda(t), "this native build has no CUDA kernels");
#endif
}

// Returns (radii [C,N,2] int32, means2d [C,N,2], conics [C,N,3], compensations [C,N]).
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> project_forward(
    const at::Tensor& means, const at::Tensor& quats, const at::Tensor& scales, const at::Tensor& viewmats,
    const at::Tensor& Ks, int64_t width, int64_t height, double eps2d, double near_plane, double far_plane,
    double radius_sigmas, double clamp_margin) {
    const auto device = means.device();
    for (const auto* t : {&means, &quats, &scales, &viewmats, &Ks}) {
        check_input(*t, "projection input", device);
        TORCH_CHECK(t->scalar_type() == means.scalar_type(), "all projection inputs must share one dtype");
    }
    require_cuda_build(means);
    D3_DEVICE_GUARD(means);
    const int64_t C = viewmats.size(0), N = means.size(0);
    auto radii = at::empty({C, N, 2}, means.options().dtype(at::kInt));
    auto means2d = at::empty({C, N, 2}, means.options());
    auto conics = at::empty({C, N, 3}, means.options());
    auto compensations = at::empty({C, N}, means.options());
    AT_DISPATCH_FLOATING_TYPES(means.scalar_type(), "project_forward", [&] {
        const distill3d::ProjectionParams<scalar_t> params{width, height, scalar_t(eps2d), scalar_t(near_plane),
                                                           scalar_t(far_plane), scalar_t(radius_sigmas),
                                                           scalar_t(clamp_margin)};
        const auto args = std::make_tuple(
            C, N, params, means.data_ptr<scalar_t>(), quats.data_ptr<scalar_t>(), scales.data_ptr<scalar_t>(),
            viewmats.data_ptr<scalar_t>(), Ks.data_ptr<scalar_t>(), radii.data_ptr<int32_t>(),
            means2d.data_ptr<scalar_t>(), conics.data_ptr<scalar_t>(),
            compensations.data_ptr<scalar_t>());
#if defined(D3_WITH_CUDA)
        if (on_cuda(means)) {
            std::apply(distill3d::cuda::project_forward<scalar_t>, std::tuple_cat(args, std::make_tuple(stream())));
            return;
        }
#endif
        std::apply(distill3d::cpu::project_forward<scalar_t>, args);
    });
    return {radii, means2d, conics, compensations};
}

// Returns (v_means [N,3], v_quats [N,4], v_scales [N,3]).
std::tuple<at::Tensor, at::Tensor, at::Tensor> project_backward(
    const at::Tensor& means, const at::Tensor& quats, const at::Tensor& scales, const at::Tensor& viewmats,
    const at::Tensor& Ks, int64_t width, int64_t height, double eps2d, double near_plane, double far_plane,
    double radius_sigmas, double clamp_margin, const at::Tensor& radii, const at::Tensor& v_means2d,
    const at::Tensor& v_conics, const at::Tensor& v_compensations) {
    const auto device = means.device();
    for (const auto* t : {&means, &quats, &scales, &viewmats, &Ks, &v_means2d, &v_conics, &v_compensations}) {
        check_input(*t, "projection input", device);
        TORCH_CHECK(t->scalar_type() == means.scalar_type(), "all projection inputs must share one dtype");
    }
    check_input(radii, "radii", device);
    TORCH_CHECK(radii.scalar_type() == at::kInt, "radii must be int32");
    require_cuda_build(means);
    D3_DEVICE_GUARD(means);
    const int64_t C = viewmats.size(0), N = means.size(0);
    auto v_means = at::empty_like(means);
    auto v_quats = at::empty_like(quats);
    auto v_scales = at::empty_like(scales);
    AT_DISPATCH_FLOATING_TYPES(means.scalar_type(), "project_backward", [&] {
        const distill3d::ProjectionParams<scalar_t> params{width, height, scalar_t(eps2d), scalar_t(near_plane),
                                                           scalar_t(far_plane), scalar_t(radius_sigmas),
                                                           scalar_t(clamp_margin)};
        const auto args = std::make_tuple(
            C, N, params, means.data_ptr<scalar_t>(), quats.data_ptr<scalar_t>(), scales.data_ptr<scalar_t>(),
            viewmats.data_ptr<scalar_t>(), Ks.data_ptr<scalar_t>(), radii.data_ptr<int32_t>(),
            v_means2d.data_ptr<scalar_t>(), v_conics.data_ptr<scalar_t>(),
            v_compensations.data_ptr<scalar_t>(), v_means.data_ptr<scalar_t>(), v_quats.data_ptr<scalar_t>(),
            v_scales.data_ptr<scalar_t>());
#if defined(D3_WITH_CUDA)
        if (on_cuda(means)) {
            std::apply(distill3d::cuda::project_backward<scalar_t>, std::tuple_cat(args, std::make_tuple(stream())));
            return;
        }
#endif
        std::apply(distill3d::cpu::project_backward<scalar_t>, args);
    });
    return {v_means, v_quats, v_scales};
}

// CPU tile binning (per-tile buckets, then a depth sort per tile; see cpu/isect_tiles_cpu.cpp): outputs
// are allocated once the buckets are counted, with no M-sized scratch.
std::tuple<at::Tensor, at::Tensor, at::Tensor> isect_tiles_cpu(const at::Tensor& means2d, const at::Tensor& radii,
                                                               const at::Tensor& depths, int64_t tile_size,
                                                               int64_t tile_width, int64_t tile_height) {
    const int64_t C = means2d.size(0), N = means2d.size(1);
    const distill3d::cpu::TileGrid grid{tile_size, tile_width, tile_height};
    auto tiles_per_gauss = at::empty({C, N}, radii.options());
    at::Tensor isect_ids, flatten_ids;
    AT_DISPATCH_FLOATING_TYPES(means2d.scalar_type(), "isect_tiles_cpu", [&] {
        const auto* m = means2d.data_ptr<scalar_t>();
        const auto* r = radii.data_ptr<int32_t>();
        auto bins = distill3d::cpu::isect_bin<scalar_t>(C, N, m, r, grid, tiles_per_gauss.data_ptr<int32_t>());
        const int64_t M = bins.intersections();
        TORCH_CHECK(M < (int64_t(1) << 31), "too many tile intersections for int32 offsets: ", M);
        isect_ids = at::empty({M}, means2d.options().dtype(at::kLong));
        flatten_ids = at::empty({M}, means2d.options().dtype(at::kInt));
        distill3d::cpu::isect_fill_sorted<scalar_t>(C, N, m, r, depths.data_ptr<scalar_t>(), grid, bins,
                                                    isect_ids.data_ptr<int64_t>(), flatten_ids.data_ptr<int32_t>());
    });
    return {tiles_per_gauss, isect_ids, flatten_ids};
}

// Returns (tiles_per_gauss [C,N] int32, isect_ids [M] int64 sorted, flatten_ids [M] int32).
std::tuple<at::Tensor, at::Tensor, at::Tensor> isect_tiles(const at::Tensor& means2d,
                                                                    const at::Tensor& radii,
                                                                    const at::Tensor& depths, int64_t tile_size,
                                                                    int64_t tile_width, int64_t tile_height) {
    const auto device = means2d.device();
    check_input(means2d, "means2d", device);
    check_input(radii, "radii", device);
    check_input(depths, "depths", device);
    TORCH_CHECK(radii.scalar_type() == at::kInt, "radii must be int32");
    TORCH_CHECK(depths.scalar_type() == means2d.scalar_type(), "depths must have the dtype of means2d");
    require_cuda_build(means2d);
    D3_DEVICE_GUARD(means2d);
    const int64_t C = means2d.size(0), N = means2d.size(1);
    TORCH_CHECK(C * N < (int64_t(1) << 31), "too many (camera, Gaussian) pairs for int32 flatten ids: ", C * N);
    if (!on_cuda(means2d)) return isect_tiles_cpu(means2d, radii, depths, tile_size, tile_width, tile_height);
#if defined(D3_WITH_CUDA)
    auto tiles_per_gauss = at::empty({C, N}, radii.options());
    AT_DISPATCH_FLOATING_TYPES(means2d.scalar_type(), "isect_count", [&] {
        const auto* m = means2d.data_ptr<scalar_t>();
        const auto* r = radii.data_ptr<int32_t>();
        auto* out = tiles_per_gauss.data_ptr<int32_t>();
        distill3d::cuda::isect_count<scalar_t>(C, N, m, r, tile_size, tile_width, tile_height, out, stream());
    });
    const auto counts = tiles_per_gauss.view({-1}).to(at::kLong);
    const auto ends = counts.cumsum(0);
    const int64_t M = C * N > 0 ? ends[-1].item<int64_t>() : 0;
    TORCH_CHECK(M < (int64_t(1) << 31), "too many tile intersections for int32 offsets: ", M);
    const auto starts = (ends - counts).contiguous();
    auto isect_ids = at::empty({M}, means2d.options().dtype(at::kLong));
    auto flatten_ids = at::empty({M}, means2d.options().dtype(at::kInt));
    AT_DISPATCH_FLOATING_TYPES(means2d.scalar_type(), "isect_fill", [&] {
        const auto* m = means2d.data_ptr<scalar_t>();
        const auto* r = radii.data_ptr<int32_t>();
        const auto* z = depths.data_ptr<scalar_t>();
        const auto* tpg = tiles_per_gauss.data_ptr<int32_t>();
        if (M == 0) return;
        distill3d::cuda::isect_fill<scalar_t>(C, N, m, r, z, tile_size, tile_width, tile_height, tpg,
                                              starts.data_ptr<int64_t>(), isect_ids.data_ptr<int64_t>(),
                                              flatten_ids.data_ptr<int32_t>(), stream());
        auto sorted = isect_ids.sort(/*stable=*/true, /*dim=*/0, /*descending=*/false);
        isect_ids = std::get<0>(sorted);
        flatten_ids = flatten_ids.index_select(0, std::get<1>(sorted));
    });
    return {tiles_per_gauss, isect_ids, flatten_ids};
#else
    TORCH_CHECK(false, "this native build has no CUDA kernels");
#endif
}

at::Tensor isect_offset_encode(const at::Tensor& isect_ids, int64_t cameras, int64_t tile_width,
                                  int64_t tile_height) {
    check_input(isect_ids, "isect_ids", isect_ids.device());
    TORCH_CHECK(isect_ids.scalar_type() == at::kLong, "isect_ids must be int64");
    require_cuda_build(isect_ids);
    D3_DEVICE_GUARD(isect_ids);
    auto offsets = at::empty({cameras, tile_height, tile_width}, isect_ids.options().dtype(at::kInt));
#if defined(D3_WITH_CUDA)
    if (on_cuda(isect_ids)) {
        distill3d::cuda::isect_offset_encode(isect_ids.numel(), isect_ids.data_ptr<int64_t>(), cameras, tile_width,
                                             tile_height, offsets.data_ptr<int32_t>(), stream());
        return offsets;
    }
#endif
    distill3d::cpu::isect_offset_encode(isect_ids.numel(), isect_ids.data_ptr<int64_t>(), cameras, tile_width,
                                        tile_height, offsets.data_ptr<int32_t>());
    return offsets;
}

RasterDims raster_dims(const at::Tensor& colors, const at::Tensor& flatten_ids, int64_t width, int64_t height,
                       int64_t tile_size, int64_t geometry_channels) {
    RasterDims dims;
    dims.cameras = colors.size(0);
    dims.gaussians = colors.size(1);
    dims.channels = colors.size(2);
    dims.geometry_channels = geometry_channels;
    dims.width = width;
    dims.height = height;
    dims.tile_size = tile_size;
    dims.tile_width = (width + tile_size - 1) / tile_size;
    dims.tile_height = (height + tile_size - 1) / tile_size;
    dims.intersections = flatten_ids.numel();
    TORCH_CHECK(0 <= geometry_channels && geometry_channels <= dims.channels,
                "geometry_channels must lie in [0, D]");
    return dims;
}

void check_raster_inputs(const at::Tensor& means2d, const at::Tensor& conics, const at::Tensor& colors,
                         const at::Tensor& opacities, const std::optional<at::Tensor>& backgrounds,
                         const at::Tensor& isect_offsets, const at::Tensor& flatten_ids) {
    const auto device = colors.device();
    check_input(means2d, "means2d", device);
    check_input(conics, "conics", device);
    check_input(colors, "colors", device);
    check_input(opacities, "opacities", device);
    check_input(isect_offsets, "isect_offsets", device);
    check_input(flatten_ids, "flatten_ids", device);
    if (backgrounds) check_input(*backgrounds, "backgrounds", device);
    TORCH_CHECK(isect_offsets.scalar_type() == at::kInt, "isect_offsets must be int32");
    TORCH_CHECK(flatten_ids.scalar_type() == at::kInt, "flatten_ids must be int32");
    for (const auto* t : {&means2d, &conics, &opacities})
        TORCH_CHECK(t->scalar_type() == colors.scalar_type(), "all float inputs must share one dtype");
    require_cuda_build(colors);
}

template <typename scalar_t>
BlendParams<scalar_t> blend_params(double alpha_min, double alpha_max, double transmittance_min) {
    return {scalar_t(alpha_min), scalar_t(alpha_max), scalar_t(transmittance_min)};
}

template <typename scalar_t>
const scalar_t* optional_ptr(const std::optional<at::Tensor>& t) {
    return t ? t->data_ptr<scalar_t>() : nullptr;
}

// Returns (render [C,H,W,D], transmittance [C,H,W], last_ids [C,H,W]).
std::tuple<at::Tensor, at::Tensor, at::Tensor> rasterize_forward(
    const at::Tensor& means2d, const at::Tensor& conics, const at::Tensor& colors,
    const at::Tensor& opacities, const std::optional<at::Tensor>& backgrounds, int64_t width, int64_t height,
    int64_t tile_size, const at::Tensor& isect_offsets, const at::Tensor& flatten_ids,
    int64_t geometry_channels, double alpha_min, double alpha_max, double transmittance_min) {
    check_raster_inputs(means2d, conics, colors, opacities, backgrounds, isect_offsets, flatten_ids);
    D3_DEVICE_GUARD(colors);
    const RasterDims dims = raster_dims(colors, flatten_ids, width, height, tile_size, geometry_channels);
    auto render = at::empty({dims.cameras, height, width, dims.channels}, colors.options());
    auto transmittance = at::empty({dims.cameras, height, width}, colors.options());
    auto last_ids = at::empty({dims.cameras, height, width}, colors.options().dtype(at::kInt));
    AT_DISPATCH_FLOATING_TYPES(colors.scalar_type(), "rasterize_forward", [&] {
        const auto params = blend_params<scalar_t>(alpha_min, alpha_max, transmittance_min);
        const auto args = std::make_tuple(
            dims, params, means2d.data_ptr<scalar_t>(), conics.data_ptr<scalar_t>(), colors.data_ptr<scalar_t>(),
            opacities.data_ptr<scalar_t>(), optional_ptr<scalar_t>(backgrounds), isect_offsets.data_ptr<int32_t>(),
            flatten_ids.data_ptr<int32_t>(), render.data_ptr<scalar_t>(), transmittance.data_ptr<scalar_t>(),
            last_ids.data_ptr<int32_t>());
#if defined(D3_WITH_CUDA)
        if (on_cuda(colors)) {
            std::apply(distill3d::cuda::rasterize_forward<scalar_t>, std::tuple_cat(args, std::make_tuple(stream())));
            return;
        }
#endif
        std::apply(distill3d::cpu::rasterize_forward<scalar_t>, args);
    });
    return {render, transmittance, last_ids};
}

// Returns (v_means2d [C,N,2], v_conics [C,N,3], v_colors [C,N,D], v_opacities [C,N]). `deterministic`:
// each Gaussian's per-tile gradients are added in a fixed order (bitwise reproducible) instead of with
// atomics in thread order.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> rasterize_backward(
    const at::Tensor& means2d, const at::Tensor& conics, const at::Tensor& colors,
    const at::Tensor& opacities, const std::optional<at::Tensor>& backgrounds, int64_t width, int64_t height,
    int64_t tile_size, const at::Tensor& isect_offsets, const at::Tensor& flatten_ids,
    int64_t geometry_channels, double alpha_min, double alpha_max, double transmittance_min,
    const at::Tensor& transmittance, const at::Tensor& last_ids, const at::Tensor& v_render,
    const at::Tensor& v_alpha, bool deterministic) {
    check_raster_inputs(means2d, conics, colors, opacities, backgrounds, isect_offsets, flatten_ids);
    for (const auto* t : {&transmittance, &last_ids, &v_render, &v_alpha}) check_input(*t, "saved tensor", colors.device());
    D3_DEVICE_GUARD(colors);
    const RasterDims dims = raster_dims(colors, flatten_ids, width, height, tile_size, geometry_channels);
    auto v_means2d = at::zeros_like(means2d);
    auto v_conics = at::zeros_like(conics);
    auto v_colors = at::zeros_like(colors);
    auto v_opacities = at::zeros_like(opacities);
#if defined(D3_WITH_CUDA)
    // The CUDA deterministic mode's buffers: a zeroed row per intersection, and the intersections
    // grouped by Gaussian in their sorted (tile) order.
    at::Tensor isect_rows, row_order, row_starts;
    if (on_cuda(colors) && deterministic) {
        const int64_t row_width = distill3d::cuda::backward_row_width(dims.channels);
        isect_rows = at::zeros({dims.intersections, row_width}, colors.options());
        auto sorted = flatten_ids.sort(/*stable=*/true, /*dim=*/0, /*descending=*/false);
        row_order = std::get<1>(sorted);
        const auto ids = at::arange(dims.cameras * dims.gaussians + 1, flatten_ids.options());
        row_starts = at::searchsorted(std::get<0>(sorted), ids).to(at::kLong).contiguous();
    }
#endif
    AT_DISPATCH_FLOATING_TYPES(colors.scalar_type(), "rasterize_backward", [&] {
        const auto params = blend_params<scalar_t>(alpha_min, alpha_max, transmittance_min);
        const auto args = std::make_tuple(
            dims, params, means2d.data_ptr<scalar_t>(), conics.data_ptr<scalar_t>(), colors.data_ptr<scalar_t>(),
            opacities.data_ptr<scalar_t>(), optional_ptr<scalar_t>(backgrounds), isect_offsets.data_ptr<int32_t>(),
            flatten_ids.data_ptr<int32_t>(), transmittance.data_ptr<scalar_t>(), last_ids.data_ptr<int32_t>(),
            v_render.data_ptr<scalar_t>(), v_alpha.data_ptr<scalar_t>(), v_means2d.data_ptr<scalar_t>(),
            v_conics.data_ptr<scalar_t>(), v_colors.data_ptr<scalar_t>(), v_opacities.data_ptr<scalar_t>());
#if defined(D3_WITH_CUDA)
        if (on_cuda(colors)) {
            distill3d::cuda::DeterministicRows<scalar_t> rows;
            if (deterministic) {
                rows.isect_rows = isect_rows.data_ptr<scalar_t>();
                rows.order = row_order.data_ptr<int64_t>();
                rows.starts = row_starts.data_ptr<int64_t>();
            }
            std::apply(distill3d::cuda::rasterize_backward<scalar_t>,
                       std::tuple_cat(args, std::make_tuple(rows, stream())));
            return;
        }
#endif
        std::apply(distill3d::cpu::rasterize_backward<scalar_t>, std::tuple_cat(args, std::make_tuple(deterministic)));
    });
    return {v_means2d, v_conics, v_colors, v_opacities};
}

// Farthest point sampling of xyz [B,N,3] (CPU): idx [B,S] int64, see cpu/sampling_cpu.h.
at::Tensor farthest_point_sample(const at::Tensor& xyz, int64_t num_samples) {
    TORCH_CHECK(xyz.device().is_cpu(), "farthest_point_sample has a CPU kernel only");
    TORCH_CHECK(xyz.dim() == 3 && xyz.size(2) == 3, "xyz must be [B, N, 3]");
    TORCH_CHECK(num_samples > 0 && num_samples <= xyz.size(1), "num_samples must be in [1, N]");
    const auto points = xyz.contiguous();
    auto idx = at::empty({points.size(0), num_samples}, points.options().dtype(at::kLong));
    AT_DISPATCH_FLOATING_TYPES(points.scalar_type(), "farthest_point_sample", [&] {
        distill3d::cpu::farthest_point_sample<scalar_t>(points.size(0), points.size(1), num_samples,
                                                        points.data_ptr<scalar_t>(), idx.data_ptr<int64_t>());
    });
    return idx;
}

// Exact kNN (or ball query, max_dist2 finite) of query [B,M,D] among reference [B,N,D] (CPU): squared
// distances [B,M,k] and int64 indices [B,M,k], nearest first, see cpu/points_knn_cpu.h.
std::tuple<at::Tensor, at::Tensor> knn_points(const at::Tensor& query, const at::Tensor& reference, int64_t k,
                                              double max_dist2) {
    TORCH_CHECK(query.device().is_cpu() && reference.device().is_cpu(), "knn_points has a CPU kernel only");
    TORCH_CHECK(query.dim() == 3 && reference.dim() == 3 && query.size(0) == reference.size(0) &&
                    query.size(2) == reference.size(2), "query [B, M, D] and reference [B, N, D] must agree on B and D");
    TORCH_CHECK(query.scalar_type() == reference.scalar_type(), "query and reference must have one dtype");
    TORCH_CHECK(k > 0 && k <= reference.size(1), "k must be in [1, N]");
    const auto q = query.contiguous(), r = reference.contiguous();
    auto dist = at::empty({q.size(0), q.size(1), k}, q.options());
    auto idx = at::empty({q.size(0), q.size(1), k}, q.options().dtype(at::kLong));
    AT_DISPATCH_FLOATING_TYPES(q.scalar_type(), "knn_points", [&] {
        distill3d::cpu::knn_points<scalar_t>(q.size(0), q.size(1), r.size(1), q.size(2), k, static_cast<scalar_t>(max_dist2),
                                             q.data_ptr<scalar_t>(), r.data_ptr<scalar_t>(), dist.data_ptr<scalar_t>(),
                                             idx.data_ptr<int64_t>());
    });
    return {dist, idx};
}

// Indices [K] int64 (ascending) of the rows of points [P,C] (CPU, C >= 3) inside lo [3] <= xyz < hi [3], see
// cpu/points_prep_cpu.h.
at::Tensor crop_points(const at::Tensor& points, const at::Tensor& lo, const at::Tensor& hi) {
    TORCH_CHECK(points.device().is_cpu() && lo.device().is_cpu() && hi.device().is_cpu(), "crop_points has a CPU kernel only");
    TORCH_CHECK(points.dim() == 2 && points.size(1) >= 3, "points must be [P, C] with C >= 3");
    TORCH_CHECK(lo.numel() == 3 && hi.numel() == 3, "lo and hi must hold 3 values");
    TORCH_CHECK(lo.scalar_type() == points.scalar_type() && hi.scalar_type() == points.scalar_type(), "one dtype");
    const auto p = points.contiguous(), l = lo.contiguous(), h = hi.contiguous();
    auto keep = at::empty({p.size(0)}, p.options().dtype(at::kLong));
    int64_t count = 0;
    AT_DISPATCH_FLOATING_TYPES(p.scalar_type(), "crop_points", [&] {
        count = distill3d::cpu::crop_points<scalar_t>(p.size(0), p.size(1), p.data_ptr<scalar_t>(), l.data_ptr<scalar_t>(),
                                                      h.data_ptr<scalar_t>(), keep.data_ptr<int64_t>());
    });
    return keep.narrow(0, 0, count);
}

// Pillar cells [P] int64 and point features [P,9] of the cropped points [P,4] of B scans (CPU; counts [B]
// int64 consecutive points each) on an H x W grid, see cpu/points_prep_cpu.h.
std::tuple<at::Tensor, at::Tensor> pillar_point_features(const at::Tensor& points, const at::Tensor& counts, double x0,
                                                         double y0, double pillar_size, int64_t H, int64_t W) {
    TORCH_CHECK(points.device().is_cpu() && counts.device().is_cpu(), "pillar_point_features has a CPU kernel only");
    TORCH_CHECK(points.dim() == 2 && points.size(1) == 4, "points must be [P, 4]");
    TORCH_CHECK(counts.dim() == 1 && counts.scalar_type() == at::kLong, "counts must be [B] int64");
    TORCH_CHECK(H > 0 && W > 0 && pillar_size > 0, "the grid must be non-empty");
    const auto p = points.contiguous(), n = counts.contiguous();
    TORCH_CHECK(n.sum().item<int64_t>() == p.size(0) && (n.numel() == 0 || n.min().item<int64_t>() >= 0),
                "counts must be non-negative and sum to the number of points");
    auto cell = at::empty({p.size(0)}, p.options().dtype(at::kLong));
    auto feats = at::empty({p.size(0), 9}, p.options());
    AT_DISPATCH_FLOATING_TYPES(p.scalar_type(), "pillar_point_features", [&] {
        distill3d::cpu::pillar_point_features<scalar_t>(n.size(0), n.data_ptr<int64_t>(), p.data_ptr<scalar_t>(),
                                                        static_cast<scalar_t>(x0), static_cast<scalar_t>(y0),
                                                        static_cast<scalar_t>(pillar_size), H, W,
                                                        cell.data_ptr<int64_t>(), feats.data_ptr<scalar_t>());
    });
    return {cell, feats};
}

// Group rows [B,S,K,3+C] of PointNet++: ((xyz[g] - centre) / radius, feats[g]) for the neighbour indices
// group [B,S,K] of each centre (CPU), see cpu/points_group_cpu.h.
at::Tensor group_points(const at::Tensor& xyz, const at::Tensor& feats, const at::Tensor& centres, const at::Tensor& group,
                        double radius) {
    TORCH_CHECK(xyz.device().is_cpu() && feats.device().is_cpu() && centres.device().is_cpu() && group.device().is_cpu(),
                "group_points has a CPU kernel only");
    TORCH_CHECK(xyz.dim() == 3 && xyz.size(2) == 3 && feats.dim() == 3 && feats.size(0) == xyz.size(0) &&
                    feats.size(1) == xyz.size(1), "xyz must be [B, N, 3] and feats [B, N, C]");
    TORCH_CHECK(centres.dim() == 3 && centres.size(0) == xyz.size(0) && centres.size(2) == 3 && group.dim() == 3 &&
                    group.size(0) == xyz.size(0) && group.size(1) == centres.size(1) && group.scalar_type() == at::kLong,
                "centres must be [B, S, 3] and group [B, S, K] int64");
    TORCH_CHECK(feats.scalar_type() == xyz.scalar_type() && centres.scalar_type() == xyz.scalar_type(), "one dtype");
    TORCH_CHECK(group.numel() == 0 || (group.min().item<int64_t>() >= 0 && group.max().item<int64_t>() < xyz.size(1)),
                "group indices must lie in [0, N)");
    const auto p = xyz.contiguous(), f = feats.contiguous(), c = centres.contiguous(), g = group.contiguous();
    auto out = at::empty({g.size(0), g.size(1), g.size(2), 3 + f.size(2)}, p.options());
    AT_DISPATCH_FLOATING_TYPES(p.scalar_type(), "group_points", [&] {
        distill3d::cpu::group_points<scalar_t>(p.size(0), p.size(1), f.size(2), g.size(1), g.size(2), p.data_ptr<scalar_t>(),
                                               f.data_ptr<scalar_t>(), c.data_ptr<scalar_t>(), g.data_ptr<int64_t>(),
                                               static_cast<scalar_t>(radius), out.data_ptr<scalar_t>());
    });
    return out;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
    m.doc() = "distill3d native Gaussian rasterizer (projection, tile binning, alpha compositing forward/backward)";
    m.def("project_forward", &project_forward);
    m.def("project_backward", &project_backward);
    m.def("isect_tiles", &isect_tiles);
    m.def("isect_offset_encode", &isect_offset_encode);
    m.def("rasterize_forward", &rasterize_forward);
    m.def("rasterize_backward", &rasterize_backward);
    m.def("farthest_point_sample", &farthest_point_sample);
    m.def("knn_points", &knn_points);
    m.def("crop_points", &crop_points);
    m.def("pillar_point_features", &pillar_point_features);
    m.def("group_points", &group_points);
#if defined(D3_WITH_CUDA)
    m.attr("with_cuda") = true;
#else
    m.attr("with_cuda") = false;
#endif
}
