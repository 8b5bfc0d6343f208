"""Projection stage: against gsplat's own torch reference, the contract's radius/culling rule, gradcheck."""
import math

import pytest
import torch
from gsplat.cuda._torch_impl import _fully_fused_projection, _quat_scale_to_covar_preci

from distill3d.render.projection import RADIUS_SIGMAS, covariance_3d, project_gaussians, quat_to_rotmat


def _scene(n=300, dtype=torch.float32):
    means = torch.randn(n, 3, dtype=dtype) * 2.0  # some behind the camera, some off-screen
    quats = torch.randn(n, 4, dtype=dtype) * 3.0  # not normalised: normalised inside
    scales = torch.rand(n, 3, dtype=dtype) * 0.3 + 0.01
    viewmats = torch.eye(4, dtype=dtype)[None].repeat(2, 1, 1)
    viewmats[:, 2, 3] = 5.0
    viewmats[1, :3, :3] = torch.tensor([[0.8, 0.0, 0.6], [0.0, 1.0, 0.0], [-0.6, 0.0, 0.8]], dtype=dtype)
    Ks = torch.tensor([[[90.0, 0, 33.0], [0, 80.0, 20.0], [0, 0, 1]], [[60.0, 0, 30.0], [0, 60.0, 24.0], [0, 0, 1]]], dtype=dtype)
    return means, quats, scales, viewmats, Ks


def test_rotation_is_orthonormal_and_covariance_matches_gsplat():
    quats = torch.randn(50, 4)
    rot = quat_to_rotmat(torch.nn.functional.normalize(quats, dim=-1))
    torch.testing.assert_close(rot @ rot.transpose(-1, -2), torch.eye(3).expand(50, 3, 3), atol=1e-5, rtol=0)
    scales = torch.rand(50, 3) + 0.1
    expected = _quat_scale_to_covar_preci(quats, scales, compute_preci=False)[0]
    torch.testing.assert_close(covariance_3d(quats, scales), expected, atol=1e-5, rtol=1e-5)


def test_projection_matches_gsplat_reference():
    means, quats, scales, viewmats, Ks = _scene()
    radii, means2d, depths, conics, comps = project_gaussians(means, quats, scales, viewmats, Ks, 64, 48)
    covars = _quat_scale_to_covar_preci(quats, scales, compute_preci=False)[0]
    g_radii, g_means2d, g_depths, g_conics, g_comps = _fully_fused_projection(
        means, covars, viewmats, Ks, 64, 48, calc_compensations=True
    )
    visible = radii[..., 0] > 0
    assert visible.sum() > 50 and (~visible).sum() > 50  # both cases exercised
    torch.testing.assert_close(depths, g_depths)
    torch.testing.assert_close(means2d[visible], g_means2d[visible], rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(conics[visible], g_conics[visible], rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(comps[visible], g_comps[visible], rtol=1e-4, atol=1e-6)
    # gsplat 1.5 uses ceil(3.33 sqrt(Sigma_xx)) per axis; the visible sets nearly agree.
    assert ((g_radii[..., 0] > 0) != visible).float().mean() < 0.05


def test_radius_and_culling_rule():
    means, quats, scales, viewmats, Ks = _scene(dtype=torch.float64)
    width, height, near, far = 64, 48, 0.5, 7.0
    radii, means2d, depths, conics, _ = project_gaussians(
        means, quats, scales, viewmats, Ks, width, height, near_plane=near, far_plane=far
    )
    a, b, c = conics.unbind(-1)
    det = a * c - b * b
    cov = torch.stack([c / det, -b / det, a / det], dim=-1)  # inverse of the conic = Sigma_2D
    lam = 0.5 * (cov[..., 0] + cov[..., 2]) + torch.sqrt(0.25 * (cov[..., 0] - cov[..., 2]) ** 2 + cov[..., 1] ** 2)
    r = torch.ceil(RADIUS_SIGMAS * torch.sqrt(lam))
    in_depth = (depths > near) & (depths < far)
    on_screen = (means2d[..., 0] + r > 0) & (means2d[..., 0] - r < width) & (means2d[..., 1] + r > 0) & (means2d[..., 1] - r < height)
    expected = torch.where(in_depth & on_screen, r, torch.zeros_like(r))
    assert (depths <= near).any() and (depths >= far).any() and (in_depth & ~on_screen).any()
    assert torch.equal(radii[..., 0].double(), expected) and torch.equal(radii[..., 0], radii[..., 1])
    assert radii.dtype == torch.int32


def test_hand_computed_isotropic_projection():
    """Isotropic sigma at depth z on the optical axis: Sigma_2D = (f sigma / z)^2 + eps2d."""
    f, z, sigma, eps2d = 50.0, 4.0, 0.2, 0.3
    means = torch.tensor([[0.0, 0.0, z]], dtype=torch.float64)
    quats = torch.tensor([[1.0, 0.0, 0.0, 0.0]], dtype=torch.float64)
    scales = torch.full((1, 3), sigma, dtype=torch.float64)
    viewmats = torch.eye(4, dtype=torch.float64)[None]
    Ks = torch.tensor([[[f, 0, 16.0], [0, f, 12.0], [0, 0, 1]]], dtype=torch.float64)
    radii, means2d, depths, conics, comps = project_gaussians(means, quats, scales, viewmats, Ks, 32, 24, eps2d=eps2d)
    var = (f * sigma / z) ** 2 + eps2d
    torch.testing.assert_close(means2d[0, 0], torch.tensor([16.0, 12.0], dtype=torch.float64))
    torch.testing.assert_close(conics[0, 0], torch.tensor([1 / var, 0.0, 1 / var], dtype=torch.float64))
    assert radii[0, 0, 0].item() == math.ceil(3 * math.sqrt(var))
    torch.testing.assert_close(comps[0, 0].item(), (var - eps2d) / var)


def test_projection_gradcheck():
    means, quats, scales, viewmats, Ks = _scene(n=6, dtype=torch.float64)
    means = means * 0.3  # all in front and on screen, away from the culling discontinuities
    inputs = tuple(t.clone().requires_grad_(True) for t in (means, quats, scales))

    def outputs(m, q, s):
        _, means2d, depths, conics, comps = project_gaussians(m, q, s, viewmats, Ks, 64, 48)
        return means2d, depths, conics, comps

    assert torch.autograd.gradcheck(outputs, inputs)


def test_culled_gaussians_get_finite_zero_gradients():
    """A Gaussian exactly in the camera plane (t_z = 0) must not poison gradients with NaN."""
    means = torch.tensor([[0.0, 0.0, -5.0], [0.1, 0.0, 0.0]], requires_grad=True)
    quats = torch.tensor([[1.0, 0, 0, 0], [1.0, 0, 0, 0]])
    scales = torch.full((2, 3), 0.1)
    viewmats = torch.eye(4)[None].clone()
    viewmats[0, 2, 3] = 5.0
    Ks = torch.tensor([[[50.0, 0, 16], [0, 50.0, 16], [0, 0, 1]]])
    radii, means2d, depths, conics, _ = project_gaussians(means, quats, scales, viewmats, Ks, 32, 32)
    assert radii[0, 0, 0] == 0  # t_z = 0 -> culled
    (means2d.sum() + conics.sum()).backward()
    assert torch.isfinite(means.grad).all() and means.grad[0].abs().sum() == 0


@pytest.mark.parametrize(
    "bad, message",
    [
        (dict(scales=torch.zeros(3, 3)), "scales must be > 0"),
        (dict(quats=torch.zeros(3, 4)), "zero-norm"),
        (dict(means=torch.full((3, 3), float("nan"))), "means has 9 non-finite"),
        (dict(means=torch.zeros(4, 3)), "number of Gaussians"),
        (dict(Ks=torch.eye(3)[None].repeat(2, 1, 1)), "number of cameras"),
    ],
)
def test_projection_rejects_bad_input(bad, message):
    args = dict(
        means=torch.zeros(3, 3), quats=torch.tensor([[1.0, 0, 0, 0]]).repeat(3, 1), scales=torch.ones(3, 3),
        viewmats=torch.eye(4)[None], Ks=torch.eye(3)[None],
    )
    args.update(bad)
    with pytest.raises(ValueError, match=message):
        project_gaussians(width=8, height=8, **args)
