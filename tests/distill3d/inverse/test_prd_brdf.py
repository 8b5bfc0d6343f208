"""GGX / Cook-Torrance BRDF and the split-sum BRDF table against analytic values and quadrature."""
import math

import pytest
import torch

from distill3d.inverse.brdf import (base_reflectance, cook_torrance, fresnel_schlick, ggx_distribution, smith_g1,
                                    smith_k)
from distill3d.inverse.brdf_lut import (BRDFLutConfig, brdf_lut, compute_brdf_lut, hammersley, integrate_brdf,
                                        lookup_brdf_lut)


def hemisphere_grid(n_theta=400, n_phi=400):
    """Midpoint quadrature over the upper hemisphere: directions [T, P, 3] and their solid angles [T, P]."""
    theta = (torch.arange(n_theta, dtype=torch.float64) + 0.5) * (math.pi / 2 / n_theta)
    phi = (torch.arange(n_phi, dtype=torch.float64) + 0.5) * (2 * math.pi / n_phi)
    t, p = torch.meshgrid(theta, phi, indexing="ij")
    dirs = torch.stack([t.sin() * p.cos(), t.sin() * p.sin(), t.cos()], -1)
    return dirs, t.sin() * (math.pi / 2 / n_theta) * (2 * math.pi / n_phi)


@pytest.mark.parametrize("roughness", [0.3, 0.5, 0.8, 1.0])
def test_ggx_distribution_has_unit_projected_area(roughness):
    theta = (torch.arange(200_000, dtype=torch.float64) + 0.5) * (math.pi / 2 / 200_000)
    d = ggx_distribution(theta.cos(), torch.tensor(roughness, dtype=torch.float64))
    integral = 2 * math.pi * (d * theta.cos() * theta.sin()).sum() * (math.pi / 2 / 200_000)
    assert float(integral) == pytest.approx(1.0, abs=1e-3)


def test_ggx_peak_value():
    # D(n.h = 1) = 1 / (pi alpha^2)
    r = torch.tensor(0.5, dtype=torch.float64)
    assert float(ggx_distribution(torch.tensor(1.0, dtype=torch.float64), r)) == pytest.approx(1 / (math.pi * 0.0625))


def test_fresnel_and_base_reflectance():
    f0 = torch.tensor([0.04, 0.5, 1.0])
    assert torch.allclose(fresnel_schlick(torch.tensor(1.0), f0), f0)
    assert torch.allclose(fresnel_schlick(torch.tensor(0.0), f0), torch.ones(3))
    albedo = torch.tensor([0.9, 0.5, 0.1])
    assert torch.allclose(base_reflectance(albedo, torch.tensor(0.0)), torch.full((3,), 0.04))
    assert torch.allclose(base_reflectance(albedo, torch.tensor(1.0)), albedo)
    assert torch.allclose(base_reflectance(albedo, torch.tensor(0.5)), (albedo + 0.04) / 2)


def test_smith_terms():
    k = smith_k(torch.tensor(0.6), "ibl")
    assert float(k) == pytest.approx(0.36 / 2)
    assert float(smith_k(torch.tensor(0.6), "direct")) == pytest.approx(1.6 ** 2 / 8)
    assert float(smith_g1(torch.tensor(1.0), k)) == pytest.approx(1.0)
    assert float(smith_g1(torch.tensor(0.0), k)) == 0.0
    with pytest.raises(ValueError, match="light"):
        smith_k(torch.tensor(0.5), "sun")


def test_cook_torrance_reciprocity_and_lambert():
    g = torch.Generator().manual_seed(0)
    n = torch.tensor([[0.0, 0.0, 1.0]]).expand(64, 3)
    v = torch.nn.functional.normalize(torch.randn(64, 3, generator=g).abs() + 0.1, dim=-1)
    l = torch.nn.functional.normalize(torch.randn(64, 3, generator=g).abs() + 0.1, dim=-1)
    albedo, r, m = torch.rand(64, 3, generator=g), torch.rand(64, 1, generator=g) * 0.8 + 0.2, torch.rand(64, 1, generator=g)
    assert torch.allclose(cook_torrance(n, v, l, albedo, r, m), cook_torrance(n, l, v, albedo, r, m), atol=1e-5)
    # a light below the horizon contributes nothing
    assert torch.all(cook_torrance(n, v, -l, albedo, r, m) == 0)


@pytest.mark.parametrize("n_dot_v,roughness", [(0.9, 0.4), (0.5, 0.7), (0.3, 1.0)])
def test_lut_matches_hemisphere_quadrature_of_the_brdf(n_dot_v, roughness):
    """F0 A + B at F0 = 1 and at F0 = 0 against brute-force hemisphere quadrature of cook_torrance."""
    dirs, solid = hemisphere_grid()
    n = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64).expand_as(dirs)
    v = torch.tensor([math.sqrt(1 - n_dot_v ** 2), 0.0, n_dot_v], dtype=torch.float64).expand_as(dirs)
    r = torch.full(dirs.shape[:-1] + (1,), roughness, dtype=torch.float64)

    def directional_albedo(f0: float) -> float:
        # metallic = 1 and albedo = F0 make cook_torrance purely specular with that F0
        f = cook_torrance(n, v, dirs, torch.full_like(dirs, f0), r, torch.ones_like(r), light="ibl")[..., 0]
        return float((f * dirs[..., 2] * solid).sum())

    a, b = integrate_brdf(torch.tensor(n_dot_v), torch.tensor(roughness), 4096).tolist()
    assert directional_albedo(1.0) == pytest.approx(a + b, rel=0.02)
    assert directional_albedo(0.0) == pytest.approx(b, rel=0.05, abs=2e-3)


def test_lut_white_furnace_smooth_surfaces():
    table = compute_brdf_lut(BRDFLutConfig(resolution=16, num_samples=256))
    smooth = table[4:, 0].sum(-1)  # n.v >= 0.28, roughness 1/32
    assert torch.all(smooth > 0.97) and torch.all(smooth < 1.001)
    # rough surfaces lose energy to single scattering (no multiple bounces): A + B falls
    assert torch.all(table[:, -1].sum(-1) < table[:, 0].sum(-1))


def test_lut_lookup_and_cache(tmp_path):
    config = BRDFLutConfig(resolution=8, num_samples=64)
    table = brdf_lut(config, tmp_path)
    assert (tmp_path / "lut_8_64.pt").is_file()
    assert torch.equal(torch.load(tmp_path / "lut_8_64.pt"), table)
    centres = (torch.arange(8) + 0.5) / 8
    i, j = torch.tensor([1, 5, 7]), torch.tensor([0, 3, 6])
    assert torch.allclose(lookup_brdf_lut(table, centres[i], centres[j]), table[i, j], atol=1e-6)
    mid = lookup_brdf_lut(table, centres[2:3], (centres[3:4] + centres[4:5]) / 2)
    assert torch.allclose(mid[0], (table[2, 3] + table[2, 4]) / 2, atol=1e-6)


def test_hammersley_points():
    xi = hammersley(8)
    assert torch.allclose(xi[:, 1], torch.tensor([0, 0.5, 0.25, 0.75, 0.125, 0.625, 0.375, 0.875], dtype=torch.float64))
