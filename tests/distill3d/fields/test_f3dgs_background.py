"""Background of photos: the sky sphere of distant Gaussians (placement, colours from the views) and a
field of only sky Gaussians learning a sky gradient that held-out views see."""
import math

import sys
from pathlib import Path

import pytest
import torch

from distill3d.data import Scene
from distill3d.data.cameras import intrinsics_from_fov, rigid_inverse
from distill3d.data.points import camera_focus, colors_from_views
from distill3d.fields.background import fibonacci_sphere, sky_sphere
from distill3d.fields.config import TrainConfig
from distill3d.fields.trainer import Trainer

sys.path.insert(0, str(Path(__file__).parent))
from f3dgs_tiny_scene import ring_cameras  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ZENITH, HORIZON = torch.tensor([0.2, 0.35, 0.8]), torch.tensor([0.85, 0.85, 0.9])


def test_fibonacci_sphere_is_unit_and_even():
    dirs = fibonacci_sphere(500).double()
    torch.testing.assert_close(dirs.norm(dim=-1), torch.ones(500, dtype=torch.float64), atol=1e-6, rtol=0)
    assert float(dirs.mean(0).norm()) < 1e-2  # no side favoured
    # nearest-neighbour angles close to the even spacing sqrt(4 pi / S)
    angles = torch.arccos((dirs @ dirs.T).clamp(-1, 1)) + 10 * torch.eye(500, dtype=torch.float64)
    nearest = angles.min(dim=1).values
    spacing = math.sqrt(4 * math.pi / 500)
    assert 0.6 * spacing < float(nearest.min()) and float(nearest.max()) < 1.3 * spacing


def _sky_scene(cameras: torch.Tensor, size: int, names: list[str], split: str = "train") -> Scene:
    """Photos of nothing but a sky whose colour depends on the ray's height: lerp(horizon, zenith, d_z+)."""
    K = intrinsics_from_fov(math.radians(70), size, size).float()
    jj, ii = torch.meshgrid(torch.arange(size) + 0.5, torch.arange(size) + 0.5, indexing="ij")
    rays = torch.stack([ii, jj, torch.ones_like(ii)], -1) @ torch.linalg.inv(K).T
    images = []
    for viewmat in cameras:
        dirs = rays @ rigid_inverse(viewmat)[:3, :3].T
        up = (dirs[..., 2:] / dirs.norm(dim=-1, keepdim=True)).clamp(0, 1)
        images.append((1 - up) * HORIZON + up * ZENITH)
    return Scene(torch.stack(images), K.expand(len(cameras), 3, 3).clone(), cameras, names, split=split)


def test_sky_sphere_surrounds_the_cameras_and_takes_the_colours_they_see():
    cameras = ring_cameras(6, radius=3.0, height=0.2)
    scene = _sky_scene(cameras, 16, [f"r_{i}" for i in range(6)])
    points, colors = sky_sphere(scene, 300, radius=10.0)
    focus = camera_focus(scene.viewmats)
    distance = (scene.camera_centers() - focus).norm(dim=-1).mean()
    torch.testing.assert_close((points - focus).norm(dim=-1), torch.full((300,), float(10 * distance)), rtol=1e-5, atol=0)
    # a sphere point seen by the cameras takes the sky colour of its direction (parallax is small at 10x)
    seen = colors != 0.5
    up = ((points - focus)[:, 2:] / (points - focus).norm(dim=-1, keepdim=True)).clamp(0, 1)
    expected = (1 - up) * HORIZON + up * ZENITH
    assert int(seen.all(dim=1).sum()) > 30
    assert float((colors - expected)[seen.all(dim=1)].abs().max()) < 0.06
    with pytest.raises(ValueError, match="sky_radius"):
        sky_sphere(scene, 10, radius=0.0)


def test_colors_from_views_averages_the_pixels_a_point_projects_to():
    cameras = ring_cameras(4)
    K = intrinsics_from_fov(math.radians(60), 8, 8).float()
    images = torch.rand(4, 8, 8, 3, generator=torch.Generator().manual_seed(0))
    scene = Scene(images, K.expand(4, 3, 3).clone(), cameras, [f"r_{i}" for i in range(4)])
    # the origin is the ring's focus: every camera sees it at its image centre (pixel 4, 4)
    centre = colors_from_views(torch.zeros(1, 3), scene)
    torch.testing.assert_close(centre[0], images[:, 4, 4].mean(0))
    far_below = colors_from_views(torch.tensor([[0.0, 0.0, -100.0]]), scene)  # outside every view: grey
    torch.testing.assert_close(far_below[0], torch.full((3,), 0.5))


@pytest.mark.slow
def test_sky_gaussians_learn_a_sky_gradient_seen_from_held_out_views(tmp_path):
    """Only sky Gaussians (2 initial random points): training on 8 views of a sky gradient renders the
    held-out views' sky to > 28 dB, at least 5 dB above the shell's view-coloured start."""
    size = 16
    train = _sky_scene(ring_cameras(8, radius=3.0, height=0.3), size, [f"r_{i}" for i in range(8)])
    test = _sky_scene(ring_cameras(2, radius=3.0, height=0.3, offset=0.4), size, ["t_0", "t_1"], split="test")
    config = TrainConfig(steps=150, sh_degree=0, eval_every=0, checkpoint_every=0, backend="native")
    config.init.method, config.init.num_points, config.init.sky_points = "random", 2, 600
    config.densify.enabled = False
    trainer = Trainer(train, config, tmp_path, test=test)
    start = trainer.evaluate()["psnr"]
    metrics = trainer.train(progress=False)
    assert metrics["psnr"] > 28.0 and metrics["psnr"] > start + 5.0


def test_trainer_adds_the_sky_sphere_to_the_initial_points(tmp_path):
    cameras = ring_cameras(4, radius=3.0, height=0.2)
    scene = _sky_scene(cameras, 8, [f"r_{i}" for i in range(4)])
    config = TrainConfig(steps=1, sh_degree=0, eval_every=0, checkpoint_every=0, backend="torch")
    config.init.method, config.init.num_points, config.init.sky_points, config.init.sky_radius = "random", 20, 30, 5.0
    trainer = Trainer(scene, config, tmp_path)
    means = trainer.field.gaussians.means.detach()
    assert means.shape[0] == 50
    expected, _ = sky_sphere(scene, 30, 5.0)
    torch.testing.assert_close(means[20:], expected)
    with pytest.raises(ValueError, match="sky_points"):
        config.init.sky_points = -1
        config.validate()
