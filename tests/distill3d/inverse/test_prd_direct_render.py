"""The scene builder's direct-only pass (``RenderSettings.direct_pass``) against an analytic answer.

A Lambertian table (albedo rho) under a constant environment L with a sphere of radius r resting on it:
a table point at distance D from the sphere's centre sees the sphere as a cap of half-angle asin(r / D)
whose axis makes the same angle with the vertical, just touching the horizon, so the cosine-weighted
solid angle it blocks is pi (r / D)^3 and the direct radiance is

    L_direct = rho L (1 - (r / D)^3).

The full render adds the light the sphere reflects onto the table, which the direct pass must leave out.
"""
import json

import numpy as np
import pytest

from distill3d.data.cameras import intrinsics_from_fov
from distill3d.data.colorspace import srgb_to_linear
from distill3d.data.environment import EnvironmentConfig
from distill3d.data.files import read_image
from distill3d.data.recipes import CameraRig, MaterialSpec, ObjectSpec, RenderSettings, SceneRecipe, TableSpec

pytest.importorskip("mitsuba")
pytest.importorskip("pybullet_data")

RHO, LIGHT, RADIUS = 0.5, 1.0, 0.2


def test_direct_pass_matches_the_analytic_shadow_of_a_sphere(tmp_path):
    from distill3d.data.builder import build_scene

    grey = (LIGHT,) * 3
    recipe = SceneRecipe(
        name="direct_check",
        objects=(ObjectSpec("ball", "sphere", MaterialSpec((0.9, 0.9, 0.9), lambertian=True), (0.0, 0.0), 2 * RADIUS),),
        table=TableSpec(material=MaterialSpec((RHO,) * 3, lambertian=True)),
        environment=EnvironmentConfig(height=16, width=32, zenith_color=grey, horizon_color=grey, ground_color=grey,
                                      sun_intensity=0.0),
        cameras=CameraRig(num_train=1, num_test=0, radius=1.3, elevation_deg=(70.0, 70.0), fov_x_deg=50.0,
                          target=(0.0, 0.0, 0.0)),
        render=RenderSettings(width=24, height=24, spp=256, max_depth=8, direct_pass=True),
    )
    out = build_scene(recipe, tmp_path / "scene", progress=False)
    frame = json.loads((out / "transforms_train.json").read_text())["frames"][0]
    direct = np.load(out / frame["direct_file_path"])["radiance"].astype(np.float64)
    full = srgb_to_linear(read_image(out / "train/r_000.png")[..., :3].astype(np.float64) / 255.0)
    depth = np.load(out / frame["geometry_file_path"])["depth"].astype(np.float64)
    mask = read_image(out / "train/r_000_mask.png")
    # world position of every pixel centre from its z-depth
    K = intrinsics_from_fov(np.radians(50.0), 24, 24).numpy().astype(np.float64)
    c2w = np.array(frame["transform_matrix"])
    xs, ys = np.meshgrid(np.arange(24) + 0.5, np.arange(24) + 0.5)
    rays = np.stack([(xs - K[0, 2]) / K[0, 0], (ys - K[1, 2]) / K[1, 1], np.ones_like(xs)], -1) * depth[..., None]
    points = (rays * np.array([1.0, -1.0, -1.0])) @ c2w[:3, :3].T + c2w[:3, 3]  # OpenCV -> OpenGL camera axes
    distance = np.linalg.norm(points - np.array([0.0, 0.0, RADIUS]), axis=-1)
    inside = np.abs(points[..., :2]).max(-1) < 0.7  # off the table's edges (pixels there mix table and sky)
    on_table = np.pad(mask == 1, 1)
    # pixels whose 8 neighbours are table too: a pixel's samples spread over its area, and at the ball's
    # silhouette they would mix ball and table
    core = np.all([np.roll(np.roll(on_table, dy, 0), dx, 1) for dy in (-1, 0, 1) for dx in (-1, 0, 1)], 0)[1:-1, 1:-1]
    table = core & inside & (distance > 1.3 * RADIUS) & (np.abs(points[..., 2]) < 1e-3)
    expected = RHO * LIGHT * (1.0 - (RADIUS / distance) ** 3)
    assert table.sum() > 100
    ratio = direct.mean(-1)[table] / expected[table]
    assert abs(ratio.mean() - 1.0) < 0.01
    assert np.abs(ratio - 1.0).max() < 0.05  # single pixels carry sampling noise
    # the shadow is resolved: near the ball the table is much darker than far from it
    near, far = table & (distance < 1.6 * RADIUS), table & (distance > 3.5 * RADIUS)
    assert direct.mean(-1)[near].mean() < 0.85 * direct.mean(-1)[far].mean()
    # the full render adds the light the ball reflects onto the table (more where the ball fills the sky)
    gain = full.mean(-1) - direct.mean(-1)
    assert gain[near].mean() > 0.02 and gain[near].mean() > 2 * abs(gain[far].mean())
