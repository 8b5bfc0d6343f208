"""Native EWA projection (csrc projection kernels) against the torch reference, values and gradients.

Both compute the same formulas in the same order per (camera, Gaussian), so float32 values agree to
float rounding (~1e-6 relative) and the integer radii and culling masks agree exactly; float64 passes
gradcheck.
"""
import importlib
import math

import pytest
import torch

from distill3d.render import native
from distill3d.render.projection import project_gaussians
from distill3d.render.random_scene import look_at_viewmat

WIDTH, HEIGHT = 64, 48
NEAR, FAR = 0.5, 7.0


@pytest.fixture(scope="module", autouse=True)
def _built():
    assert native.native_available("cpu"), native.native_build_error()


def scene(N=600, C=3, dtype=torch.float32, seed=0):
    """Gaussians spread wide around three cameras: some behind a camera, beyond the far plane,
    off-screen (with clamped Jacobians), plus raw (unnormalised) quaternions."""
    g = torch.Generator().manual_seed(seed)
    means = (torch.rand(N, 3, generator=g, dtype=torch.float64) * 2 - 1) * torch.tensor([6.0, 4.0, 6.0], dtype=torch.float64)
    quats = torch.randn(N, 4, generator=g, dtype=torch.float64) * 2
    scales = 0.05 * torch.exp(0.8 * torch.randn(N, 3, generator=g, dtype=torch.float64))
    viewmats = torch.stack([
        look_at_viewmat(torch.tensor([4 * math.sin(a), 0.5, -4 * math.cos(a)], dtype=torch.float64),
                        torch.zeros(3, dtype=torch.float64), torch.tensor([0.0, -1.0, 0.0], dtype=torch.float64))
        for a in torch.linspace(0, 1.2, C).tolist()
    ])
    Ks = torch.tensor([[70.0, 0, 31.0], [0, 65.0, 25.0], [0, 0, 1]], dtype=torch.float64).repeat(C, 1, 1)
    Ks[1:, 0, 0] = 90.0  # cameras with different intrinsics
    return [t.to(dtype) for t in (means, quats, scales, viewmats, Ks)]


def project_both(means, quats, scales, viewmats, Ks, upstream_seed=1):
    """(reference, native) outputs and the gradients of a random linear loss of every float output."""
    results = []
    upstream = None
    for fn in (project_gaussians, native.project_gaussians_native):
        inputs = [t.detach().clone().requires_grad_() for t in (means, quats, scales)]
        outputs = fn(*inputs, viewmats, Ks, WIDTH, HEIGHT, near_plane=NEAR, far_plane=FAR)
        if upstream is None:
            gen = torch.Generator().manual_seed(upstream_seed)
            upstream = [torch.randn(o.shape, generator=gen, dtype=o.dtype) for o in outputs[1:]]
        sum((o * u).sum() for o, u in zip(outputs[1:], upstream)).backward()
        results.append(([o.detach() for o in outputs], [t.grad for t in inputs]))
    return results


def test_scene_covers_every_culling_case():
    means, _, _, viewmats, _ = scene()
    depth = torch.einsum("cij,nj->cni", viewmats[:, :3, :3], means)[..., 2] + viewmats[:, None, 2, 3]
    assert bool((depth < 0).any()) and bool((depth >= FAR).any())
    radii = project_gaussians(*scene(), WIDTH, HEIGHT, near_plane=NEAR, far_plane=FAR)[0]
    in_depth = (depth > NEAR) & (depth < FAR)
    assert bool((in_depth & (radii[..., 0] == 0)).any()), "no off-screen Gaussian in the test scene"
    assert bool((radii[..., 0] > 0).any())


def test_projection_values_match_reference():
    (want, _), (got, _) = project_both(*scene())
    assert got[0].dtype == torch.int32 and got[0].shape == (3, 600, 2)
    assert torch.equal(got[0], want[0])
    for name, w, g in zip(("means2d", "depths", "conics", "compensations"), want[1:], got[1:]):
        assert g.shape == w.shape and g.dtype == w.dtype, name
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-5 * float(w.abs().max()), msg=name)


@pytest.mark.parametrize("seed", [0, 1])
def test_projection_gradients_match_reference(seed):
    (_, want), (_, got) = project_both(*scene(seed=seed), upstream_seed=seed + 1)
    for name, w, g in zip(("means", "quats", "scales"), want, got):
        scale = w.abs().max().clamp(min=1e-12)
        assert float((g - w).abs().max() / scale) < 1e-4, f"{name}: {(g - w).abs().max()} vs scale {scale}"


def test_projection_float64_matches_reference_and_gradcheck():
    (want, want_grads), (got, got_grads) = project_both(*scene(N=200, dtype=torch.float64))
    assert torch.equal(got[0], want[0])
    for w, g in zip(want[1:] + want_grads, got[1:] + got_grads):
        torch.testing.assert_close(g, w, rtol=1e-9, atol=1e-9 * float(w.abs().max()))

    means, quats, scales, viewmats, Ks = scene(N=12, C=2, dtype=torch.float64, seed=3)
    radii = native.project_gaussians_native(means, quats, scales, viewmats, Ks, WIDTH, HEIGHT,
                                            near_plane=NEAR, far_plane=FAR)[0]
    assert bool((radii > 0).any())

    def float_outputs(m, q, s):
        return native.project_gaussians_native(m, q, s, viewmats, Ks, WIDTH, HEIGHT, near_plane=NEAR, far_plane=FAR)[1:]

    inputs = [t.clone().requires_grad_() for t in (means, quats, scales)]
    assert torch.autograd.gradcheck(float_outputs, inputs, eps=1e-6, atol=1e-6)


def test_camera_gradients_come_from_the_reference():
    means, quats, scales, viewmats, Ks = scene(N=100, dtype=torch.float64)
    grads = []
    for fn in (project_gaussians, native.project_gaussians_native):
        view = viewmats.clone().requires_grad_()
        outputs = fn(means, quats, scales, view, Ks, WIDTH, HEIGHT, near_plane=NEAR, far_plane=FAR)
        (outputs[1].sum() + outputs[3].sum()).backward()
        grads.append(view.grad)
    torch.testing.assert_close(grads[1], grads[0])


def test_empty_scene():
    means, quats, scales, viewmats, Ks = scene(N=0)
    radii, means2d, depths, conics, compensations = native.project_gaussians_native(
        means, quats, scales, viewmats, Ks, WIDTH, HEIGHT)
    assert radii.shape == (3, 0, 2) and means2d.shape == (3, 0, 2) and conics.shape == (3, 0, 3)
    assert depths.shape == compensations.shape == (3, 0)


def test_native_backend_uses_native_projection():
    rasterize_module = importlib.import_module("distill3d.render.rasterize")  # the package exports the function
    assert rasterize_module._stage_functions("native")[0] is native.project_gaussians_native_unchecked


def test_bad_inputs_raise_clear_errors():
    means, quats, scales, viewmats, Ks = scene(N=5)
    with pytest.raises(ValueError, match="means"):
        native.project_gaussians_native(means[:, :2], quats, scales, viewmats, Ks, WIDTH, HEIGHT)
    with pytest.raises(ValueError, match="quats"):
        native.project_gaussians_native(means, torch.zeros_like(quats), scales, viewmats, Ks, WIDTH, HEIGHT)
    with pytest.raises(ValueError, match="scales"):
        native.project_gaussians_native(means, quats, -scales, viewmats, Ks, WIDTH, HEIGHT)
    with pytest.raises(ValueError, match="Ks"):
        native.project_gaussians_native(means, quats, scales, viewmats, Ks[:2], WIDTH, HEIGHT)
    with pytest.raises(ValueError, match="eps2d"):
        native.project_gaussians_native(means, quats, scales, viewmats, Ks, WIDTH, HEIGHT, eps2d=-1.0)
    with pytest.raises(ValueError, match="near_plane"):
        native.project_gaussians_native(means, quats, scales, viewmats, Ks, WIDTH, HEIGHT, near_plane=2.0, far_plane=1.0)
