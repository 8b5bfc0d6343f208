"""The mitsuba scene builder on the tiny recipe (3 views at 32 x 32): cameras checked against an
analytic sphere, object ids, materials, relit views, resume."""
import dataclasses
import json
import math

import pytest
import torch

from distill3d.data import load_blender
from distill3d.data.builder import build_scene, camera_poses
from distill3d.data.cameras import project_points, unproject_depth
from distill3d.data.environment import load_environment
from distill3d.data.recipes import CameraRig, get_recipe

TINY = get_recipe("tiny")
SPHERE = TINY.objects[0]
SPHERE_ID = 2  # 0 background, 1 table, then the recipe's objects


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return build_scene(TINY, tmp_path_factory.mktemp("tiny"), progress=False)


def _sphere_centre_radius():
    r = SPHERE.size / 2
    return torch.tensor([*SPHERE.position, r], dtype=torch.float64), r


def test_layout_and_transforms(tiny_dir):
    train = json.loads((tiny_dir / "transforms_train.json").read_text())
    test = json.loads((tiny_dir / "transforms_test.json").read_text())
    assert len(train["frames"]) == 2 and len(test["frames"]) == 1
    assert train["camera_angle_x"] == pytest.approx(math.radians(TINY.cameras.fov_x_deg))
    assert (tiny_dir / "test" / "r_000_relit.png").is_file() and not (tiny_dir / "train" / "r_000_relit.png").exists()
    meta = json.loads((tiny_dir / "scene.json").read_text())
    assert [o["name"] for o in meta["objects"]] == ["background", "table", "sphere", "stone"]


def test_depth_unprojects_onto_the_analytic_sphere(tiny_dir):
    """Cameras, intrinsics and depth agree with mitsuba: pixels the sphere covers unproject onto its surface
    (|p - c| = r), their normals are (p - c) / r, and the sphere's centre projects inside its mask."""
    centre, radius = _sphere_centre_radius()
    for split in ("train", "test"):
        scene = load_blender(tiny_dir, split, min_views=1)
        for v in range(scene.num_views):
            on_sphere = scene.masks[v] == SPHERE_ID
            assert int(on_sphere.sum()) > 20
            points = unproject_depth(scene.depths[v, ..., 0].double(), scene.Ks[v].double(), scene.viewmats[v].double())
            dist = (points[on_sphere] - centre).norm(dim=-1)
            assert float((dist - radius).abs().max()) < 2e-3
            expected_normals = (points[on_sphere] - centre) / radius
            cosine = (scene.normals[v][on_sphere].double() * expected_normals).sum(-1)
            assert float(cosine.min()) > 0.995
            uv, _ = project_points(centre[None], scene.viewmats[v : v + 1].double(), scene.Ks[v : v + 1].double())
            col, row = (int(math.floor(c)) for c in uv[0, 0].tolist())
            assert int(scene.masks[v, row, col]) == SPHERE_ID


def test_buffers_materials_and_relight(tiny_dir):
    scene = load_blender(tiny_dir, "test", min_views=1)
    masks = scene.masks[0]
    assert set(masks.unique().tolist()) <= {0, 1, 2, 3}
    # background: no depth, no coverage at the pixel centre; objects: positive depth
    assert float(scene.depths[0][masks == 0].abs().max()) == 0.0
    assert float(scene.depths[0][masks > 0].min()) > 0.0
    for obj_id, spec in ((2, TINY.objects[0]), (3, TINY.objects[1])):
        sel = masks == obj_id
        torch.testing.assert_close(scene.roughness[0][sel], torch.full_like(scene.roughness[0][sel], spec.material.roughness), atol=2 / 255, rtol=0)
        torch.testing.assert_close(scene.metallic[0][sel], torch.full_like(scene.metallic[0][sel], spec.material.metallic), atol=2 / 255, rtol=0)
        # constant base colour: the albedo buffer holds it (8-bit sRGB storage, ~1% error)
        torch.testing.assert_close(scene.albedos[0][sel], torch.tensor(spec.material.base_color).expand(int(sel.sum()), 3), atol=0.02, rtol=0)
    assert scene.relit_images is not None
    assert float((scene.relit_images - scene.images).abs().mean()) > 0.02  # a different light
    env = load_environment(tiny_dir / "environment.npz", "relight")
    torch.testing.assert_close(torch.from_numpy(env), scene.relight_environment)


def test_resume_skips_finished_views(tiny_dir):
    files = sorted(tiny_dir.rglob("*.png"))
    mtimes = {p: p.stat().st_mtime_ns for p in files}
    redo = tiny_dir / "train" / "r_001.png"
    redo.unlink()
    build_scene(TINY, tiny_dir, progress=False)
    assert redo.is_file()
    untouched = [p for p in files if not p.name.startswith("r_001")]
    assert all(p.stat().st_mtime_ns == mtimes[p] for p in untouched)
    # resuming with another recipe would mix two scenes: refused
    with pytest.raises(ValueError, match="different recipe"):
        build_scene(TINY.replace(render=dataclasses.replace(TINY.render, spp=16)), tiny_dir, progress=False)


def test_camera_rig_band():
    rig = CameraRig(num_train=10, num_test=3, radius=2.0, elevation_deg=(20.0, 60.0), target=(0.0, 0.0, 0.5))
    c2w, splits = camera_poses(rig)
    assert splits.count("test") == 3 and len(splits) == 13
    offsets = c2w[:, :3, 3] - torch.tensor(rig.target, dtype=torch.float64)
    torch.testing.assert_close(offsets.norm(dim=-1), torch.full((13,), 2.0, dtype=torch.float64))
    elevation = torch.rad2deg(torch.asin(offsets[:, 2] / 2.0))
    assert float(elevation.min()) >= 20.0 and float(elevation.max()) <= 60.0
    # every camera looks at the target: its -z axis is the direction to it
    torch.testing.assert_close(-c2w[:, :3, 2], -offsets / 2.0)
