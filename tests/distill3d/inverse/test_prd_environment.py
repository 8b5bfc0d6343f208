"""Cube-map light, SH irradiance, pre-filtering and split-sum shading: analytic values and gradients."""
import math

import numpy as np
import pytest
import torch

from distill3d.data.environment import EnvironmentConfig, sun_direction, synthesize_environment
from distill3d.inverse.brdf_lut import BRDFLutConfig, compute_brdf_lut
from distill3d.inverse.cubemap import (EnvironmentMap, direction_to_cube, equirect_to_cube, sample_cube,
                                       texel_directions, texel_solid_angles)
from distill3d.inverse.prefilter import PrefilterConfig, prefilter_levels, prefilter_matrix, sample_prefiltered
from distill3d.inverse.shading import prepare_light, reflect, shade
from distill3d.inverse.sh_irradiance import project_sh, sh_irradiance


def random_dirs(n, seed=0):
    return torch.nn.functional.normalize(torch.randn(n, 3, generator=torch.Generator().manual_seed(seed)), dim=-1)


def test_texel_geometry():
    omega = texel_solid_angles(7, torch.float64)
    assert float(omega.sum()) == pytest.approx(4 * math.pi, rel=1e-12)
    dirs = texel_directions(7)
    assert torch.allclose(dirs.norm(dim=-1), torch.ones(6, 7, 7))
    # corner texels subtend less than centre texels
    assert omega[0, 0, 0] < omega[0, 3, 3]


def test_axis_directions_hit_face_centres():
    axes = torch.cat([torch.eye(3), -torch.eye(3)])[[0, 3, 1, 4, 2, 5]]  # +X -X +Y -Y +Z -Z
    face, u, v = direction_to_cube(axes)
    assert face.tolist() == [0, 1, 2, 3, 4, 5]
    assert torch.all(u == 0) and torch.all(v == 0)
    # an odd face size has a centre texel: the lookup returns it exactly
    faces = torch.rand(6, 5, 5, 3)
    assert torch.allclose(sample_cube(faces, axes), faces[:, 2, 2])


def test_lookup_at_texel_centres_returns_texels():
    faces = torch.rand(6, 6, 6, 2)
    dirs = texel_directions(6).reshape(-1, 3)
    assert torch.allclose(sample_cube(faces, dirs), faces.reshape(-1, 2), atol=1e-5)


def test_constant_environment_irradiance_is_pi_L():
    faces = torch.full((6, 8, 8, 3), 1.7)
    normals = random_dirs(50)
    assert torch.allclose(sh_irradiance(project_sh(faces), normals), torch.full((50, 3), 1.7 * math.pi), rtol=1e-5)


def test_sh_irradiance_is_exact_for_linear_light():
    # L(w) = 1 + 0.6 w_z + 0.3 w_x lies in SH bands 0-1, where order-2 irradiance is exact
    res = 24
    dirs = texel_directions(res, torch.float64)
    faces = (1 + 0.6 * dirs[..., 2:3] + 0.3 * dirs[..., 0:1]).expand(-1, -1, -1, 3).contiguous()
    normals = random_dirs(20).double()
    omega = texel_solid_angles(res, torch.float64).reshape(-1)
    flat_dirs, flat_l = dirs.reshape(-1, 3), faces.reshape(-1, 3)[:, 0]
    brute = ((normals @ flat_dirs.T).clamp(min=0) * flat_l * omega).sum(-1)
    assert torch.allclose(sh_irradiance(project_sh(faces), normals)[:, 0], brute, rtol=2e-3)


def test_prefiltered_constant_light_stays_constant():
    faces = torch.full((6, 8, 8, 3), 0.3)
    levels = prefilter_levels(faces, PrefilterConfig(num_levels=4, filtered_resolution=4))
    assert len(levels) == 4 and levels[1].shape == (6, 4, 4, 3)
    out = sample_prefiltered(levels, random_dirs(30), torch.rand(30))
    assert torch.allclose(out, torch.full((30, 3), 0.3), atol=1e-6)
    w = prefilter_matrix(8, 4, 0.5)
    assert torch.allclose(w.sum(1), torch.ones(w.shape[0]), atol=1e-5)


def test_prefiltering_blurs_more_with_roughness():
    dirs = texel_directions(8)
    faces = (dirs[..., 2:3] > 0.9).float().expand(-1, -1, -1, 3) * 10 + 0.1  # a bright cap at the zenith
    levels = prefilter_levels(faces, PrefilterConfig(num_levels=5, filtered_resolution=8))
    peaks = [float(level[..., 0].max()) for level in levels]
    spreads = [float(level[..., 0].std()) for level in levels]
    assert all(a >= b for a, b in zip(peaks, peaks[1:]))
    assert all(a > b for a, b in zip(spreads, spreads[1:]))
    # energy is conserved on average (solid-angle weighted mean radiance is close to the source's)
    omega = texel_solid_angles(8).unsqueeze(-1)
    means = [float((level * omega).sum() / omega.sum() / 3) for level in levels]
    assert means[-1] == pytest.approx(means[0], rel=0.1)


def test_shading_under_constant_light():
    lut = compute_brdf_lut(BRDFLutConfig(16, 128))
    light = prepare_light(torch.full((6, 8, 8, 3), 2.0), PrefilterConfig(3, 4))
    n = 40
    normals, albedo = random_dirs(n), torch.rand(n, 3)
    view = torch.nn.functional.normalize(normals + 0.3 * random_dirs(n, 1), dim=-1)
    roughness, metallic = torch.rand(n, 1) * 0.9 + 0.1, torch.zeros(n, 1)
    s = shade(normals, view, albedo, roughness, metallic, light, lut)
    assert torch.allclose(s.diffuse, albedo * 2.0, rtol=1e-4)  # diffuse radiance = albedo * L
    # specular under a constant light is L (F0 A + B), F0 = 0.04
    from distill3d.inverse.brdf_lut import lookup_brdf_lut
    ab = lookup_brdf_lut(lut, (normals * view).sum(-1), roughness[:, 0])
    assert torch.allclose(s.specular, 2.0 * (0.04 * ab[:, :1] + ab[:, 1:]).expand(-1, 3), rtol=1e-4)


def test_reflect_mirrors_about_normal():
    n = torch.tensor([[0.0, 0.0, 1.0]])
    assert torch.allclose(reflect(torch.tensor([[0.6, 0.0, 0.8]]), n), torch.tensor([[-0.6, 0.0, 0.8]]))


def test_gradients_reach_light_and_materials():
    env = EnvironmentMap(4, 0.7)
    lut = compute_brdf_lut(BRDFLutConfig(8, 64))
    n = 16
    albedo = torch.rand(n, 3, requires_grad=True)
    roughness = (torch.rand(n, 1) * 0.8 + 0.1).requires_grad_()
    metallic = torch.rand(n, 1).requires_grad_()
    normals = random_dirs(n)
    view = torch.nn.functional.normalize(normals + 0.5 * random_dirs(n, 2), dim=-1)
    s = shade(normals, view, albedo, roughness, metallic, prepare_light(env.radiance(), PrefilterConfig(3, 4)), lut)
    s.radiance.sum().backward()
    for name, grad in (("light", env.log_radiance.grad), ("albedo", albedo.grad), ("roughness", roughness.grad),
                       ("metallic", metallic.grad)):
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, name


def test_environment_map_activation_and_bad_input():
    env = EnvironmentMap(4, 0.5)
    with torch.no_grad():
        env.log_radiance.fill_(-30.0)
    assert torch.all(env.radiance() > 0)
    with pytest.raises(ValueError, match="negative"):
        EnvironmentMap.from_radiance(-torch.ones(6, 4, 4, 3))
    with pytest.raises(ValueError, match="shape"):
        EnvironmentMap.from_radiance(torch.ones(5, 4, 4, 3))
    with pytest.raises(ValueError, match="negative"):
        EnvironmentMap.from_equirect(-np.ones((8, 16, 3), np.float32))
    with pytest.raises(ValueError, match="shape"):
        EnvironmentMap.from_equirect(np.ones((8, 16), np.float32))
    with pytest.raises(ValueError, match="non-finite"):
        EnvironmentMap.from_equirect(np.full((8, 16, 3), np.nan, np.float32))


def test_equirect_resampling_keeps_the_scene_convention():
    config = EnvironmentConfig(height=32, width=64, sun_kappa=60.0)
    env = torch.from_numpy(synthesize_environment(config))
    faces = equirect_to_cube(env, 12)
    brightest = texel_directions(12).reshape(-1, 3)[faces.reshape(-1, 3)[:, 0].argmax()]
    sun = torch.from_numpy(sun_direction(config)).float()
    assert float(brightest @ sun) > math.cos(math.radians(10))
    assert torch.allclose(equirect_to_cube(torch.full((8, 16, 3), 0.4), 4), torch.full((6, 4, 4, 3), 0.4))
