"""Environment maps: the direction convention checked against mitsuba, the procedural sky, file I/O."""
import numpy as np
import pytest

from distill3d.data.environment import (
    EnvironmentConfig, check_environment, direction_to_equirect, equirect_directions, load_environment, sun_direction,
    synthesize_environment,
)
from distill3d.data.mitsuba_setup import ensure_variant


@pytest.mark.parametrize("row,col", [(10, 20), (5, 50), (25, 3)])
def test_environment_convention_matches_mitsuba(row, col):
    """A camera aimed along equirect_directions(row, col) sees that texel at its image centre."""
    mi = ensure_variant()
    height, width = 32, 64
    env = np.zeros((height, width, 3), np.float32)
    env[row, col] = 1000.0
    direction = equirect_directions(height, width)[row, col]
    np.testing.assert_allclose(direction_to_equirect(direction, height, width), [row, col], atol=1e-9)
    T = mi.ScalarTransform4f
    scene = mi.load_dict({
        "type": "scene", "integrator": {"type": "path"},
        "sensor": {"type": "perspective", "fov": 30, "to_world": T().look_at(origin=[0, 0, 0], target=direction.tolist(), up=[0, 0, 1]),
                   "film": {"type": "hdrfilm", "width": 33, "height": 33, "rfilter": {"type": "box"}},
                   "sampler": {"type": "stratified", "sample_count": 16}},
        "env": {"type": "envmap", "bitmap": mi.Bitmap(env), "to_world": T().rotate([1, 0, 0], 90)},
    })
    image = np.array(mi.render(scene)).sum(-1)
    ys, xs = np.mgrid[0:33, 0:33]
    centroid = ((image * ys).sum() / image.sum(), (image * xs).sum() / image.sum())
    np.testing.assert_allclose(centroid, (16.0, 16.0), atol=0.25)


def test_sky_has_its_sun_where_configured():
    config = EnvironmentConfig(height=64, width=128, sun_azimuth_deg=120.0, sun_elevation_deg=30.0)
    env = synthesize_environment(config)
    assert env.dtype == np.float32 and env.shape == (64, 128, 3) and float(env.min()) >= 0
    row, col = np.unravel_index(env.sum(-1).argmax(), env.shape[:2])
    dirs = equirect_directions(64, 128)
    # the brightest texel is the one nearest the sun direction
    assert np.dot(dirs[row, col], sun_direction(config)) == pytest.approx((dirs @ sun_direction(config)).max())
    np.testing.assert_allclose(np.linalg.norm(dirs, axis=-1), 1.0)
    assert env[0].std(axis=0).max() < 1e-6  # row 0 is the single zenith direction


def test_environment_files_and_errors(tmp_path):
    mi = ensure_variant()
    env = synthesize_environment(EnvironmentConfig(height=8, width=16))
    np.savez(tmp_path / "two.npz", train=env, relight=2 * env)
    np.testing.assert_array_equal(load_environment(tmp_path / "two.npz", "relight"), 2 * env)
    with pytest.raises(ValueError, match="key="):
        load_environment(tmp_path / "two.npz")
    np.save(tmp_path / "one.npy", env)
    np.testing.assert_array_equal(load_environment(tmp_path / "one.npy"), env)
    mi.Bitmap(env).write(str(tmp_path / "env.exr"))
    np.testing.assert_allclose(load_environment(tmp_path / "env.exr"), env, rtol=1e-6)
    with pytest.raises(FileNotFoundError):
        load_environment(tmp_path / "missing.exr")
    with pytest.raises(ValueError, match="negative"):
        check_environment(-env)
    with pytest.raises(ValueError, match="shape"):
        check_environment(env[..., :2])
    bad = env.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        check_environment(bad)
