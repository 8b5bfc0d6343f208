"""A tiny scene for PRD tests: flat Gaussians on a sphere with known materials, rendered physically
(progress fixed to 1) under a procedural sky from a ring of cameras."""
import math

import torch

from distill3d.data import Scene
from distill3d.data.cameras import intrinsics_from_fov, look_at_opengl, opengl_to_viewmat
from distill3d.data.environment import EnvironmentConfig, synthesize_environment
from distill3d.gaussians import GaussianInitConfig, Gaussians
from distill3d.inverse.config import ModelConfig
from distill3d.inverse.cubemap import EnvironmentMap
from distill3d.inverse.model import PRDModel


def ring_viewmats(count, radius=2.2, height=0.8, offset=0.0):
    angles = torch.arange(count, dtype=torch.float64) * (2 * math.pi / count) + offset
    eyes = torch.stack([radius * angles.cos(), radius * angles.sin(), torch.full_like(angles, height)], 1)
    c2w = look_at_opengl(eyes, torch.zeros(3, dtype=torch.float64), torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64))
    return opengl_to_viewmat(c2w).float()


def sphere_gaussians(num=300, radius=0.5, seed=0):
    g = torch.Generator().manual_seed(seed)
    points = torch.nn.functional.normalize(torch.randn(num, 3, generator=g), dim=-1) * radius
    colors = torch.where(points[:, :1] > 0, torch.tensor([[0.8, 0.3, 0.2]]), torch.tensor([[0.2, 0.5, 0.8]]))
    gaussians = Gaussians.from_points(points, colors, GaussianInitConfig(sh_degree=1, init_opacity=0.9))
    # flatten every Gaussian along the sphere's normal: quaternion rotating +z onto the normal
    normal = points / radius
    z = torch.tensor([0.0, 0.0, 1.0]).expand_as(normal)
    axis = torch.cross(z, normal, dim=-1)
    quats = torch.nn.functional.normalize(torch.cat([1.0 + (z * normal).sum(-1, keepdim=True), axis], -1), dim=-1)
    with torch.no_grad():
        gaussians.params["quats"].copy_(quats)
        gaussians.params["scales"][:, 2] = gaussians.params["scales"][:, 0] - 3.0
    return gaussians, colors


def ground_truth_model(num=300):
    gaussians, colors = sphere_gaussians(num)
    config = ModelConfig(env_resolution=8, progress="one")
    model = PRDModel.from_radiance(gaussians, config)
    with torch.no_grad():
        model.gaussians.params["albedo"].copy_(torch.logit(colors.clamp(0.05, 0.95)))
    env = synthesize_environment(EnvironmentConfig(height=16, width=32, sun_kappa=30.0, sun_intensity=8.0))
    model.light = EnvironmentMap.from_equirect(env, 8)
    return model, env


def tiny_prd_scene(size=24, num_train=6, num_test=2):
    model, env = ground_truth_model()
    viewmats = torch.cat([ring_viewmats(num_train), ring_viewmats(num_test, offset=0.4)])
    K = intrinsics_from_fov(math.radians(45), size, size).float()
    images, alphas, albedos = [], [], []
    with torch.no_grad():
        for viewmat in viewmats:
            out = model.render(viewmat, K, size, size, torch.zeros(3))
            images.append(out.image.permute(1, 2, 0))
            alphas.append(out.coverage.permute(1, 2, 0))
            albedos.append(out.albedo.permute(1, 2, 0))
    images, alphas, albedos = torch.stack(images).clamp(0, 1), torch.stack(alphas), torch.stack(albedos)
    ks = K.expand(len(viewmats), 3, 3).clone()
    names = [f"r_{i}" for i in range(len(viewmats))]
    split = lambda x: (x[:num_train], x[num_train:])  # noqa: E731
    (tri, tei), (trk, tek), (trv, tev), (tra, tea), (trb, teb) = map(split, (images, ks, viewmats, alphas, albedos))
    train = Scene(tri, trk, trv, names[:num_train], alphas=tra, albedos=trb, environment=torch.from_numpy(env))
    test = Scene(tei, tek, tev, names[num_train:], split="test", alphas=tea, albedos=teb)
    return train, test, model
