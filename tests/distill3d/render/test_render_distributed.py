"""rasterize_distributed on 2 gloo ranks equals the single-process rasterize: images and every gradient.

Gaussians are split unevenly (contiguous shards), cameras too (rank 0 renders one, rank 1 two). Each rank
computes the single-process reference of the whole scene itself and compares its own images and its
shard's gradients; rank 0 collects the worst differences. One launch covers every feature width.
"""
import pytest
import torch

from distillcore import dist
from distill3d.render import rasterize
from distill3d.render.distributed import rasterize_distributed
from distill3d.render.random_scene import SceneConfig, random_scene

PARAMS = ("means", "quats", "scales", "opacities", "colors", "features")
# (feature width, feature_grad_to_geometry, antialiased)
CASES = [(1, True, False), (16, False, True), (113, True, False)]
N_GAUSSIANS, SPLIT = 240, 100  # rank 0 holds [0, 100), rank 1 [100, 240)
CAMERA_SPLIT = (1, 2)


def _scene(width: int):
    scene = random_scene(SceneConfig(n_gaussians=N_GAUSSIANS, width=32, height=24, n_cameras=sum(CAMERA_SPLIT),
                                     feature_dim=width, sh_degree=1, blends_per_pixel=12.0, seed=width))
    for name in PARAMS:
        scene[name] = scene[name].requires_grad_()
    return scene


def _loss(render, features, alpha, weights):
    # random per-pixel weights: every channel of every pixel reaches the gradients with a different factor
    return (render * weights[0]).sum() + (features * weights[1]).sum() + (alpha * weights[2]).sum()


def _weights(width: int, cameras: slice):
    g = torch.Generator().manual_seed(1000 + width)
    shape = (sum(CAMERA_SPLIT), 24, 32)
    w = [torch.randn(*shape, channels, generator=g) for channels in (3, width, 1)]
    return [t[cameras] for t in w]


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp(min=1e-30)) if b.numel() else 0.0


def _compare(backend: str) -> dict:
    ctx = dist.context()
    first = sum(CAMERA_SPLIT[:ctx.rank])
    cameras = slice(first, first + CAMERA_SPLIT[ctx.rank])
    shard = slice(0, SPLIT) if ctx.rank == 0 else slice(SPLIT, N_GAUSSIANS)
    worst = {"image": 0.0, "grad": 0.0, "bitwise": True, "rows_sent": 0}
    for width, to_geometry, antialiased in CASES:
        options = dict(sh_degree=1, feature_grad_to_geometry=to_geometry, antialiased=antialiased, backend=backend,
                       backgrounds=torch.tensor([0.2, 0.5, 0.9]))
        scene = _scene(width)
        args = [scene[k] for k in ("means", "quats", "scales", "opacities", "colors", "viewmats", "Ks")]
        ref = rasterize(*args, 32, 24, features=scene["features"], **options)
        _loss(*ref[:3], _weights(width, slice(None))).backward()
        ref_grads = {k: scene[k].grad[shard] for k in PARAMS}

        local = {k: scene[k].detach()[shard].clone().requires_grad_() for k in PARAMS}
        out = rasterize_distributed(local["means"], local["quats"], local["scales"], local["opacities"],
                                    local["colors"], scene["viewmats"][cameras], scene["Ks"][cameras], 32, 24,
                                    features=local["features"], **options)
        _loss(*out[:3], _weights(width, cameras)).backward()
        for mine, theirs in zip(out[:3], ref[:3]):
            worst["image"] = max(worst["image"], _relative(mine.detach(), theirs.detach()[cameras]))
            worst["bitwise"] &= torch.equal(mine.detach(), theirs.detach()[cameras])
        for k in PARAMS:
            worst["grad"] = max(worst["grad"], _relative(local[k].grad, ref_grads[k]))
            worst["bitwise"] &= torch.equal(local[k].grad, ref_grads[k])
        worst["rows_sent"] += out[3]["rows_sent"]
        assert out[3]["n_cameras"] == sum(CAMERA_SPLIT)
        assert tuple(out[3]["means2d"].shape[:2]) == (3, shard.stop - shard.start)
    return dist.gather_objects(worst)


@pytest.mark.parametrize("backend, tolerance", [("torch", 1e-6), ("native", 1e-5)])
def test_two_ranks_equal_one_rank(backend, tolerance):
    per_rank = dist.launch(_compare, 2, backend, timeout_s=120)
    for rank, worst in enumerate(per_rank):
        assert worst["image"] <= tolerance, (rank, worst)
        assert worst["grad"] <= tolerance, (rank, worst)
        assert worst["rows_sent"] > 0  # pairs really travelled between the ranks
    if backend == "torch":
        print("torch backend bitwise on both ranks:", all(w["bitwise"] for w in per_rank))


def test_single_process_equals_rasterize():
    # world size 1: the same stages run without an exchange; the result is rasterize's, bit for bit
    scene = _scene(16)
    args = [scene[k] for k in ("means", "quats", "scales", "opacities", "colors", "viewmats", "Ks")]
    ref = rasterize(*args, 32, 24, features=scene["features"], sh_degree=1, backend="torch")
    out = rasterize_distributed(*args, 32, 24, features=scene["features"], sh_degree=1, backend="torch")
    for mine, theirs in zip(out[:3], ref[:3]):
        assert torch.equal(mine, theirs)
    assert out[3]["rows_sent"] == 0 and out[3]["rows_received"] == int((ref[3]["radii"] > 0).all(-1).sum())


def test_gsplat_backend_is_refused():
    scene = _scene(1)
    args = [scene[k].detach() for k in ("means", "quats", "scales", "opacities", "colors", "viewmats", "Ks")]
    with pytest.raises(ValueError, match="'torch' or 'native'"):
        rasterize_distributed(*args, 32, 24, sh_degree=1, backend="gsplat")


@pytest.mark.parametrize("backend", ["torch", "native"])
def test_per_camera_features_equal_one_render_per_camera(backend):
    """Features ``[C, N, F]`` (a different vector per camera, as PRD's camera-facing normals) render as C
    separate calls with that camera's ``[N, F]``, in rasterize and in rasterize_distributed."""
    scene = _scene(16)
    args = [scene[k].detach() for k in ("means", "quats", "scales", "opacities", "colors")]
    viewmats, Ks = scene["viewmats"], scene["Ks"]
    n_cameras = viewmats.shape[0]
    features = scene["features"].detach()[None] * torch.linspace(0.5, 1.5, n_cameras)[:, None, None]
    batch = rasterize(*args, viewmats, Ks, 32, 24, features=features, sh_degree=1, backend=backend)[1]
    shared = rasterize_distributed(*args, viewmats, Ks, 32, 24, features=features, sh_degree=1, backend=backend)[1]
    for c in range(n_cameras):
        single = rasterize(*args, viewmats[c:c + 1], Ks[c:c + 1], 32, 24, features=features[c], sh_degree=1,
                           backend=backend)[1][0]
        torch.testing.assert_close(batch[c], single, rtol=1e-5, atol=1e-5)  # batched products round apart
        torch.testing.assert_close(shared[c], single, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(batch[0], batch[0] * 1.01)  # the features reach the image
    with pytest.raises(ValueError, match="features"):
        rasterize(*args, viewmats, Ks, 32, 24, features=features[:2], sh_degree=1, backend=backend)
