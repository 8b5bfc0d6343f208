"""The physical model on Gaussians: normals, deferred shading of splatted materials, progress blending."""
import math

import pytest
import torch

from distill3d.data.colorspace import linear_to_srgb, srgb_to_linear
from distill3d.gaussians import SH_C0
from distill3d.inverse.config import ModelConfig
from distill3d.inverse.model import PRDModel
from distill3d.inverse.normals import gaussian_normals, pixel_view_directions, shortest_axes
from prd_tiny_scene import ring_viewmats, sphere_gaussians


def test_shortest_axis_and_flip():
    half = math.sqrt(0.5)
    quats = torch.tensor([[1.0, 0, 0, 0], [half, half, 0, 0]])  # identity; 90 deg about x (y -> z)
    scales = torch.tensor([[1.0, 0.1, 1.0], [1.0, 0.1, 1.0]])
    axes = shortest_axes(quats, scales)
    assert torch.allclose(axes.abs(), torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]), atol=1e-6)
    means = torch.zeros(2, 3)
    below = gaussian_normals(means, quats, scales, torch.tensor([0.0, -3.0, -3.0]))
    above = gaussian_normals(means, quats, scales, torch.tensor([0.0, 3.0, 3.0]))
    assert torch.allclose(below, -above) and torch.all(above.sum(-1) > 0)
    residual = gaussian_normals(means, quats, scales, torch.tensor([0.0, 3.0, 3.0]), torch.tensor([[1.0, 0, 0]] * 2))
    assert torch.allclose(residual.norm(dim=-1), torch.ones(2))


def test_view_direction_of_the_principal_point_is_minus_forward():
    viewmat = ring_viewmats(1)[0]
    K = torch.tensor([[20.0, 0, 8.0], [0, 20.0, 8.0], [0, 0, 1]])
    dirs = pixel_view_directions(viewmat, K, 16, 16)
    forward = viewmat[2, :3]  # camera z axis in world coordinates
    centre = (dirs[7, 7] + dirs[8, 8] + dirs[7, 8] + dirs[8, 7]) / 4
    assert torch.allclose(torch.nn.functional.normalize(centre, dim=0), -forward, atol=1e-3)


def render(model, size=20):
    K = torch.tensor([[size * 1.2, 0, size / 2], [0, size * 1.2, size / 2], [0, 0, 1]])
    return model.render(ring_viewmats(1)[0], K, size, size, torch.tensor([0.1, 0.2, 0.3]))


def test_render_blends_physical_and_radiance_by_progress():
    gaussians, colors = sphere_gaussians(120)
    model = PRDModel.from_radiance(gaussians, ModelConfig(env_resolution=4))
    # albedo starts at the radiance field's base colour, in linear space
    assert torch.allclose(model.albedo(), srgb_to_linear(0.5 + SH_C0 * gaussians.params["sh0"][:, 0]), atol=1e-3)
    grey = ModelConfig(env_resolution=4)
    grey.init.albedo = 0.3  # or one grey everywhere
    assert torch.allclose(PRDModel.from_radiance(gaussians, grey).albedo(), torch.full((120, 3), 0.3), atol=1e-6)
    out = render(model)
    assert out.image.shape == (3, 20, 20) and out.progress.shape == (1, 20, 20)
    assert torch.allclose(out.image, out.progress * out.physical + (1 - out.progress) * out.radiance, atol=1e-6)
    inside = out.coverage[0] > 0.99
    initial = torch.full_like(out.progress[0][inside], model.config.init.progress)
    assert inside.any() and torch.allclose(out.progress[0][inside], initial, atol=1e-3)
    # the physical image is the tone-mapped shading composited over the background
    shaded = linear_to_srgb(out.diffuse + out.specular)
    expected = out.coverage * shaded + (1 - out.coverage) * torch.tensor([0.1, 0.2, 0.3])[:, None, None]
    assert torch.allclose(out.physical, expected, atol=1e-5)
    assert torch.allclose(out.normals[:, inside].norm(dim=0), torch.ones(int(inside.sum())), atol=1e-4)
    empty = out.coverage[0] < 1e-6
    assert torch.allclose(out.image[:, empty], torch.tensor([0.1, 0.2, 0.3])[:, None].expand(-1, int(empty.sum())))


def test_progress_one_is_the_physical_image_and_gradients_flow():
    gaussians, _ = sphere_gaussians(120)
    model = PRDModel.from_radiance(gaussians, ModelConfig(env_resolution=4, progress="one", normal_residual=True))
    out = render(model)
    assert torch.equal(out.image, out.physical)
    out.image.square().mean().backward()
    for name in ("albedo", "roughness", "metallic", "means", "quats", "normal_residual"):
        grad = model.gaussians.params[name].grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, name
    assert model.light.log_radiance.grad.abs().sum() > 0


def test_model_needs_material_channels():
    gaussians, _ = sphere_gaussians(20)
    with pytest.raises(ValueError, match="albedo"):
        PRDModel(gaussians)
