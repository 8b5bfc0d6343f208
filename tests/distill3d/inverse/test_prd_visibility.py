"""Baked visibility (distill3d.inverse.visibility) against a brute-force ray march and analytic geometry."""
import math

import torch

import pytest

from distill3d.inverse.cubemap import texel_solid_angles
from distill3d.inverse.normals import shortest_axes
from distill3d.inverse.visibility import (bake_visibility, fibonacci_directions, light_bins, occluded_irradiance,
                                          specular_visibility, trace_transmittance)
from distill3d.render.compositing import ALPHA_MAX, ALPHA_MIN
from distill3d.render.projection import covariance_3d

pytestmark = pytest.mark.usefixtures("one_torch_thread")

IDENTITY = torch.tensor([1.0, 0.0, 0.0, 0.0])


def disk_of_gaussians(radius: float, height: float, spacing: float, opacity: float = 0.99):
    """Flat Gaussians on a square grid, kept inside a disk of ``radius`` at z = ``height``."""
    steps = torch.arange(-radius, radius + 1e-9, spacing)
    xs, ys = torch.meshgrid(steps, steps, indexing="ij")
    inside = xs ** 2 + ys ** 2 <= radius ** 2
    means = torch.stack([xs[inside], ys[inside], torch.full_like(xs[inside], height)], -1)
    n = means.shape[0]
    scales = torch.tensor([0.6 * spacing, 0.6 * spacing, 0.15 * spacing]).expand(n, 3).clone()
    return means, IDENTITY.expand(n, 4).clone(), scales, torch.full((n,), opacity)


def brute_force_transmittance(origin, directions, means, quats, scales, opacities, length=2.0, samples=4000):
    """Reference: march every ray with ``samples`` steps, take each Gaussian's largest response along it."""
    inverse = torch.linalg.inv(covariance_3d(quats, scales).double())
    t = torch.linspace(1e-6, length, samples, dtype=torch.float64)
    out = []
    for d in directions.double():
        points = origin.double() + t[:, None] * d  # [S, 3]
        delta = points[None] - means.double()[:, None]  # [N, S, 3]
        q = torch.einsum("nsi,nij,nsj->ns", delta, inverse, delta)
        alpha = (opacities.double()[:, None] * torch.exp(-0.5 * q)).max(1).values.clamp(max=ALPHA_MAX)
        alpha = torch.where(alpha >= ALPHA_MIN, alpha, torch.zeros_like(alpha))
        out.append(torch.prod(1 - alpha))
    return torch.stack(out)


def test_traced_transmittance_matches_a_brute_force_ray_march():
    torch.manual_seed(0)
    means, quats, scales, opacities = disk_of_gaussians(0.5, 0.6, 0.1, opacity=0.7)
    quats = torch.nn.functional.normalize(quats + 0.3 * torch.randn_like(quats), dim=-1)  # tilted, anisotropic
    directions = fibonacci_directions(32)
    origin = torch.zeros(1, 3)
    traced = trace_transmittance(origin, torch.zeros(1, 3), means, quats, scales, opacities, directions,
                                 grid_cells=16, max_pairs=50)  # small chunks: the chunking is exercised
    reference = brute_force_transmittance(origin[0], directions, means, quats, scales, opacities)
    assert (traced[0].double() - reference).abs().max() < 2e-3
    assert traced[0].min() < 0.2 and traced[0].max() > 0.999  # blocked upwards, free sideways


def test_sharpened_occluders_match_a_brute_force_march_with_the_sharpened_alphas():
    """``optical_depth_gain`` gamma: each occluder's alpha becomes ``1 - (1 - alpha)^gamma`` (the brute-force
    march applies it per Gaussian); a single Gaussian straight ahead leaves ``(1 - o)^gamma``."""
    torch.manual_seed(2)
    means, quats, scales, opacities = disk_of_gaussians(0.4, 0.5, 0.1, opacity=0.35)
    quats = torch.nn.functional.normalize(quats + 0.3 * torch.randn_like(quats), dim=-1)
    directions = fibonacci_directions(32)
    origin = torch.zeros(1, 3)
    gamma = 1.5
    traced = trace_transmittance(origin, torch.zeros(1, 3), means, quats, scales, opacities, directions,
                                 grid_cells=16, optical_depth_gain=gamma)[0].double()
    inverse = torch.linalg.inv(covariance_3d(quats, scales).double())
    t = torch.linspace(1e-6, 2.0, 4000, dtype=torch.float64)
    reference = []
    for d in directions.double():  # the march of brute_force_transmittance with the sharpened alphas
        delta = (t[:, None] * d)[None] - means.double()[:, None]
        q = torch.einsum("nsi,nij,nsj->ns", delta, inverse, delta)
        alpha = (opacities.double()[:, None] * torch.exp(-0.5 * q)).max(1).values.clamp(max=ALPHA_MAX)
        alpha = torch.where(alpha >= ALPHA_MIN, 1 - (1 - alpha) ** gamma, torch.zeros_like(alpha))
        reference.append(torch.prod(1 - alpha))
    reference = torch.stack(reference)
    assert (traced - reference).abs().max() < 2e-3
    plain = trace_transmittance(origin, torch.zeros(1, 3), means, quats, scales, opacities, directions, grid_cells=16)[0]
    blocked = plain < 0.9
    assert blocked.any() and bool((traced[blocked] < plain[blocked].double() - 0.01).all())  # darker where blocked
    # one Gaussian centred straight above: T = (1 - o)^gamma exactly
    single = trace_transmittance(origin, torch.zeros(1, 3), torch.tensor([[0.0, 0.0, 1.0]]), IDENTITY[None],
                                 torch.tensor([[0.1, 0.1, 0.1]]), torch.tensor([0.4]), torch.tensor([[0.0, 0.0, 1.0]]),
                                 optical_depth_gain=gamma)
    assert abs(float(single) - 0.6 ** gamma) < 1e-6


def test_visibility_under_an_opaque_disk_matches_its_solid_angle():
    """A receiver Gaussian under a disk of opaque Gaussians: the blocked solid angle is the disk's
    ``2 pi (1 - h / sqrt(h^2 + R^2))``; straight up is dark, downwards is free."""
    radius, height = 0.5, 0.5
    occluder = disk_of_gaussians(radius, height, 0.05)
    receiver = (torch.zeros(1, 3), IDENTITY[None], torch.tensor([[0.01, 0.01, 0.001]]), torch.tensor([0.9]))
    means, quats, scales, opacities = (torch.cat([r, o]) for r, o in zip(receiver, occluder))
    directions = fibonacci_directions(300)
    offset = torch.tensor([[0.0, 0.0, 0.01]])  # the receiver's normal times the ray offset, as bake_visibility
    visibility = trace_transmittance(means[:1], offset, means, quats, scales, opacities, directions,
                                     exclude=torch.tensor([0]))[0]
    blocked = float((1 - visibility).sum()) * 4 * math.pi / len(directions)
    # the disk's edge is soft over about one spacing: take its solid angle at R +- spacing / 2 as bounds
    cone = lambda r: 2 * math.pi * (1 - height / math.hypot(height, r))  # noqa: E731
    assert cone(radius - 0.025) < blocked < cone(radius + 0.05)
    # between the grid's Gaussians a vertical ray passes 4 at about 1 sigma: T ~ (1 - 0.99 e^-0.7)^4 ~ 0.07
    assert float(visibility[directions[:, 2] > 0.9].max()) < 0.1
    assert float(visibility[directions[:, 2] < 0].min()) > 0.999


def test_a_flat_surface_does_not_shadow_itself():
    means, quats, scales, opacities = disk_of_gaussians(0.3, 0.0, 0.05)
    directions = fibonacci_directions(32)
    # the rays start 4 thickness sigmas off the surface; only grazing rays (below ~10 degrees) meet neighbours
    visibility = bake_visibility(means, quats, scales, opacities, directions, offset=0.03)
    assert float(visibility[:, directions[:, 2] > 0.15].mean()) > 0.97
    assert float(visibility[:, directions[:, 2] > 0.5].min()) > 0.99
    # below the surface (the other side) is free as well: the rays start on the side they leave from
    assert float(visibility[:, directions[:, 2] < -0.5].min()) > 0.99


def blob_layer(half: float, spacing: float = 0.04, depths=(0.0, -0.02, -0.04), opacity: float = 0.35):
    """A surface as a radiance field models it after a short training: stacked layers of soft, barely flat
    blobs (scales 0.03 / 0.03 / 0.02, opacity 0.35, tilted by up to ~20 degrees), top layer at z = 0."""
    steps = torch.arange(-half, half + 1e-9, spacing)
    xs, ys = torch.meshgrid(steps, steps, indexing="ij")
    means = torch.cat([torch.stack([xs.flatten(), ys.flatten(), torch.full((xs.numel(),), z)], -1) for z in depths])
    n = len(means)
    quats = torch.nn.functional.normalize(IDENTITY + 0.1 * torch.randn(n, 4), dim=-1)
    return means, quats, torch.tensor([0.03, 0.03, 0.02]).expand(n, 3).clone(), torch.full((n,), opacity)


def test_a_soft_surface_layer_sees_its_open_hemisphere():
    """Rays start clear of the Gaussian's own extent (``offset_sigmas``): an unoccluded layer of blobs sees
    its whole hemisphere; started a fixed eps off the centres, the rays run inside the layer."""
    means, quats, scales, opacities = blob_layer(0.16)
    directions = fibonacci_directions(32)
    normals = shortest_axes(quats, scales)
    facing = normals @ directions.T
    cosine = facing.abs() * (facing * normals[:, 2:] > 0)  # the hemisphere around the upward normal
    inner = means[:, :2].abs().max(-1).values < 0.09  # all three layers, away from the edges

    def open_fraction(offset_sigmas: float) -> float:  # cosine-weighted visibility of the open hemisphere
        visibility = bake_visibility(means, quats, scales, opacities, directions, 0.005, offset_sigmas=offset_sigmas)
        return float(((visibility * cosine).sum(-1) / cosine.sum(-1))[inner].mean())

    assert open_fraction(3.0) > 0.9
    assert open_fraction(0.0) < 0.5


def test_baked_visibility_under_an_occluder_matches_a_brute_force_march_from_the_shifted_start():
    """The receiver's rays start at ``mu + (eps + k s_min) sign(n . d) n`` and ignore the receiver itself."""
    receiver = (torch.zeros(1, 3), IDENTITY[None], torch.tensor([[0.03, 0.03, 0.02]]), torch.tensor([0.9]))
    occluder = disk_of_gaussians(0.3, 0.4, 0.05, opacity=0.7)
    means, quats, scales, opacities = (torch.cat([r, o]) for r, o in zip(receiver, occluder))
    directions = fibonacci_directions(32)
    baked = bake_visibility(means, quats, scales, opacities, directions, 0.01, offset_sigmas=3.0)[0]
    shift = 0.01 + 3.0 * 0.02
    up = directions[:, 2] > 0
    above = brute_force_transmittance(torch.tensor([0.0, 0.0, shift]), directions[up], *occluder)
    below = brute_force_transmittance(torch.tensor([0.0, 0.0, -shift]), directions[~up], *occluder)
    assert (baked[up].double() - above).abs().max() < 2e-3
    assert (baked[~up].double() - below).abs().max() < 2e-3
    assert baked[directions[:, 2] > 0.9].max() < 0.5  # the disk does shadow it


def test_light_bins_and_occluded_irradiance_against_direct_sums():
    torch.manual_seed(1)
    faces = torch.rand(6, 8, 8, 3)
    directions = fibonacci_directions(32)
    bins = light_bins(faces, directions)
    total = (faces * texel_solid_angles(8)[..., None]).sum((0, 1, 2))
    torch.testing.assert_close(bins.power.sum(0), total)
    normals = torch.nn.functional.normalize(torch.randn(5, 3), dim=-1)
    visibility = torch.rand(5, 32)
    expected = torch.stack([sum((1 - visibility[i, k]) * bins.power[k] * max(0.0, float(normals[i] @ bins.directions[k]))
                                for k in range(32)) for i in range(5)])
    torch.testing.assert_close(occluded_irradiance(visibility, normals, bins), expected)
    assert occluded_irradiance(torch.ones(5, 32), normals, bins).abs().max() == 0


def test_specular_visibility_follows_the_reflected_direction():
    directions = fibonacci_directions(128)
    visibility = (directions[:, 2] < 0.5).float()[None].expand(2, -1)  # a cone around +z is blocked
    reflected = torch.tensor([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    smooth = specular_visibility(visibility, reflected, torch.full((2, 1), 0.1), directions, 40.0)
    assert smooth[0, 0] < 0.05 and smooth[1, 0] > 0.95
    rough = specular_visibility(visibility, reflected, torch.full((2, 1), 1.0), directions, 40.0)
    assert 0.2 < rough[0, 0] < smooth[1, 0]  # a rough lobe sees past the blocked cone


def _lit_model(visibility: bool):
    """A flat square of Gaussians (z = 0) with an opaque disk floating above it, lit by a sun at the zenith."""
    from distill3d.gaussians import Gaussians
    from distill3d.inverse.config import ModelConfig
    from distill3d.inverse.cubemap import EnvironmentMap
    from distill3d.inverse.model import PRDModel

    ground = disk_of_gaussians(0.6, 0.0, 0.06)
    blocker = disk_of_gaussians(0.25, 0.4, 0.05)
    means, quats, scales, opacities = (torch.cat([a, b]) for a, b in zip(ground, blocker))
    config = ModelConfig(env_resolution=4, progress="one")
    config.visibility.enabled, config.visibility.num_directions = visibility, 32
    config.init.albedo = 0.5
    gaussians = Gaussians(means, quats, torch.log(scales), torch.logit(opacities), torch.zeros(len(means), 1, 3),
                          torch.zeros(len(means), 0, 3))
    model = PRDModel.from_radiance(gaussians, config)
    faces = torch.full((6, 4, 4, 3), 0.05)
    faces[4, 1:3, 1:3] = 30.0  # +Z face centre: a sun overhead
    model.light = EnvironmentMap.from_radiance(faces)
    return model


def test_model_shades_the_shadow_of_an_occluder_and_changes_nothing_without_one():
    from distill3d.data.cameras import intrinsics_from_fov, look_at_opengl, opengl_to_viewmat

    eye = torch.tensor([[0.0, -0.9, 1.6]], dtype=torch.float64)
    viewmat = opengl_to_viewmat(look_at_opengl(eye, torch.zeros(3, dtype=torch.float64),
                                               torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64))).float()[0]
    K = intrinsics_from_fov(math.radians(50), 32, 32).float()
    background = torch.zeros(3)
    plain, shadowed = _lit_model(False), _lit_model(True)
    shadowed.bake_visibility(scene_scale=1.0)
    assert shadowed.uses_visibility and shadowed.visibility.shape == (len(shadowed.gaussians), 32)
    a = plain.render(viewmat, K, 32, 32, background)
    b = shadowed.render(viewmat, K, 32, 32, background)
    # under the blocker (the ground point below the disk centre) the irradiance drops; far from it, it does not
    ground_under = (shadowed.gaussians.means[:, :2].norm(dim=-1) < 0.05) & (shadowed.gaussians.means[:, 2] == 0)
    assert float(shadowed.visibility.float()[ground_under][:, fibonacci_directions(32)[:, 2] > 0.95].max()) < 0.2
    diffuse_ratio = b.diffuse.mean(0) / a.diffuse.mean(0).clamp(min=1e-6)
    covered = a.coverage[0] > 0.99
    # the 4 x 4 cube map spreads the sun over ~45 degrees: under the disk part of it stays visible
    assert float(diffuse_ratio[covered].min()) < 0.5 and float(diffuse_ratio[covered].max()) > 0.97
    # all-visible V gives exactly the model without visibility
    shadowed.visibility = torch.ones_like(shadowed.visibility)
    c = shadowed.render(viewmat, K, 32, 32, background)
    torch.testing.assert_close(c.image, a.image, atol=1e-5, rtol=0)
    # saved and restored with the model
    restored = type(shadowed).from_state(shadowed.config, shadowed.state_dict())
    assert torch.equal(restored.visibility, shadowed.visibility) and restored.uses_visibility
