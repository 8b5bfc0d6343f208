"""Point-cloud initialisation: sparse, depth-unprojected and random points."""
import pytest
import torch

from distill3d.data import PointInitConfig, Scene, default_scene_dir, initial_points, load_blender
from distill3d.data.cameras import project_points
from distill3d.data.points import camera_focus
from distill3d.data.recipes import get_recipe


@pytest.fixture(scope="module")
def scene():
    return load_blender(default_scene_dir(), "train")


def test_camera_focus_is_the_rig_target(scene):
    torch.testing.assert_close(camera_focus(scene.viewmats), torch.tensor(get_recipe("default").cameras.target), atol=1e-4, rtol=0)


def test_depth_points_lie_on_seen_surfaces(scene):
    points, colors = initial_points(scene, PointInitConfig(method="depth", num_points=500))
    assert points.shape == (500, 3) and colors.shape == (500, 3)
    # nothing below the table (its top is z = 0)
    assert float(points[:, 2].min()) > -get_recipe("default").table.thickness - 1e-3
    # each point projects, in some view, onto a pixel whose depth matches it
    uv, z = project_points(points, scene.viewmats, scene.Ks)
    cols, rows = uv[..., 0].floor().long().clamp(0, scene.width - 1), uv[..., 1].floor().long().clamp(0, scene.height - 1)
    seen = scene.depths[torch.arange(scene.num_views)[:, None], rows, cols, 0]
    best = ((seen - z).abs() / z).min(dim=0).values
    assert float(best.max()) < 1e-3
    assert initial_points(scene)[0].shape == (20_000, 3)  # auto: depth maps available


def test_random_points_fill_the_focus_cube(scene):
    photos = Scene(images=scene.images, Ks=scene.Ks, viewmats=scene.viewmats, names=scene.names)  # no depth
    points, colors = initial_points(photos, PointInitConfig(num_points=4000))
    focus = camera_focus(scene.viewmats)
    half = 0.4 * (scene.camera_centers() - focus).norm(dim=-1).mean()
    offset = (points - focus).abs()
    assert float(offset.max()) <= float(half) + 1e-5 and float(offset.max()) > 0.95 * float(half)
    assert torch.equal(colors, torch.full_like(colors, 0.5))


def test_sparse_points_and_errors(scene):
    with pytest.raises(ValueError, match="sparse"):
        initial_points(scene, PointInitConfig(method="sparse"))
    with pytest.raises(ValueError, match="method"):
        initial_points(scene, PointInitConfig(method="sfm"))
    with_points = scene.subset([0, 1])
    with_points.points, with_points.point_colors = torch.ones(5, 3), torch.zeros(5, 3)
    points, colors = initial_points(with_points)
    assert torch.equal(points, torch.ones(5, 3)) and torch.equal(colors, torch.zeros(5, 3))
