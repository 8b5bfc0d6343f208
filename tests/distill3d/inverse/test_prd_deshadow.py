"""De-shadowed albedo initialisation (``PRDModel.deshadow_albedo``): against the analytic visible fraction."""
import math

import pytest
import torch

from distill3d.data import Scene
from distill3d.data.cameras import intrinsics_from_fov, look_at_opengl, opengl_to_viewmat
from distill3d.gaussians import SH_C0, Gaussians
from distill3d.data.colorspace import linear_to_srgb
from distill3d.inverse.config import ModelConfig
from distill3d.inverse.model import PRDModel

COLOUR = torch.tensor([0.2, 0.1, 0.4])  # linear base colour of every Gaussian
OPACITY = 0.999  # the occluders' (compositing's ALPHA_MAX): they let 1 - OPACITY through
TILT = math.radians(30.0)  # the receiver's normal, from +z towards the wall


def _receiver_wall_and_floor(deshadow: bool, floor: float = 0.2, *, with_floor: bool = True, side: str = "light",
                             cameras: Scene | None = None) -> PRDModel:
    """A small flat Gaussian at the origin with its normal n tilted by TILT from +z towards +x, beside a huge
    opaque wall in the plane x = 0.1 (hiding every direction with d_x > 0) above a huge opaque floor at
    z = -0.05 (hiding the receiver's back side, so the side of n is the open one).

    A uniform half-space of light {d_x < 0} gives a normal at angle gamma to -x the sky-view irradiance
    pi L (1 + cos gamma) / 2: here cos gamma = -sin(TILT), so the cosine-weighted visible fraction of the
    hemisphere of n is (1 - sin TILT) / 2 = 0.25 (a plain solid-angle fraction would be 1/2 - TILT / pi = 1/3).
    Without the floor the back side -n is open too: cos gamma = sin(TILT), a fraction (1 + sin TILT) / 2 = 0.75."""
    count = 3 if with_floor else 2
    means = torch.tensor([[0.0, 0.0, 0.0], [0.1, 0.0, 0.0], [0.0, 0.0, -0.05]])[:count]
    scales = torch.tensor([[0.02, 0.02, 0.001], [0.001, 100.0, 100.0], [100.0, 100.0, 0.001]])[:count]
    tilt = torch.tensor([math.cos(TILT / 2), 0.0, math.sin(TILT / 2), 0.0])  # about +y: z -> (sin, 0, cos)
    quats = torch.stack([tilt, torch.tensor([1.0, 0, 0, 0]), torch.tensor([1.0, 0, 0, 0])])[:count]
    opacities = torch.tensor([0.9, OPACITY, OPACITY])[:count]
    sh0 = ((linear_to_srgb(COLOUR) - 0.5) / SH_C0).expand(count, 3)[:, None]
    gaussians = Gaussians(means, quats, torch.log(scales), torch.logit(opacities), sh0.clone(), torch.zeros(count, 0, 3))
    config = ModelConfig(env_resolution=8)
    # 512 directions: with the default 128 the bins straddling the wall's edge err by ~0.03 in the fraction
    config.visibility.enabled, config.visibility.num_directions = True, 512
    config.init.albedo_deshadow, config.init.albedo_deshadow_floor = deshadow, floor
    config.init.albedo_deshadow_side = side
    if not with_floor:  # without the floor's extent the default 256 cells make the bake 5x slower, not finer here
        config.visibility.grid_cells = 16
    model = PRDModel.from_radiance(gaussians, config)
    model.bake_visibility(scene_scale=1.0, cameras=cameras)
    return model


def _cameras_on_the_open_side(count: int = 4) -> Scene:
    """Cameras at x = -0.5, z = 2 (on the side of the receiver's normal n, away from the wall) looking at it."""
    eyes = torch.tensor([[-0.5, 0.3 * (k - (count - 1) / 2), 2.0] for k in range(count)])
    viewmats = opengl_to_viewmat(look_at_opengl(eyes, torch.zeros(3), torch.tensor([0.0, 0.0, 1.0])))
    K = intrinsics_from_fov(math.radians(40.0), 16, 16)
    return Scene(images=torch.zeros(count, 16, 16, 3), Ks=K.expand(count, 3, 3).clone(), viewmats=viewmats,
                 names=[str(k) for k in range(count)])


def test_deshadow_divides_by_the_cosine_weighted_visible_fraction():
    model = _receiver_wall_and_floor(deshadow=True)
    fraction = (1.0 - math.sin(TILT)) / 2.0
    expected = (COLOUR / fraction).clamp(max=1.0)  # the blue channel saturates
    torch.testing.assert_close(model.albedo()[0], expected, rtol=0.04, atol=1e-3)


def test_the_side_the_cameras_see_keeps_a_thin_surface_from_taking_its_open_back():
    # no floor: the back side -n sees 0.75 of its hemisphere, the front (the cameras' side) 0.25
    model = _receiver_wall_and_floor(deshadow=False, with_floor=False)  # baked, albedo still the colour
    radiance_colour = model.gaussians.params["albedo"].clone()
    model.config.init.albedo_deshadow_side = "light"
    torch.testing.assert_close(model.deshadow_albedo()[0], COLOUR / ((1.0 + math.sin(TILT)) / 2.0), rtol=0.04, atol=1e-3)
    model.gaussians.params["albedo"].data.copy_(radiance_colour)
    model.config.init.albedo_deshadow_side = "cameras"
    expected = (COLOUR / ((1.0 - math.sin(TILT)) / 2.0)).clamp(max=1.0)
    torch.testing.assert_close(model.deshadow_albedo(_cameras_on_the_open_side())[0], expected, rtol=0.04, atol=1e-3)


def test_camera_side_needs_the_cameras():
    with pytest.raises(ValueError, match="needs the training cameras"):
        _receiver_wall_and_floor(deshadow=True, side="cameras")
    with pytest.raises(ValueError, match="albedo_deshadow_side"):
        ModelConfig().init.__class__(albedo_deshadow_side="sun")


def test_deshadow_floor_limits_the_brightening():
    model = _receiver_wall_and_floor(deshadow=True, floor=0.5)  # 0.5 > the visible fraction 0.25
    torch.testing.assert_close(model.albedo()[0], COLOUR / 0.5, atol=1e-3, rtol=0)


def test_option_off_keeps_the_radiance_colour_and_grey_init_is_never_deshadowed():
    plain = _receiver_wall_and_floor(deshadow=False)
    torch.testing.assert_close(plain.albedo(), COLOUR.expand(3, 3), atol=1e-4, rtol=0)
    fresh = PRDModel.from_radiance(plain.gaussians, plain.config)  # today's initialisation, before any bake
    assert torch.equal(plain.albedo(), fresh.albedo())
    grey = ModelConfig(env_resolution=8)
    grey.visibility.enabled, grey.init.albedo, grey.init.albedo_deshadow = True, 0.5, True
    model = PRDModel.from_radiance(plain.gaussians, grey)
    model.bake_visibility(scene_scale=1.0)
    torch.testing.assert_close(model.albedo(), torch.full((3, 3), 0.5), atol=1e-6, rtol=0)


def test_deshadow_needs_the_baked_visibility():
    model = PRDModel.from_radiance(_receiver_wall_and_floor(deshadow=False).gaussians, ModelConfig(env_resolution=8))
    with pytest.raises(ValueError, match="baked visibility"):
        model.deshadow_albedo()
    with pytest.raises(ValueError, match="albedo_deshadow_floor"):
        ModelConfig().init.__class__(albedo_deshadow_floor=0.0)
