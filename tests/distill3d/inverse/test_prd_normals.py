"""Camera-facing sides of Gaussian axes (``normals.camera_facing_signs``) against the cameras' known side."""
import math

import torch

from distill3d.data.cameras import intrinsics_from_fov, look_at_opengl, opengl_to_viewmat
from distill3d.inverse.normals import camera_facing_signs

SIZE = 32  # image width and height of the test cameras


def _ring(height: float, count: int, radius: float = 2.0, target: tuple[float, float, float] = (0.0, 0.0, 0.0)):
    """``count`` cameras on a circle at ``height`` looking at ``target``: viewmats [count, 4, 4], Ks."""
    angles = torch.arange(count, dtype=torch.float32) * (2 * math.pi / count)
    eyes = torch.stack([radius * torch.cos(angles), radius * torch.sin(angles), torch.full_like(angles, height)], -1)
    viewmats = opengl_to_viewmat(look_at_opengl(eyes, torch.tensor(target), torch.tensor([0.0, 0.0, 1.0])))
    return viewmats, intrinsics_from_fov(math.radians(60.0), SIZE, SIZE).expand(count, 3, 3)


def _thin_slab(count: int = 50, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A two-sided slab: Gaussians in the planes z = +-0.01 with axes along z of random sign."""
    generator = torch.Generator().manual_seed(seed)
    xy = torch.rand(count, 2, generator=generator) - 0.5
    z = torch.where(torch.arange(count) % 2 == 0, 0.01, -0.01)[:, None]
    signs = torch.where(torch.rand(count, 1, generator=generator) < 0.5, -1.0, 1.0)
    return torch.cat([xy, z], -1), signs * torch.tensor([0.0, 0.0, 1.0])


def test_a_thin_slab_seen_from_one_side_faces_that_side():
    means, axes = _thin_slab()
    for height, expected in ((1.5, 1.0), (-1.5, -1.0)):  # cameras above: +z on both layers; below: -z
        viewmats, Ks = _ring(height, 8)
        normals = camera_facing_signs(means, axes, viewmats, Ks, SIZE, SIZE)[:, None] * axes
        torch.testing.assert_close(normals[:, 2], torch.full((len(means),), expected))


def test_only_cameras_whose_frustum_holds_the_gaussian_vote():
    means, axes = _thin_slab()
    above, K_above = _ring(1.5, 3)
    # 5 cameras below the slab looking away from it (down, at a point far under them): outvoting the 3
    # above if they voted, but the slab is behind them
    below, K_below = _ring(-1.5, 5, target=(0.0, 0.0, -10.0))
    signs = camera_facing_signs(means, axes, torch.cat([above, below]), torch.cat([K_above, K_below]), SIZE, SIZE)
    torch.testing.assert_close((signs[:, None] * axes)[:, 2], torch.ones(len(means)))
    # seen by no camera at all (behind every one): the tie rule keeps the axis as it is
    signs = camera_facing_signs(means, axes, below, K_below, SIZE, SIZE)
    torch.testing.assert_close(signs, torch.ones(len(means)))


def test_the_vote_is_a_majority_of_the_cameras_that_see_it():
    # a vertical Gaussian (axis +x) at the origin seen by 3 cameras on the +x side and 5 on the -x side
    means, axes = torch.zeros(1, 3), torch.tensor([[1.0, 0.0, 0.0]])
    viewmats, Ks = _ring(0.5, 16)
    centres_x = torch.linalg.inv(viewmats)[:, 0, 3]
    plus, minus = torch.nonzero(centres_x > 0.1)[:3, 0], torch.nonzero(centres_x < -0.1)[:5, 0]
    chosen = torch.cat([plus, minus])
    assert camera_facing_signs(means, axes, viewmats[chosen], Ks[chosen], SIZE, SIZE).item() == -1.0
    chosen = torch.cat([plus, minus[:2]])
    assert camera_facing_signs(means, axes, viewmats[chosen], Ks[chosen], SIZE, SIZE).item() == 1.0
