"""Camera conventions: hand-computed projections, OpenGL <-> OpenCV round trips, unprojection."""
import math

import numpy as np
import pytest
import torch

from distill3d.data.cameras import (
    camera_centers, intrinsics_from_fov, look_at_opengl, opengl_to_viewmat, project_points, rigid_inverse,
    unproject_depth, viewmat_to_opengl,
)
from distill3d.data.colorspace import linear_to_srgb, srgb_to_linear


def _camera_above_origin():
    c2w = look_at_opengl(torch.tensor([[0.0, 0.0, 5.0]], dtype=torch.float64), torch.zeros(3, dtype=torch.float64),
                         torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64))
    K = torch.tensor([[100.0, 0, 50], [0, 100.0, 50], [0, 0, 1]], dtype=torch.float64)
    return c2w, opengl_to_viewmat(c2w), K


def test_projection_matches_hand_computation():
    # camera at z = 5 looking down -z with +y up: world +x is image right, world +y is image up (v decreases)
    _, viewmat, K = _camera_above_origin()
    points = torch.tensor([[0.0, 0, 0], [1.0, 0, 0], [0.0, 1, 0], [1.0, 1, 1]], dtype=torch.float64)
    uv, depth = project_points(points, viewmat, K[None])
    expected_uv = torch.tensor([[50.0, 50], [70, 50], [50, 30], [50 + 100 / 4, 50 - 100 / 4]], dtype=torch.float64)
    torch.testing.assert_close(uv[0], expected_uv)
    torch.testing.assert_close(depth[0], torch.tensor([5.0, 5, 5, 4], dtype=torch.float64))


def test_opengl_viewmat_round_trip_and_centres():
    torch.manual_seed(0)
    eyes = torch.randn(6, 3, dtype=torch.float64) * 3
    c2w = look_at_opengl(eyes, torch.tensor([0.1, -0.2, 0.3], dtype=torch.float64), torch.tensor([0.0, 0, 1], dtype=torch.float64))
    viewmats = opengl_to_viewmat(c2w)
    torch.testing.assert_close(viewmat_to_opengl(viewmats), c2w)
    torch.testing.assert_close(camera_centers(viewmats), eyes)
    torch.testing.assert_close(rigid_inverse(viewmats) @ viewmats, torch.eye(4, dtype=torch.float64).expand(6, 4, 4))
    # the look-at target projects to the principal point, in front of the camera
    K = intrinsics_from_fov(math.radians(50), 64, 48)
    uv, depth = project_points(torch.tensor([[0.1, -0.2, 0.3]], dtype=torch.float64), viewmats, K.expand(6, 3, 3))
    torch.testing.assert_close(uv[:, 0], torch.tensor([[32.0, 24.0]], dtype=torch.float64).expand(6, 2))
    assert bool((depth > 0).all())


def test_intrinsics_from_fov():
    K = intrinsics_from_fov(math.radians(90), 200, 100)
    torch.testing.assert_close(K, torch.tensor([[100.0, 0, 100], [0, 100, 50], [0, 0, 1]], dtype=torch.float64))
    with pytest.raises(ValueError, match="fov_x"):
        intrinsics_from_fov(4.0, 10, 10)


def test_unproject_then_project_returns_pixel_centres():
    _, viewmat, K = _camera_above_origin()
    depth = torch.rand(4, 6, dtype=torch.float64) + 2.0
    points = unproject_depth(depth, K, viewmat[0])
    uv, z = project_points(points.reshape(-1, 3), viewmat, K[None])
    jj, ii = torch.meshgrid(torch.arange(4) + 0.5, torch.arange(6) + 0.5, indexing="ij")
    torch.testing.assert_close(uv[0], torch.stack([ii, jj], -1).reshape(-1, 2).double())
    torch.testing.assert_close(z[0], depth.reshape(-1))


def test_look_at_rejects_view_along_up():
    with pytest.raises(ValueError, match="up"):
        look_at_opengl(torch.tensor([[0.0, 0, 3]]), torch.zeros(3), torch.tensor([0.0, 0, 1]))


def test_srgb_round_trip_and_reference_values():
    x = np.linspace(0, 1, 101)
    np.testing.assert_allclose(srgb_to_linear(linear_to_srgb(x)), x, atol=1e-12)
    # IEC 61966-2-1 reference points: 0.5 linear -> 0.735357, 0.0031308 at the knee -> 0.04045
    np.testing.assert_allclose(linear_to_srgb(np.array([0.5, 0.0031308])), [0.7353569, 0.04045], atol=1e-6)
    t = torch.tensor([0.0, 0.2, 1.5], requires_grad=True)
    out = linear_to_srgb(t)
    out.sum().backward()
    assert torch.isfinite(t.grad).all() and out[2].item() == pytest.approx(1.0)
