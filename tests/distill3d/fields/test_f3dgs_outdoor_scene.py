"""The outdoor recipe (photos without alpha: ground, walls and sky behind the objects) on its tiny
variant, 3 views at 32 x 32: the sky seen where no surface is, ground and walls where the geometry says."""
import json
import math

import numpy as np
import pytest
import torch

from distill3d.data import load_blender
from distill3d.data.builder import build_scene
from distill3d.data.cameras import rigid_inverse, unproject_depth
from distill3d.data.colorspace import linear_to_srgb
from distill3d.data.environment import direction_to_equirect, load_environment, sun_direction

TINY = pytest.importorskip("distill3d.data.recipes").get_recipe("outdoor_tiny")


@pytest.fixture(scope="module")
def outdoor_dir(tmp_path_factory):
    return build_scene(TINY, tmp_path_factory.mktemp("outdoor"), progress=False)


def _ids(root):
    return {o["name"]: o["id"] for o in json.loads((root / "scene.json").read_text())["objects"]}


def test_photos_without_alpha_and_object_table(outdoor_dir):
    import imageio.v3 as iio

    assert iio.imread(outdoor_dir / "train" / "r_000.png").shape == (32, 32, 3)  # RGB, like a photo
    assert list(_ids(outdoor_dir)) == ["background", "table", "sphere", "stone", "ground", "wall_0", "wall_1"]
    scene = load_blender(outdoor_dir, "train")
    assert scene.alphas is None
    ids = _ids(outdoor_dir)
    seen = set(torch.unique(scene.masks).tolist())
    assert {ids["background"], ids["ground"], ids["table"]} <= seen  # sky and ground behind the objects


def test_ground_and_walls_lie_where_the_recipe_puts_them(outdoor_dir):
    surround, ids = TINY.surround, _ids(outdoor_dir)
    walls = {ids[f"wall_{k}"]: math.radians(a) for k, a in enumerate(surround.wall_azimuths_deg)}
    checked = 0
    for split in ("train", "test"):
        scene = load_blender(outdoor_dir, split, min_views=1)
        for v in range(scene.num_views):
            points = unproject_depth(scene.depths[v, ..., 0].double(), scene.Ks[v].double(), scene.viewmats[v].double())
            ground = scene.masks[v] == ids["ground"]
            assert float((points[ground][:, 2] + TINY.table.thickness).abs().max()) < 2e-3
            for wall_id, azimuth in walls.items():
                on = scene.masks[v] == wall_id
                normal = torch.tensor([math.cos(azimuth), math.sin(azimuth), 0.0], dtype=torch.float64)
                if on.any():
                    assert float((points[on] @ normal - surround.wall_distance).abs().max()) < 2e-3
                    checked += 1
    assert checked > 0  # some view sees a wall


def test_sky_pixels_show_the_environment(outdoor_dir):
    """Where no surface is hit the photo is the environment radiance in the pixel's direction (sRGB)."""
    env = load_environment(outdoor_dir / "environment.npz", "train")
    sun = sun_direction(TINY.environment)
    scene = load_blender(outdoor_dir, "train")
    errors = []
    for v in range(scene.num_views):
        jj, ii = torch.meshgrid(torch.arange(32.0) + 0.5, torch.arange(32.0) + 0.5, indexing="ij")
        rays = torch.stack([ii, jj, torch.ones_like(ii)], -1).double() @ torch.linalg.inv(scene.Ks[v].double()).T
        dirs = rays @ rigid_inverse(scene.viewmats[v].double())[:3, :3].T
        dirs = (dirs / dirs.norm(dim=-1, keepdim=True)).numpy()
        rc = np.rint(direction_to_equirect(dirs, *env.shape[:2])).astype(int)
        expected = linear_to_srgb(env[rc[..., 0].clip(0, env.shape[0] - 1), rc[..., 1] % env.shape[1]])
        sky = (scene.masks[v] == 0).numpy() & (dirs @ sun < math.cos(math.radians(20)))  # away from the sun lobe
        errors.append(np.abs(scene.images[v].numpy()[sky] - expected[sky]))
    errors = np.concatenate(errors)
    assert errors.shape[0] > 30 and float(np.median(errors)) < 0.03
