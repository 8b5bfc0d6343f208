"""Relighting diagnostics: ground-truth swaps and cast shadows, on a scene rendered by a known model."""
import math
from copy import deepcopy

import torch

from distill3d.data import Scene
from distill3d.data.cameras import intrinsics_from_fov
from distill3d.data.environment import EnvironmentConfig, synthesize_environment
from distill3d.inverse.metrics import cast_shadows, relit_oracles
from distill3d.inverse.relight import environment_from
from prd_tiny_scene import ground_truth_model, ring_viewmats

SIZE = 24


def oracle_scene(model, env):
    """Every buffer relit_oracles needs, rendered by ``model``; relit under a sun from the other side."""
    relight_env = torch.from_numpy(synthesize_environment(EnvironmentConfig(
        height=16, width=32, sun_kappa=30.0, sun_intensity=8.0, sun_azimuth_deg=225.0, sun_color=(1.0, 0.6, 0.4))))
    relight_light = model.prepare_light(environment_from(relight_env, model.light.resolution))
    viewmats = ring_viewmats(3, offset=0.4)
    K = intrinsics_from_fov(math.radians(45), SIZE, SIZE).float()
    buffers = {k: [] for k in ("images", "alphas", "albedos", "normals", "roughness", "metallic", "relit_images")}
    with torch.no_grad():
        for viewmat in viewmats:
            g = model.gbuffer(viewmat, K, SIZE, SIZE, torch.zeros(3))
            buffers["images"].append(model.shade_gbuffer(g, viewmat, K, torch.zeros(3)).image.permute(1, 2, 0))
            buffers["relit_images"].append(
                model.shade_gbuffer(g, viewmat, K, torch.zeros(3), light=relight_light).physical.permute(1, 2, 0))
            for key, value in (("alphas", g.coverage), ("albedos", g.albedo), ("normals", g.normals),
                               ("roughness", g.roughness), ("metallic", g.metallic)):
                buffers[key].append(value)
    stacked = {k: torch.stack(v).clamp(min=-1, max=1) for k, v in buffers.items()}
    return Scene(Ks=K.expand(3, 3, 3).clone(), viewmats=viewmats, names=["a", "b", "c"], split="test",
                 environment=torch.from_numpy(env), relight_environment=relight_env, **stacked)


def recoloured(model, factors):
    """A copy of ``model`` whose albedo is multiplied per channel by ``factors``."""
    copy = deepcopy(model)
    with torch.no_grad():
        albedo = torch.sigmoid(copy.gaussians.params["albedo"]) * torch.tensor(factors)
        copy.gaussians.params["albedo"].copy_(torch.logit(albedo))
    return copy


def test_swaps_recover_exactly_what_was_corrupted():
    model, env = ground_truth_model()
    scene = oracle_scene(model, env)
    exact = relit_oracles(model, scene)
    assert exact["relit_psnr_model"] == exact["relit_psnr_gt_materials"] == math.inf
    assert exact["shadow_fraction"] == 0  # our renderer casts no shadows

    tinted = relit_oracles(recoloured(model, (0.5, 0.8, 1.0)), scene)
    assert tinted["relit_psnr_model"] < 30
    assert tinted["relit_psnr_gt_normals"] == tinted["relit_psnr_model"]  # the normals were right
    # A pure colour scale is exactly what rescaling removes; silhouette pixels (coverage < 0.5) are not
    # swapped and keep the tint, hence not infinite.
    assert tinted["relit_psnr_albedo_rescaled"] > 40
    assert math.isclose(tinted["relit_psnr_albedo_rescaled"], tinted["relit_psnr_gt_albedo"], rel_tol=1e-3)
    assert tinted["relit_psnr_gt_albedo_in_shadows"] == tinted["relit_psnr_model"]  # no shadows to swap


def test_cast_shadows_finds_a_darkened_region():
    model, env = ground_truth_model()
    scene = oracle_scene(model, env)
    objects = scene.alphas[0] > 0.5
    region = torch.zeros_like(objects)
    region[8:16, 6:14] = True
    scene.images[0] = torch.where(region, scene.images[0] * 0.3, scene.images[0])
    found = cast_shadows(model, scene, 0)
    assert torch.equal(found, region & objects) and found.any()
    assert not cast_shadows(model, scene, 1).any()
    oracles = relit_oracles(model, scene)
    assert math.isclose(oracles["shadow_fraction"], float((region & objects).sum() / (scene.alphas > 0.5).sum()))
