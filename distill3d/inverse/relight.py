"""Relighting and export of a trained PRD model.

Relighting swaps the learned light for a new environment (an equirectangular HDR map, the scene's
``relight_environment`` or a user's ``.hdr`` / ``.exr`` / ``.npz``), resampled onto the cube map:

    I_relit = A srgb(shade(maps, L_new)) + (1 - A) bg                   (physical only, default)
    I_relit = alpha_p I_relit + (1 - alpha_p) I_rad                     (``keep_radiance=True``)

The radiance term cannot follow the new light, so by default it is dropped; keeping it preserves the
unmodelled light paths at the price of their old illumination.

Export writes the Gaussians as a 3DGS PLY whose extra columns are the ACTIVATED materials
(``albedo_0..2`` linear in [0, 1], ``roughness_0``, ``metallic_0``, ``progress_0``), the light as
``light.npy`` (``[6, R, R, 3]`` cube faces, +X -X +Y -Y +Z -Z) and ``light.png`` (a tone-mapped cross),
and per-view material maps as PNG images.
"""
from __future__ import annotations

import pathlib

import imageio.v3 as iio
import numpy as np
import torch
from torch import Tensor

from distill3d.data import Scene
from distill3d.data.colorspace import linear_to_srgb
from distill3d.data.environment import check_environment, load_environment
from distill3d.gaussians import STANDARD_KEYS, Gaussians

from .cubemap import EnvironmentMap
from .model import PRDModel

# where each face sits in a 4 x 3 horizontal cross (row, column), faces in FACE_AXES order
CROSS_LAYOUT = ((1, 2), (1, 0), (0, 1), (2, 1), (1, 1), (1, 3))


def environment_from(env: EnvironmentMap | Tensor | np.ndarray | str | pathlib.Path, resolution: int,
                     key: str | None = None) -> EnvironmentMap:
    """An :class:`EnvironmentMap` from a map, an equirectangular ``[He, We, 3]`` array, or a file
    (``key``: the array of an ``.npz`` holding several)."""
    if isinstance(env, EnvironmentMap):
        return env
    if isinstance(env, (str, pathlib.Path)):
        env = load_environment(env, key)
    array = env.detach().cpu().numpy() if isinstance(env, Tensor) else np.asarray(env)
    return EnvironmentMap.from_equirect(check_environment(array, "environment map"), resolution)


@torch.no_grad()
def relight(model: PRDModel, scene: Scene, env, *, keep_radiance: bool = False, env_key: str | None = None,
            backend: str = "auto") -> Tensor:  # [V, 3, H, W] sRGB
    """Renders every view of ``scene`` under ``env`` (anything :func:`environment_from` takes)."""
    light = model.prepare_light(environment_from(env, model.light.resolution, env_key))
    images = []
    for index in range(scene.num_views):
        out = model.render(scene.viewmats[index], scene.Ks[index], scene.width, scene.height, scene.background,
                           light=light, backend=backend)
        images.append(out.progress * out.physical + (1 - out.progress) * out.radiance if keep_radiance else out.physical)
    return torch.stack(images).clamp(0, 1)


def material_gaussians(model: PRDModel) -> Gaussians:
    """The model's Gaussians with activated material columns (see the module doc)."""
    p = model.gaussians.params
    extras = {"albedo": model.albedo(), "roughness": model.roughness(), "metallic": model.metallic(),
              "progress": model.progress()}
    return Gaussians(**{k: p[k].detach() for k in STANDARD_KEYS}, extras={k: v.detach() for k, v in extras.items()})


def cube_cross(faces: Tensor) -> np.ndarray:
    """``[3R, 4R, 3]`` uint8 sRGB cross image of linear cube faces ``[6, R, R, 3]`` (black outside)."""
    r = faces.shape[1]
    cross = np.zeros((3 * r, 4 * r, 3), np.uint8)
    srgb = (linear_to_srgb(faces.detach().cpu()).numpy() * 255).round().astype(np.uint8)
    for face, (row, col) in enumerate(CROSS_LAYOUT):
        cross[row * r:(row + 1) * r, col * r:(col + 1) * r] = srgb[face]
    return cross


def _png(image: Tensor) -> np.ndarray:  # [C, H, W] in [0, 1] -> uint8 [H, W, 3]
    image = image.detach().clamp(0, 1)
    if image.shape[0] == 1:
        image = image.expand(3, -1, -1)
    return (image.permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8)


@torch.no_grad()
def export(model: PRDModel, out_dir: str | pathlib.Path, scene: Scene | None = None, backend: str = "auto") -> list[pathlib.Path]:
    """Writes ``materials.ply``, ``light.npy``, ``light.png`` and (with ``scene``) per-view map PNGs."""
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [material_gaussians(model).save_ply(out_dir / "materials.ply")]
    faces = model.light.radiance().detach()
    np.save(out_dir / "light.npy", faces.cpu().numpy())
    iio.imwrite(out_dir / "light.png", cube_cross(faces))
    written += [out_dir / "light.npy", out_dir / "light.png"]
    if scene is not None:
        maps_dir = out_dir / "maps"
        maps_dir.mkdir(exist_ok=True)
        for index, name in enumerate(scene.names):
            out = model.render(scene.viewmats[index], scene.Ks[index], scene.width, scene.height, scene.background,
                               backend=backend)
            images = {"image": out.image, "physical": out.physical, "radiance": out.radiance,
                      "albedo": linear_to_srgb(out.albedo), "roughness": out.roughness, "metallic": out.metallic,
                      "progress": out.progress, "normal": out.normals * 0.5 + 0.5}
            for kind, image in images.items():
                path = maps_dir / f"{pathlib.Path(name).name}_{kind}.png"
                iio.imwrite(path, _png(image))
                written.append(path)
    return written
