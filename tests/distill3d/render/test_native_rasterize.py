"""Native CPU kernels (csrc/cpu) against the torch reference stages, values and gradients.

Tolerances: both compute the same formulas per (Gaussian, pixel) pair in the same front-to-back order,
but the native forward vectorises exp (glibc libmvec, -ffast-math) and the backward recovers T_i by
division from the final transmittance (as 3DGS does) and sums pixel contributions in another order.
float32 values agree to ~1e-5 relative, gradients to ~1e-4 relative of their largest entry; float64
agrees to ~1e-10 and passes gradcheck.
"""
import pytest
import torch

from distill3d.render import compositing, native, tiles
from distill3d.render.projection import project_gaussians

TILE = 16


@pytest.fixture(scope="module", autouse=True)
def _built():
    # The CPU build is part of the product (not optional): a failed build fails these tests.
    assert native.native_available("cpu"), native.native_build_error()


def splats_2d(C=2, N=150, D=16, width=45, height=37, dtype=torch.float32, opacity=(0.05, 0.95), seed=0):
    """Random projected Gaussians: SPD 2D covariances, 3-sigma radii, depths with ties, some culled."""
    g = torch.Generator().manual_seed(seed)
    means2d = torch.rand(C, N, 2, generator=g, dtype=dtype) * torch.tensor([width * 1.2, height * 1.2], dtype=dtype)
    means2d -= torch.tensor([width * 0.1, height * 0.1], dtype=dtype)  # some centres off-screen
    factor = torch.rand(C, N, 2, 2, generator=g, dtype=dtype) * 3 + 0.3
    cov = factor @ factor.transpose(-1, -2) + 0.3 * torch.eye(2, dtype=dtype)
    inverse = torch.linalg.inv(cov)
    conics = torch.stack([inverse[..., 0, 0], inverse[..., 0, 1], inverse[..., 1, 1]], -1)
    lo, hi = opacity
    opacities = lo + (hi - lo) * torch.rand(C, N, generator=g, dtype=dtype)
    colors = torch.randn(C, N, D, generator=g, dtype=dtype)
    radius = torch.ceil(3 * torch.linalg.eigvalsh(cov)[..., -1].sqrt()).to(torch.int32)
    radius[:, ::7] = 0  # culled
    radii = radius[..., None].expand(C, N, 2).contiguous()
    depths = 1 + 5 * torch.rand(C, N, generator=g, dtype=dtype)
    depths[:, : N // 10] = 2.5  # equal depths: ties must keep Gaussian order
    return means2d, conics, colors, opacities, radii, depths


def bin_reference(means2d, radii, depths, width, height):
    tile_width, tile_height = tiles.tile_grid(width, height, TILE)
    _, isect_ids, flatten_ids = tiles.isect_tiles(means2d, radii, depths, TILE, tile_width, tile_height)
    offsets = tiles.isect_offset_encode(isect_ids, means2d.shape[0], tile_width, tile_height)
    return offsets, flatten_ids


def composite_both(means2d, conics, colors, opacities, backgrounds, offsets, flatten_ids, width, height, geometry):
    """(reference, native) outputs and the gradients of one random linear loss of render and alpha."""
    results = []
    upstream = None
    for fn in (compositing.rasterize_to_pixels, native.rasterize_to_pixels_native):
        inputs = [t.detach().clone().requires_grad_() if t is not None else None
                  for t in (means2d, conics, colors, opacities, backgrounds)]
        render, alpha = fn(*inputs[:4], width, height, TILE, offsets, flatten_ids, inputs[4], geometry)
        if upstream is None:
            gen = torch.Generator().manual_seed(1)
            upstream = (torch.randn(render.shape, generator=gen, dtype=render.dtype),
                        torch.randn(alpha.shape, generator=gen, dtype=alpha.dtype))
        ((render * upstream[0]).sum() + (alpha * upstream[1]).sum()).backward()
        results.append((render.detach(), alpha.detach(), [t.grad if t is not None else None for t in inputs]))
    return results


def assert_grads_close(ref_grads, nat_grads, rtol):
    for name, ref, nat in zip(("means2d", "conics", "colors", "opacities", "backgrounds"), ref_grads, nat_grads):
        if ref is None:
            assert nat is None
            continue
        scale = ref.abs().max().clamp(min=1e-12)
        assert ((nat - ref).abs().max() / scale) < rtol, f"{name}: {(nat - ref).abs().max()} vs scale {scale}"


def test_isect_tiles_equal_reference_including_ties_and_culling():
    means2d, _, _, _, radii, depths = splats_2d(C=3, N=300)
    tile_width, tile_height = tiles.tile_grid(45, 37, TILE)
    want = tiles.isect_tiles(means2d, radii, depths, TILE, tile_width, tile_height)
    got = native.isect_tiles_native(means2d, radii, depths, TILE, tile_width, tile_height)
    for w, g in zip(want, got):
        assert w.dtype == g.dtype and torch.equal(w, g)
    assert int(got[0][:, ::7].sum()) == 0  # culled Gaussians touch no tile
    offsets_want = tiles.isect_offset_encode(want[1], 3, tile_width, tile_height)
    offsets_got = native.isect_offset_encode_native(got[1], 3, tile_width, tile_height)
    assert torch.equal(offsets_want, offsets_got)


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_isect_tiles_parallel_buckets_equal_reference(threads):
    # 2 x 10k Gaussians: above the kernel's parallel threshold, so the binning splits them into one chunk
    # per thread (each chunk writes its own part of every tile's bucket), and buckets of thousands of
    # entries go through the radix sort; equal depths must still keep ascending Gaussian order.
    means2d, _, _, _, radii, depths = splats_2d(C=2, N=10_000)
    depths[:, 5000:5600] = 4.0
    tile_width, tile_height = tiles.tile_grid(45, 37, TILE)
    want = tiles.isect_tiles(means2d, radii, depths, TILE, tile_width, tile_height)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        got = native.isect_tiles_native(means2d, radii, depths, TILE, tile_width, tile_height)
        offsets_got = native.isect_offset_encode_native(got[1], 2, tile_width, tile_height)
    finally:
        torch.set_num_threads(before)
    assert want[1].numel() > 20_000
    for w, g in zip(want, got):
        assert w.dtype == g.dtype and torch.equal(w, g)
    assert torch.equal(tiles.isect_offset_encode(want[1], 2, tile_width, tile_height), offsets_got)


def test_isect_with_no_intersections():
    means2d, _, _, _, radii, depths = splats_2d(C=2, N=20)
    counts, ids, flat = native.isect_tiles_native(means2d, torch.zeros_like(radii), depths, TILE, 3, 3)
    assert counts.shape == (2, 20) and int(counts.sum()) == 0 and ids.numel() == 0 and flat.numel() == 0
    offsets = native.isect_offset_encode_native(ids, 2, 3, 3)
    assert offsets.shape == (2, 3, 3) and int(offsets.abs().sum()) == 0


@pytest.mark.parametrize("channels", [1, 3, 16, 33, 128])
def test_compositing_matches_reference(channels):
    width, height = 45, 37  # border tiles are partial
    means2d, conics, colors, opacities, radii, depths = splats_2d(D=channels, width=width, height=height)
    offsets, flatten_ids = bin_reference(means2d, radii, depths, width, height)
    backgrounds = torch.rand(2, channels)
    (r_ref, a_ref, g_ref), (r_nat, a_nat, g_nat) = composite_both(
        means2d, conics, colors, opacities, backgrounds, offsets, flatten_ids, width, height, channels)
    torch.testing.assert_close(r_nat, r_ref, rtol=1e-5, atol=2e-5)
    torch.testing.assert_close(a_nat, a_ref, rtol=1e-5, atol=2e-6)
    assert_grads_close(g_ref, g_nat, rtol=2e-4)


@pytest.mark.parametrize("tile_size", [5, 8])
def test_other_tile_sizes_match_reference(tile_size):
    # 5x5 = 25 pixels is not a whole number of SIMD lane blocks: padded lanes must stay inert.
    width, height = 23, 14
    means2d, conics, colors, opacities, radii, depths = splats_2d(D=7, width=width, height=height)
    tile_width, tile_height = tiles.tile_grid(width, height, tile_size)
    _, isect_ids, flatten_ids = tiles.isect_tiles(means2d, radii, depths, tile_size, tile_width, tile_height)
    offsets = tiles.isect_offset_encode(isect_ids, 2, tile_width, tile_height)
    args = (width, height, tile_size, offsets, flatten_ids, torch.rand(2, 7), 7)
    want = compositing.rasterize_to_pixels(means2d, conics, colors, opacities, *args)
    got = native.rasterize_to_pixels_native(means2d, conics, colors, opacities, *args)
    for w, g in zip(want, got):
        torch.testing.assert_close(g, w, rtol=1e-5, atol=2e-5)


def test_sub_pixel_and_elongated_splats_match_reference():
    # The kernels visit only the lane groups inside each splat's alpha >= alpha_min ellipse (plus a float
    # margin): sub-pixel splats (the 1M-Gaussian benchmark scenes) and thin rotated ones whose faint
    # borders (opacity just above alpha_min) end between pixel centres must still blend every pixel
    # the reference blends; a missed border pixel changes render by ~alpha_min * colour >> atol. float64,
    # so that no pair's alpha lies within exp's rounding of alpha_min (in float32 one pair of this scene
    # does, and blends in one implementation only).
    width, height, n = 48, 40, 400
    g = torch.Generator().manual_seed(3)

    def rand(*shape):
        return torch.rand(*shape, generator=g, dtype=torch.float64)

    means2d = rand(1, n, 2) * torch.tensor([width, height], dtype=torch.float64)
    angle = rand(1, n) * torch.pi
    rotation = torch.stack([torch.cos(angle), -torch.sin(angle), torch.sin(angle), torch.cos(angle)], -1)
    rotation = rotation.reshape(1, n, 2, 2)
    sigmas = rand(1, n, 2) * 0.8 + 0.2  # sub-pixel
    sigmas[:, ::2, 0] = 4 + 8 * rand(1, n // 2)  # every other one long and thin
    cov = rotation @ torch.diag_embed(sigmas ** 2) @ rotation.transpose(-1, -2)
    inverse = torch.linalg.inv(cov)
    conics = torch.stack([inverse[..., 0, 0], inverse[..., 0, 1], inverse[..., 1, 1]], -1).contiguous()
    opacities = torch.where(rand(1, n) < 0.5, 1 / 255 + 0.01 * rand(1, n), 0.05 + 0.5 * rand(1, n))
    colors = rand(1, n, 3) + 0.5
    # 4 sigma: the whole alpha >= 1/255 ellipse (at most 3.33 sigma) lies in the Gaussian's tiles.
    radius = torch.ceil(4 * sigmas.amax(-1)).to(torch.int32)
    radii = radius[..., None].expand(1, n, 2).contiguous()
    depths = rand(1, n) + 1
    offsets, flatten_ids = bin_reference(means2d, radii, depths, width, height)
    (r_ref, a_ref, g_ref), (r_nat, a_nat, g_nat) = composite_both(
        means2d, conics, colors, opacities, None, offsets, flatten_ids, width, height, 3)
    blended = compositing.count_blends(means2d, conics, opacities, width, height, TILE, offsets, flatten_ids)
    assert blended > 4 * width * height  # the scene really is covered
    torch.testing.assert_close(r_nat, r_ref, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(a_nat, a_ref, rtol=1e-9, atol=1e-9)
    assert_grads_close(g_ref, g_nat, rtol=1e-7)


def test_saturated_pixels_stop_like_reference():
    # Opaque Gaussians drive T below 1e-4: the stop rule and the backward's last index must agree.
    width, height = 32, 32
    means2d, conics, colors, opacities, radii, depths = splats_2d(
        C=1, N=200, D=5, width=width, height=height, opacity=(0.9, 0.99), dtype=torch.float64)
    offsets, flatten_ids = bin_reference(means2d, radii, depths, width, height)
    (r_ref, a_ref, g_ref), (r_nat, a_nat, g_nat) = composite_both(
        means2d, conics, colors, opacities, None, offsets, flatten_ids, width, height, 5)
    assert float(a_ref.max()) > 1 - 2e-4  # some pixels really saturate
    torch.testing.assert_close(r_nat, r_ref, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(a_nat, a_ref, rtol=1e-9, atol=1e-9)
    assert_grads_close(g_ref, g_nat, rtol=1e-7)


@pytest.mark.parametrize("geometry", [0, 3])
def test_geometry_channels_match_reference(geometry):
    width, height = 40, 24
    means2d, conics, colors, opacities, radii, depths = splats_2d(D=8, width=width, height=height)
    offsets, flatten_ids = bin_reference(means2d, radii, depths, width, height)
    (_, _, g_ref), (_, _, g_nat) = composite_both(
        means2d, conics, colors, opacities, torch.rand(2, 8), offsets, flatten_ids, width, height, geometry)
    assert_grads_close(g_ref, g_nat, rtol=2e-4)


def test_feature_channels_do_not_move_geometry():
    width, height = 32, 32
    means2d, conics, colors, opacities, radii, depths = splats_2d(C=1, D=6, width=width, height=height)
    offsets, flatten_ids = bin_reference(means2d, radii, depths, width, height)
    inputs = [t.clone().requires_grad_() for t in (means2d, conics, colors, opacities)]
    render, _ = native.rasterize_to_pixels_native(*inputs, width, height, TILE, offsets, flatten_ids,
                                                  torch.rand(1, 6), geometry_channels=3)
    render[..., 3:].square().sum().backward()  # a loss on the feature channels only
    for t in inputs[:2] + inputs[3:]:
        assert float(t.grad.abs().max()) == 0.0
    assert float(inputs[2].grad[..., 3:].abs().max()) > 0 and float(inputs[2].grad[..., :3].abs().max()) == 0


def test_empty_scene_renders_background():
    width, height = 20, 12
    colors = torch.zeros(2, 0, 4, requires_grad=True)
    means2d = torch.zeros(2, 0, 2, requires_grad=True)
    conics, opacities = torch.zeros(2, 0, 3), torch.zeros(2, 0)
    backgrounds = torch.rand(2, 4, requires_grad=True)
    offsets = torch.zeros(2, 1, 2, dtype=torch.int32)
    render, alpha = native.rasterize_to_pixels_native(means2d, conics, colors, opacities, width, height, TILE,
                                                      offsets, torch.zeros(0, dtype=torch.int32), backgrounds)
    torch.testing.assert_close(render, backgrounds[:, None, None, :].expand(2, height, width, 4))
    assert float(alpha.abs().max()) == 0
    render.sum().backward()
    torch.testing.assert_close(backgrounds.grad, torch.full((2, 4), float(width * height)))
    assert means2d.grad.shape == (2, 0, 2)


def test_projected_scene_several_cameras_float64_gradcheck():
    # Through the reference projection: Gaussians behind the camera and off-screen are culled.
    torch.manual_seed(0)
    n, width, height = 12, 16, 12
    means = torch.randn(n, 3, dtype=torch.float64) * 0.6
    means[0, 2] = -9.0  # behind the cameras
    means[1, 0] = 40.0  # off-screen
    quats = torch.randn(n, 4, dtype=torch.float64)
    scales = 0.15 + 0.2 * torch.rand(n, 3, dtype=torch.float64)
    viewmats = torch.eye(4, dtype=torch.float64).repeat(2, 1, 1)
    viewmats[:, 2, 3] = torch.tensor([4.0, 5.0], dtype=torch.float64)
    viewmats[1, 0, 3] = 0.3
    Ks = torch.tensor([[20.0, 0, 8], [0, 20.0, 6], [0, 0, 1]], dtype=torch.float64).repeat(2, 1, 1)
    radii, means2d, depths, conics, _ = project_gaussians(means, quats, scales, viewmats, Ks, width, height)
    assert int((radii[:, :2] > 0).sum()) == 0
    tile_size = 8
    tile_width, tile_height = tiles.tile_grid(width, height, tile_size)
    _, isect_ids, flatten_ids = native.isect_tiles_native(means2d.detach(), radii, depths.detach(), tile_size,
                                                          tile_width, tile_height)
    offsets = native.isect_offset_encode_native(isect_ids, 2, tile_width, tile_height)
    colors = torch.rand(2, n, 4, dtype=torch.float64, requires_grad=True)
    opacities = (0.3 + 0.6 * torch.rand(2, n, dtype=torch.float64)).requires_grad_()
    backgrounds = torch.rand(2, 4, dtype=torch.float64, requires_grad=True)

    def run(m2d, con, col, opa, bg):
        render, alpha = native.rasterize_to_pixels_native(m2d, con, col, opa, width, height, tile_size, offsets,
                                                          flatten_ids, bg, geometry_channels=4)
        return render, alpha

    inputs = (means2d.detach().requires_grad_(), conics.detach().requires_grad_(), colors, opacities, backgrounds)
    assert torch.autograd.gradcheck(run, inputs, eps=1e-6, atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda a: a.update(conics=a["conics"][..., :2]), "conics must have shape"),
        (lambda a: a.update(colors=a["colors"].half()), "colors must have dtype"),
        (lambda a: a.update(opacities=a["opacities"].double()), "opacities must have dtype"),
        (lambda a: a["colors"].__setitem__((0, 0, 0), float("nan")), "non-finite"),
        (lambda a: a.update(backgrounds=torch.zeros(2, 5)), "backgrounds must have shape"),
        (lambda a: a.update(geometry_channels=9), "geometry_channels"),
        (lambda a: a.update(isect_offsets=a["isect_offsets"][..., :1]), "isect_offsets must have shape"),
        (lambda a: a.update(tile_size=0), "tile_size"),
        # ids and offsets out of range read outside the buffers (a segfault before these checks)
        (lambda a: a["flatten_ids"].__setitem__(0, 10 ** 8), "flatten_ids must index"),
        (lambda a: a["flatten_ids"].__setitem__(0, -5), "flatten_ids must index"),
        (lambda a: a["isect_offsets"].view(-1).__setitem__(1, 10 ** 7), "isect_offsets must be non-decreasing"),
        (lambda a: a["isect_offsets"].view(-1).__setitem__(0, -1), "isect_offsets must be non-decreasing"),
    ],
)
def test_rasterize_rejects_bad_input(change, message):
    width, height = 20, 12
    means2d, conics, colors, opacities, radii, depths = splats_2d(D=4, width=width, height=height)
    offsets, flatten_ids = bin_reference(means2d, radii, depths, width, height)
    args = dict(means2d=means2d, conics=conics, colors=colors, opacities=opacities, width=width, height=height,
                tile_size=TILE, isect_offsets=offsets, flatten_ids=flatten_ids, backgrounds=torch.zeros(2, 4),
                geometry_channels=4)
    change(args)
    with pytest.raises(ValueError, match=message):
        native.rasterize_to_pixels_native(**args)


def test_missing_compiler_gives_clear_error(monkeypatch):
    monkeypatch.setenv("CXX", "no-such-compiler-d3")
    with pytest.raises(native.NativeBuildError, match="no C\\+\\+ compiler found"):
        native._load.__wrapped__(False)


def test_isect_rejects_bad_input():
    means2d, _, _, _, radii, depths = splats_2d(D=1)
    with pytest.raises(ValueError, match="depths must have shape"):
        native.isect_tiles_native(means2d, radii, depths[:, :3], TILE, 3, 3)
    with pytest.raises(ValueError, match="tile_size"):
        native.isect_tiles_native(means2d, radii, depths, 0, 3, 3)


def native_gradients(inputs, width, height, tile_size, offsets, flatten_ids, deterministic, threads):
    """Gradients of one fixed random loss through the native compositing, on `threads` OpenMP threads."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        leaves = [t.detach().clone().requires_grad_() for t in inputs]
        render, alpha = native.rasterize_to_pixels_native(*leaves, width, height, tile_size, offsets, flatten_ids,
                                                          deterministic=deterministic)
        gen = torch.Generator().manual_seed(3)
        ((render * torch.randn(render.shape, generator=gen)).sum() + alpha.sum()).backward()
    finally:
        torch.set_num_threads(before)
    return [t.grad for t in leaves]


@pytest.mark.parametrize("channels, tile_size, size", [(16, TILE, 96), (128, 2, 64)])
def test_deterministic_backward_is_bitwise_equal_for_any_thread_count(channels, tile_size, size):
    # (16, TILE): one chunk; (128, 2): ~10^5 intersections of 134 values exceed the kernel's row buffer,
    # so its chunk boundaries are crossed. Deterministic gradients are the single-threaded atomic ones.
    means2d, conics, colors, opacities, radii, depths = splats_2d(C=2, N=400, D=channels, width=size, height=size)
    tile_width, tile_height = tiles.tile_grid(size, size, tile_size)
    _, isect_ids, flatten_ids = native.isect_tiles_native(means2d, radii, depths, tile_size, tile_width, tile_height)
    offsets = native.isect_offset_encode_native(isect_ids, 2, tile_width, tile_height)
    assert flatten_ids.numel() * tile_size ** 2 >= 1 << 16  # enough work for the kernel to use every thread
    args = ((means2d, conics, colors, opacities), size, size, tile_size, offsets, flatten_ids)
    serial = native_gradients(*args, deterministic=False, threads=1)
    for threads in (1, 2, 3):
        got = native_gradients(*args, deterministic=True, threads=threads)
        for want, have in zip(serial, got):
            assert torch.equal(want, have), f"{threads} threads"
    atomic = native_gradients(*args, deterministic=False, threads=3)  # other summation order: close only
    for want, have in zip(serial, atomic):
        torch.testing.assert_close(have, want, rtol=1e-4, atol=1e-4 * float(want.abs().max()))


def test_deterministic_default_and_option():
    assert native.deterministic_backward("cpu") and not native.deterministic_backward("cpu", False)
    assert not native.deterministic_backward("cuda") and native.deterministic_backward("cuda", True)
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        assert native.deterministic_backward("cuda")
    finally:
        torch.use_deterministic_algorithms(previous)
