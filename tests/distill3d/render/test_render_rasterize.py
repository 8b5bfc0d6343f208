"""The rasterize() API on the torch reference: analytic values, render modes, the feature-gradient
switch, empty / culled scenes, input validation, gradcheck and gsplat's densification strategies."""
import math

import pytest
import torch

from distill3d.render import project_gaussians, rasterize
from distill3d.render.random_scene import SceneConfig, random_scene
from distill3d.render.sh import sh_colors


def _one_gaussian(opacity=0.6, sigma=0.1, z=3.0, f=40.0, dtype=torch.float64):
    """One isotropic Gaussian on the optical axis of a 17 x 15 camera whose centre is pixel (8, 7)."""
    return dict(
        means=torch.tensor([[0.0, 0.0, z]], dtype=dtype),
        quats=torch.tensor([[1.0, 0.0, 0.0, 0.0]], dtype=dtype),
        scales=torch.full((1, 3), sigma, dtype=dtype),
        opacities=torch.tensor([opacity], dtype=dtype),
        colors=torch.tensor([[0.9, 0.5, 0.1]], dtype=dtype),
        viewmats=torch.eye(4, dtype=dtype)[None],
        Ks=torch.tensor([[[f, 0, 8.5], [0, f, 7.5], [0, 0, 1]]], dtype=dtype),
        width=17,
        height=15,
    )


def test_analytic_isotropic_gaussian():
    o, sigma, z, f = 0.6, 0.1, 3.0, 40.0
    scene = _one_gaussian(o, sigma, z, f)
    bg = torch.tensor([[0.0, 0.2, 1.0]], dtype=torch.float64)
    render, _, alpha, meta = rasterize(**scene, backgrounds=bg, render_mode="RGB+ED", backend="torch")
    var = (f * sigma / z) ** 2 + 0.3  # EWA variance in pixels^2 plus the eps2d low-pass
    color = scene["colors"][0]
    torch.testing.assert_close(render[0, 7, 8, :3], o * color + (1 - o) * bg[0])
    torch.testing.assert_close(render[0, 7, 8, 3].item(), z)  # expected depth
    a_right = o * math.exp(-0.5 / var)  # one pixel to the right
    a_diag = o * math.exp(-1.0 / var)  # one pixel diagonally
    torch.testing.assert_close(render[0, 7, 9, :3], a_right * color + (1 - a_right) * bg[0])
    torch.testing.assert_close(alpha[0, 8, 9, 0].item(), a_diag)
    assert meta["radii"][0, 0, 0].item() == math.ceil(3 * math.sqrt(var))
    depth, _, _, _ = rasterize(**scene, render_mode="D", backend="torch")
    torch.testing.assert_close(depth[0, 7, 8, 0].item(), o * z)  # accumulated depth


@pytest.mark.parametrize("mode, channels", [("RGB", 3), ("D", 1), ("ED", 1), ("RGB+D", 4), ("RGB+ED", 4)])
def test_render_modes_share_one_pass(mode, channels):
    scene = random_scene(SceneConfig(n_gaussians=200, width=24, height=20, n_cameras=2, feature_dim=5, blends_per_pixel=8))
    render, feats, alpha, meta = rasterize(**scene, render_mode=mode, backend="torch")
    assert render.shape == (2, 20, 24, channels) and feats.shape == (2, 20, 24, 5) and alpha.shape == (2, 20, 24, 1)
    full, full_feats, _, _ = rasterize(**scene, render_mode="RGB+D", backend="torch")
    if "RGB" in mode:
        torch.testing.assert_close(render[..., :3], full[..., :3])
    if mode.endswith("ED"):
        covered = alpha[..., 0] > 1e-3
        torch.testing.assert_close(render[..., -1][covered], (full[..., 3:] / alpha)[..., 0][covered])
    elif "D" in mode:
        torch.testing.assert_close(render[..., -1], full[..., 3])
    torch.testing.assert_close(feats, full_feats)


def test_sh_colors_equal_precomputed_colors():
    scene = random_scene(SceneConfig(n_gaussians=150, width=24, height=16, sh_degree=3, blends_per_pixel=6))
    render, _, _, _ = rasterize(**scene, backend="torch")
    colors = sh_colors(3, scene["means"], scene["colors"], scene["viewmats"])[0]
    plain = {k: v for k, v in scene.items() if k != "sh_degree"}
    plain["colors"] = colors
    expected, _, _, _ = rasterize(**plain, backend="torch")
    torch.testing.assert_close(render, expected)


def test_antialiased_scales_opacity_by_compensation():
    scene = random_scene(SceneConfig(n_gaussians=100, width=20, height=16, blends_per_pixel=6))
    render, _, _, _ = rasterize(**scene, antialiased=True, backend="torch")
    _, _, _, _, comp = project_gaussians(scene["means"], scene["quats"], scene["scales"], scene["viewmats"], scene["Ks"], 20, 16)
    expected, _, _, _ = rasterize(**{**scene, "opacities": scene["opacities"] * comp[0]}, backend="torch")
    torch.testing.assert_close(render, expected)


def test_quaternions_are_normalised_silently():
    scene = random_scene(SceneConfig(n_gaussians=80, width=16, height=16, blends_per_pixel=6))
    render, _, _, _ = rasterize(**scene, backend="torch")
    scaled, _, _, _ = rasterize(**{**scene, "quats": scene["quats"] * 7.5}, backend="torch")
    torch.testing.assert_close(render, scaled)


def test_empty_scene_renders_background():
    scene = _one_gaussian(dtype=torch.float32)
    empty = {k: (v[:0] if k in ("means", "quats", "scales", "opacities", "colors") else v) for k, v in scene.items()}
    bg = torch.tensor([[0.1, 0.2, 0.3]])
    render, feats, alpha, meta = rasterize(**empty, features=torch.zeros(0, 4), backgrounds=bg, render_mode="RGB+D", backend="torch")
    torch.testing.assert_close(render[..., :3], bg[:, None, None, :].expand(1, 15, 17, 3))
    assert (render[..., 3] == 0).all() and (alpha == 0).all() and (feats == 0).all()
    assert meta["means2d"].shape == (1, 0, 2) and meta["radii"].shape == (1, 0, 2)


def test_gaussians_behind_camera_or_off_screen_are_culled():
    scene = _one_gaussian(dtype=torch.float32)
    scene["means"] = torch.tensor([[0.0, 0.0, -3.0], [40.0, 0.0, 3.0], [0.0, 0.0, 0.0]])
    scene.update(quats=scene["quats"].repeat(3, 1), scales=scene["scales"].repeat(3, 1),
                 opacities=torch.full((3,), 0.9), colors=torch.ones(3, 3))
    for key in ("means", "quats", "scales", "opacities", "colors"):
        scene[key] = scene[key].requires_grad_(True)
    render, _, alpha, meta = rasterize(**scene, backend="torch")
    assert (meta["radii"] == 0).all() and (alpha == 0).all() and (render == 0).all()
    render.sum().backward()
    assert torch.isfinite(scene["means"].grad).all() and (scene["means"].grad == 0).all()


def _params(scene):
    return {k: scene[k].clone().requires_grad_(True) for k in ("means", "quats", "scales", "opacities", "colors", "features")}


@pytest.mark.parametrize("to_geometry", [False, True])
def test_feature_grad_to_geometry_switch(to_geometry):
    scene = random_scene(SceneConfig(n_gaussians=150, width=20, height=16, feature_dim=6, blends_per_pixel=8))
    params = _params(scene)
    cams = {k: scene[k] for k in ("viewmats", "Ks", "width", "height")}
    render, feats, alpha, meta = rasterize(**params, **cams, render_mode="RGB+D", feature_grad_to_geometry=to_geometry, backend="torch")
    (feats**2).sum().backward()
    assert params["features"].grad.abs().sum() > 0 and params["colors"].grad.abs().sum() == 0
    for key in ("means", "quats", "scales", "opacities"):
        assert (params[key].grad.abs().sum() > 0) == to_geometry, key
    # Colour and depth always train geometry.
    params = _params(scene)
    render, feats, alpha, meta = rasterize(**params, **cams, render_mode="RGB+D", feature_grad_to_geometry=to_geometry, backend="torch")
    render.sum().backward()
    assert all(params[k].grad.abs().sum() > 0 for k in ("means", "quats", "scales", "opacities"))


def test_full_rasterize_gradcheck():
    """float64 gradcheck through projection, SH, binning and compositing (RGB + depth + features)."""
    scene = random_scene(SceneConfig(n_gaussians=4, width=8, height=6, sh_degree=1, feature_dim=2, blends_per_pixel=60,
                                     opacity_range=(0.3, 0.7), seed=3), dtype=torch.float64)
    scene["means"] = scene["means"] * 0.1  # all splats overlap every pixel: no tile-border discontinuity
    names = ("means", "quats", "scales", "opacities", "colors", "features")
    fixed = {k: v for k, v in scene.items() if k not in names}

    def run(*tensors):
        render, feats, alpha, _ = rasterize(**dict(zip(names, tensors)), **fixed, render_mode="RGB+ED", tile_size=16, backend="torch")
        return render, feats, alpha

    # fast_mode checks random projections of the Jacobian: every input, a fraction of the cost.
    assert torch.autograd.gradcheck(run, tuple(scene[k].clone().requires_grad_(True) for k in names), fast_mode=True)


def test_default_strategy_step_on_meta():
    from gsplat.strategy import DefaultStrategy

    scene = random_scene(SceneConfig(n_gaussians=200, width=24, height=20, n_cameras=2, blends_per_pixel=8))
    params = torch.nn.ParameterDict({
        "means": scene["means"], "quats": scene["quats"], "scales": torch.log(scene["scales"]),
        "opacities": torch.logit(scene["opacities"]), "colors": scene["colors"],
    })
    optimizers = {k: torch.optim.Adam([p], lr=1e-3) for k, p in params.items()}
    strategy = DefaultStrategy(refine_start_iter=0, refine_every=1, grow_grad2d=0.0, reset_every=10_000, prune_opa=0.0)
    strategy.check_sanity(params, optimizers)
    state = strategy.initialize_state(scene_scale=1.0)
    _, _, alpha, meta = rasterize(
        params["means"], params["quats"], torch.exp(params["scales"]), torch.sigmoid(params["opacities"]), params["colors"],
        scene["viewmats"], scene["Ks"], 24, 20, backend="torch",
    )
    strategy.step_pre_backward(params, optimizers, state, step=1, info=meta)
    (1 - alpha).square().sum().backward()
    grads = meta["means2d"].grad.clone()
    visible = (meta["radii"] > 0).all(dim=-1)
    n_before = len(params["means"])
    strategy._update_state(params, state, meta)  # the statistics step_post_backward accumulates
    scaled = grads * torch.tensor([24 / 2 * 2, 20 / 2 * 2])
    expected = torch.zeros(n_before).index_add_(0, torch.where(visible)[1], scaled[visible].norm(dim=-1))
    torch.testing.assert_close(state["grad2d"], expected)
    torch.testing.assert_close(state["count"], visible.float().sum(0))
    state["grad2d"].zero_()
    state["count"].zero_()
    strategy.step_post_backward(params, optimizers, state, step=1, info=meta)
    assert len(params["means"]) > n_before  # every visible Gaussian with a gradient was cloned or split


@pytest.mark.skipif(not torch.cuda.is_available(), reason="gsplat's MCMC relocation kernel needs CUDA")
def test_mcmc_strategy_step_on_meta():
    from gsplat.strategy import MCMCStrategy

    scene = random_scene(SceneConfig(n_gaussians=200, width=24, height=20, blends_per_pixel=8), device="cuda")
    params = torch.nn.ParameterDict({
        "means": scene["means"], "quats": scene["quats"], "scales": torch.log(scene["scales"]),
        "opacities": torch.logit(scene["opacities"]), "colors": scene["colors"],
    })
    with torch.no_grad():
        params["opacities"][:50] = -10.0  # dead Gaussians to relocate
    optimizers = {k: torch.optim.Adam([p], lr=1e-3) for k, p in params.items()}
    strategy = MCMCStrategy(cap_max=300, refine_start_iter=0, refine_every=1)
    state = strategy.initialize_state()
    render, _, _, meta = rasterize(
        params["means"], params["quats"], torch.exp(params["scales"]), torch.sigmoid(params["opacities"]), params["colors"],
        scene["viewmats"], scene["Ks"], 24, 20,
    )
    render.sum().backward()
    strategy.step_post_backward(params, optimizers, state, step=1, info=meta, lr=1e-3)
    assert len(params["means"]) > 200 and (torch.sigmoid(params["opacities"][:50]) > 0.005).all()


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(opacities=torch.rand(3)), "number of Gaussians|opacities must have shape"),
        (dict(colors=torch.rand(3, 3)), "colors must have shape"),
        (dict(features=torch.rand(3, 4)), "features must have shape"),
        (dict(means=torch.tensor([[0.0, 0.0, float("nan")], [0.0, 0.0, 3.0]])), "means has 1 non-finite"),
        (dict(colors=torch.tensor([[float("inf"), 0, 0], [0.0, 0, 0]])), "colors has 1 non-finite"),
        (dict(features=torch.tensor([[float("nan")], [0.0]])), "features has 1 non-finite"),
        (dict(scales=torch.tensor([[0.1, 0.0, 0.1], [0.1, 0.1, 0.1]])), "scales must be > 0"),
        (dict(scales=torch.tensor([[0.1, -0.1, 0.1], [0.1, 0.1, 0.1]])), "scales must be > 0"),
        (dict(quats=torch.tensor([[0.0, 0, 0, 0], [1.0, 0, 0, 0]])), "zero-norm"),
        (dict(opacities=torch.tensor([1.5, 0.5])), r"opacities must lie in \[0, 1\]"),
        (dict(render_mode="RGBD"), "render_mode must be one of"),
        (dict(backend="cuda"), "backend must be one of"),
        (dict(backgrounds=torch.zeros(2, 3)), "backgrounds must have shape"),
        (dict(near_plane=2.0, far_plane=1.0), "near_plane must be < far_plane"),
        (dict(colors=None), "colors is required"),
        (dict(Ks=torch.eye(3)[None].repeat(2, 1, 1)), "number of cameras"),
        (dict(width=0), "width must be a positive int"),
        (dict(means=torch.zeros(2, 3, dtype=torch.float64)), "all inputs must share one dtype"),
        ("half", "the Gaussians are torch.float16: the rasterizer computes in float32 or float64"),
    ],
)
def test_rasterize_rejects_bad_input(change, message):
    scene = _one_gaussian(dtype=torch.float32)
    scene.update(means=torch.tensor([[0.0, 0.0, 3.0], [0.1, 0.0, 3.0]]), quats=scene["quats"].repeat(2, 1),
                 scales=scene["scales"].repeat(2, 1), opacities=torch.full((2,), 0.5), colors=torch.rand(2, 3))
    scene["backend"] = "torch"
    if change == "half":  # every input in half precision (no kernel has a half path)
        change = {k: v.half() for k, v in scene.items() if isinstance(v, torch.Tensor)}
    scene.update(change)
    with pytest.raises(ValueError, match=message):
        rasterize(**scene)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU error message")
def test_gsplat_backend_on_cpu_is_a_clear_error():
    with pytest.raises(RuntimeError, match="gsplat has no CPU rasterizer"):
        rasterize(**_one_gaussian(dtype=torch.float32), backend="gsplat")
