"""Gaussians: 3DGS initialisation against brute force, PLY round trip, 3DGS / gsplat column layout."""
import math

import numpy as np
import pytest
import torch
from gsplat import export_splats
from gsplat.strategy import DefaultStrategy
from gsplat.strategy.ops import duplicate
from plyfile import PlyData, PlyElement

from distill3d.gaussians import SH_C0, GaussianInitConfig, Gaussians, knn_squared_distances


def _random_gaussians(n=50, degree=2, extras=True):
    g = Gaussians.from_points(torch.randn(n, 3), torch.rand(n, 3), GaussianInitConfig(
        sh_degree=degree, feature_dim=6 if extras else 0, material_channels=(("albedo", 3), ("roughness", 1)) if extras else ()))
    with torch.no_grad():
        for p in g.params.values():
            p.add_(torch.randn_like(p))
    return g


def test_knn_matches_brute_force():
    points = torch.randn(300, 3)
    dist2 = torch.cdist(points.double(), points.double()) ** 2
    dist2.fill_diagonal_(float("inf"))
    expected = dist2.topk(3, largest=False).values.mean(1)
    torch.testing.assert_close(knn_squared_distances(points, 3).double(), expected, rtol=1e-5, atol=1e-7)


def test_init_from_points_follows_3dgs():
    # four points on a line, spacing 1: the 3 nearest neighbours of an end point are at 1, 2, 3
    points = torch.tensor([[0.0, 0, 0], [1.0, 0, 0], [2.0, 0, 0], [3.0, 0, 0]])
    colors = torch.tensor([[1.0, 0.5, 0.0]]).repeat(4, 1)
    g = Gaussians.from_points(points, colors, GaussianInitConfig(sh_degree=3, feature_dim=8, init_scale=2.0))
    end_scale = math.log(2.0 * math.sqrt((1 + 4 + 9) / 3))
    mid_scale = math.log(2.0 * math.sqrt((1 + 1 + 4) / 3))
    torch.testing.assert_close(g.params["scales"], torch.tensor([end_scale, mid_scale, mid_scale, end_scale])[:, None].repeat(1, 3))
    torch.testing.assert_close(g.activated_opacities, torch.full((4,), 0.1))
    torch.testing.assert_close(0.5 + SH_C0 * g.params["sh0"][:, 0], colors)  # gsplat's sh2rgb
    torch.testing.assert_close(g.quats, torch.tensor([[1.0, 0, 0, 0]]).repeat(4, 1))
    assert g.sh_coeffs.shape == (4, 16, 3) and g.sh_degree == 3 and float(g.params["shN"].detach().abs().max()) == 0
    assert g.features.shape == (4, 8) and g.extra_names == ["features"]


def test_coincident_points_get_finite_scales():
    g = Gaussians.from_points(torch.zeros(5, 3))
    torch.testing.assert_close(g.params["scales"], torch.full((5, 3), math.log(math.sqrt(1e-7))))


def test_ply_round_trip_is_exact(tmp_path):
    g = _random_gaussians()
    path = g.save_ply(tmp_path / "splats.ply")
    h = Gaussians.load_ply(path)
    assert set(h.params) == set(g.params)
    for name in g.params:
        torch.testing.assert_close(h.params[name], g.params[name], rtol=0, atol=0)


def test_ply_columns_match_3dgs_and_gsplat(tmp_path):
    g = _random_gaussians(extras=True)
    names = [p.name for p in PlyData.read(str(g.save_ply(tmp_path / "ours.ply")))["vertex"].properties]
    num_rest = 3 * 8
    expected = (["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"] + [f"f_rest_{i}" for i in range(num_rest)]
                + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
                + ["albedo_0", "albedo_1", "albedo_2", "roughness_0"] + [f"feat_{i}" for i in range(6)])
    assert names == expected
    # every column gsplat's exporter writes holds the same values in ours (f_rest channel-major included)
    p = {k: v.detach() for k, v in g.params.items()}
    export_splats(p["means"], p["scales"], p["quats"], p["opacities"], p["sh0"], p["shN"], save_to=str(tmp_path / "gs.ply"))
    ref = PlyData.read(str(tmp_path / "gs.ply"))["vertex"]
    ours = PlyData.read(str(tmp_path / "ours.ply"))["vertex"]
    for prop in ref.properties:
        np.testing.assert_array_equal(ours[prop.name], ref[prop.name], err_msg=prop.name)
    # 3DGS's own layout: f_rest_{c * (K - 1) + k} is coefficient k of channel c
    np.testing.assert_array_equal(ours["f_rest_9"], p["shN"][:, 1, 1].numpy())


def test_load_plain_3dgs_ply_degree_0(tmp_path):
    n = 7
    cols = ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    data = np.zeros(n, dtype=[(c, "<f4") for c in cols])
    for i, c in enumerate(cols):
        data[c] = np.arange(n) + 10 * i
    PlyData([PlyElement.describe(data, "vertex")]).write(str(tmp_path / "plain.ply"))
    g = Gaussians.load_ply(tmp_path / "plain.ply")
    assert len(g) == n and g.sh_degree == 0 and g.extra_names == [] and g.features is None
    torch.testing.assert_close(g.params["scales"][:, 1], torch.arange(n, dtype=torch.float32) + 80)


def test_splat_export_through_gsplat(tmp_path):
    g = _random_gaussians(n=20, extras=False)
    path = g.export(tmp_path / "g.splat", "splat")
    assert path.stat().st_size == 20 * 32  # antimatter15 .splat: 32 bytes per splat
    with pytest.raises(ValueError, match="format"):
        g.export(tmp_path / "g.xyz", "xyz")


def test_params_work_with_gsplat_strategy():
    g = _random_gaussians(n=20)
    optimizers = {k: torch.optim.Adam([p], lr=1e-3) for k, p in g.params.items()}
    DefaultStrategy().check_sanity(g.params, optimizers)
    mask = torch.zeros(20, dtype=torch.bool)
    mask[:4] = True
    duplicate(g.params, optimizers, {}, mask)
    assert len(g) == 24 and g.features.shape == (24, 6) and g.params["albedo"].shape == (24, 3)


def test_bad_input(tmp_path):
    with pytest.raises(ValueError, match="means"):
        Gaussians(torch.zeros(3, 2), torch.zeros(3, 4), torch.zeros(3, 3), torch.zeros(3), torch.zeros(3, 1, 3), torch.zeros(3, 0, 3))
    with pytest.raises(ValueError, match="shN"):
        Gaussians(torch.zeros(3, 3), torch.zeros(3, 4), torch.zeros(3, 3), torch.zeros(3), torch.zeros(3, 1, 3), torch.zeros(3, 2, 3))
    with pytest.raises(ValueError, match="points"):
        Gaussians.from_points(torch.tensor([[0.0, 0.0, float("nan")], [1.0, 0, 0]]))
    with pytest.raises(ValueError, match="at least 2 points"):
        Gaussians.from_points(torch.zeros(1, 3))
    with pytest.raises(ValueError, match="init_opacity"):
        Gaussians.from_points(torch.randn(4, 3), config=GaussianInitConfig(init_opacity=1.0))
    g = _random_gaussians(n=5, extras=False)
    with torch.no_grad():
        g.params["opacities"][2] = float("nan")
    with pytest.raises(ValueError, match="opacity has non-finite"):
        g.save_ply(tmp_path / "bad.ply")
    with pytest.raises(FileNotFoundError):
        Gaussians.load_ply(tmp_path / "missing.ply")
    data = np.zeros(3, dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4")])
    PlyData([PlyElement.describe(data, "vertex")]).write(str(tmp_path / "cloud.ply"))
    with pytest.raises(ValueError, match="not a 3DGS PLY"):
        Gaussians.load_ply(tmp_path / "cloud.ply")
