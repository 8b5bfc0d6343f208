"""Spherical harmonics: against gsplat's torch reference, closed forms, gradients."""
import pytest
import torch
from gsplat.cuda._torch_impl import _spherical_harmonics

from distill3d.render.sh import SH_C0, SH_C1, sh_basis, sh_colors, spherical_harmonics


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_sh_matches_gsplat(degree):
    dirs = torch.randn(500, 3, dtype=torch.float64) * 2  # unnormalised: both normalise inside
    coeffs = torch.randn(500, 16, 3, dtype=torch.float64)
    torch.testing.assert_close(spherical_harmonics(degree, dirs, coeffs), _spherical_harmonics(degree, dirs, coeffs))


def test_sh_basis_closed_form_and_orthonormality():
    """Degree 0/1 in closed form; the basis is orthonormal on the sphere (Monte Carlo check)."""
    dirs = torch.nn.functional.normalize(torch.randn(200_000, 3, dtype=torch.float64), dim=-1)
    basis = sh_basis(3, dirs)
    x, y, z = dirs.unbind(-1)
    torch.testing.assert_close(basis[:, :4], torch.stack([torch.full_like(x, SH_C0), -SH_C1 * y, SH_C1 * z, -SH_C1 * x], -1))
    gram = 4 * torch.pi * basis.T @ basis / len(dirs)
    torch.testing.assert_close(gram, torch.eye(16, dtype=torch.float64), atol=0.03, rtol=0)


def test_sh_gradcheck_and_view_dependent_colors():
    dirs = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    coeffs = torch.randn(5, 16, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda d, c: spherical_harmonics(3, d, c), (dirs, coeffs))
    # Degree 0 gives the same colour from every camera: C0 * k0 + 0.5.
    means = torch.randn(4, 3)
    coeffs = torch.randn(4, 1, 3) * 0.1
    viewmats = torch.eye(4)[None].repeat(3, 1, 1)
    viewmats[:, :3, 3] = torch.randn(3, 3)
    colors = sh_colors(0, means, coeffs, viewmats)
    torch.testing.assert_close(colors, (SH_C0 * coeffs[:, 0] + 0.5).clamp(min=0).expand(3, 4, 3))


def test_sh_rejects_too_few_coefficients():
    with pytest.raises(ValueError, match="needs 16 coefficients"):
        spherical_harmonics(3, torch.randn(2, 3), torch.randn(2, 9, 3))
    with pytest.raises(ValueError, match="sh_degree must be in"):
        sh_basis(4, torch.randn(2, 3))
