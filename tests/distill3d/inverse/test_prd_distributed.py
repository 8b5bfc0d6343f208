"""PRD's physical stages with the Gaussians sharded over 2 gloo ranks, against one process.

One launch of 2 ranks covers: renders and every parameter gradient of the sharded model against
``PRDModel.render`` of the whole model; 2 ranks x 1 view per step against 1 rank x 2 views (the same
batch, so the same run to rounding); the sharded checkpoint resumed on 1 rank; the merged single-process
checkpoint. The torch backend keeps both sides deterministic.
"""
import dataclasses
import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from prd_tiny_scene import ground_truth_model, tiny_prd_scene  # noqa: E402
from test_prd_training import tiny_config  # noqa: E402

from distillcore import dist  # noqa: E402
from distill3d.data import Scene  # noqa: E402
from distill3d.inverse.distributed import (  # noqa: E402
    ShardedPRDTrainer, merged_model, render_views_distributed, shard_model)
from distill3d.inverse.model import PRDModel  # noqa: E402
from distill3d.inverse.trainer import model_from_checkpoint  # noqa: E402

STAGE_STEPS = (2, 2, 2)
VIEWS = [1, 4]  # the two views of the gradient check: rank r renders VIEWS[r]
DOUBLE = ("images", "Ks", "viewmats", "background", "alphas")


def _config():
    config = tiny_config(1, STAGE_STEPS)
    config.radiance.backend = "torch"
    return config


def _start(model: PRDModel) -> PRDModel:
    """The truth's geometry with default materials (what the stages start from)."""
    return PRDModel.from_radiance(model.gaussians, _config().model)


def _render_loss(renders) -> torch.Tensor:
    weights = torch.linspace(0.5, 1.5, 3)[:, None, None]  # a loss that weighs every output of a render
    return sum((r.image * weights).sum() + r.albedo.sum() + r.progress.sum() + r.normals.sum() for r in renders)


def _gradients(model: PRDModel) -> dict[str, torch.Tensor]:
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


def _double(scene: Scene) -> Scene:
    return dataclasses.replace(scene, **{k: getattr(scene, k).double() for k in DOUBLE})


def _stages(out: str, views_per_rank: int) -> ShardedPRDTrainer:
    """The stages in float64: Adam (eps 1e-15) turns last-bit differences of near-zero float32 gradients
    into full-size steps, so only float64 shows that two layouts train the same model."""
    train, test, truth = tiny_prd_scene()
    trainer = ShardedPRDTrainer(_double(train), _config(), out, _double(test), views_per_rank=views_per_rank)
    trainer.model = shard_model(_start(truth).double())
    return trainer


def _two_rank_program(out: str) -> dict:
    train, _, truth = tiny_prd_scene()
    ctx = dist.context()
    # 1. render + gradients of the shard against the whole model (checked on rank 0)
    shard = shard_model(_start(truth))
    mine = [VIEWS[ctx.rank]]
    renders = render_views_distributed(shard, train.viewmats[mine], train.Ks[mine], train.width, train.height,
                                       train.background, backend="torch")
    _render_loss(renders).backward()
    grads = {k: torch.cat(dist.all_gather_variable(g)) if g.shape[0] == len(shard.gaussians) else dist.all_reduce_sum(g)
             for k, g in _gradients(shard).items()}
    images = [torch.cat(dist.all_gather_variable(r.image[None].detach())) for r in renders][0]
    # 2. the stages, 2 ranks x 1 view; the sharded checkpoint written at the end; the merged one
    trainer = _stages(out, views_per_rank=1)
    trainer.train(progress=False)
    merged = trainer.write_merged_checkpoint()
    return {"grads": grads, "images": images, "state": merged.state_dict(), "history": trainer.history}


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("prd_two_ranks")
    return out, dist.launch(_two_rank_program, 2, str(out), timeout_s=300)


def test_two_rank_render_and_gradients_equal_one_process(two_ranks):
    _, result = two_ranks
    train, _, truth = tiny_prd_scene()
    model = _start(truth)
    renders = [model.render(train.viewmats[i], train.Ks[i], train.width, train.height, train.background,
                            backend="torch") for i in VIEWS]
    _render_loss(renders).backward()
    torch.testing.assert_close(result["images"], torch.stack([r.image.detach() for r in renders]), rtol=1e-5, atol=1e-6)
    expected = _gradients(model)
    assert set(result["grads"]) == set(expected) and "light.log_radiance" in expected
    for name, grad in expected.items():  # float32 sums in another order: 1e-5 of the largest (float64: 1e-14)
        torch.testing.assert_close(result["grads"][name], grad, rtol=1e-5, atol=1e-5 * float(grad.abs().max()),
                                   msg=lambda m, name=name: f"{name}: {m}")


def test_two_ranks_one_view_equal_one_rank_two_views(two_ranks, tmp_path):
    """Same batch, same run: each parameter ends within 1% of how far training moved it. (Not to 1e-12:
    with Adam's eps of 1e-15 a gradient that is zero up to rounding still takes a step of up to about
    1% of the learning rate, in float64 too, and that step's sign follows the rounding.)"""
    out, result = two_ranks
    single = _stages(str(tmp_path), views_per_rank=2)
    start = {k: v.clone() for k, v in single.model.state_dict().items()}
    single.train(progress=False)
    assert single.batch == 2
    for key, value in single.model.state_dict().items():
        if value.numel() == 0:  # the visibility buffer, empty with visibility off
            assert result["state"][key].shape == value.shape
            continue
        moved = float((value - start[key]).abs().max())
        difference = float((result["state"][key] - value).abs().max())
        assert result["state"][key].dtype == value.dtype and difference <= 0.01 * moved, (key, difference, moved)
    assert float((single.model.state_dict()["gaussians.params.albedo"] - start["gaussians.params.albedo"]).abs().max()) > 1e-3
    # evaluation over both ranks' test views, reduced once, equals the single-process means
    final = [h for h in result["history"] if "psnr" in h][-1]
    expected = [h for h in single.history if "psnr" in h][-1]
    assert final["psnr"] == pytest.approx(expected["psnr"], abs=1e-6)
    assert final["physical_psnr"] == pytest.approx(expected["physical_psnr"], abs=1e-6)


def test_sharded_checkpoint_resumes_on_one_rank_and_merges(two_ranks, tmp_path):
    out, result = two_ranks
    manifest = json.loads((out / "checkpoint_dist" / "manifest.json").read_text())
    assert manifest["world_size"] == 2 and manifest["step"] == sum(STAGE_STEPS)
    train, test, _ = tiny_prd_scene()
    resumed = ShardedPRDTrainer(train, _config(), out, test)
    resumed.resume()
    assert resumed.stage_index == len(STAGE_STEPS) and len(resumed.model.gaussians) == len(merged_model(resumed.model).gaussians)
    for key, value in resumed.model.state_dict().items():
        torch.testing.assert_close(value, result["state"][key], msg=key)  # 1 rank holds the whole model
    model, config = model_from_checkpoint(out / "checkpoint.pt")  # the merged single-process checkpoint
    for key, value in model.state_dict().items():  # (the single-process loader builds float32 parameters)
        torch.testing.assert_close(value, result["state"][key].to(value.dtype), msg=key)
    assert config.to_dict() == _config().to_dict()


def test_more_ranks_than_views_is_refused(tmp_path, monkeypatch):
    train, test, _ = tiny_prd_scene()
    monkeypatch.setattr(dist, "context", lambda: dist.DistContext(0, 4, 0, torch.device("cpu"), "gloo"))
    with pytest.raises(ValueError, match="4 ranks x 2 views per rank is more than the 6 training views"):
        ShardedPRDTrainer(train, _config(), tmp_path, test, views_per_rank=2)


def test_more_ranks_than_gaussians_is_refused(monkeypatch):
    """An empty shard would fail deep in rendering and skip the per-Gaussian collectives the others run."""
    truth, _ = ground_truth_model(3)
    model = PRDModel.from_radiance(truth.gaussians, truth.config)
    monkeypatch.setattr(dist, "context", lambda: dist.DistContext(3, 4, 0, torch.device("cpu"), "gloo"))
    with pytest.raises(ValueError, match="3 Gaussians cannot be split over 4 ranks"):
        shard_model(model)
    monkeypatch.setattr(dist, "context", lambda: dist.DistContext(2, 3, 0, torch.device("cpu"), "gloo"))
    assert len(shard_model(model).gaussians) == 1


def test_cli_trains_on_two_ranks_then_relights(tmp_path, monkeypatch, capsys):
    """`inverse train --nproc 2` end to end (sharded pre-training and stages, merged checkpoint, exports),
    the run relit by `inverse relight` as a single-process one; bad rank counts exit 2 with one line."""
    from distill3d.cli import console_main, main
    from distill3d.data import default_scene_dir

    out = tmp_path / "run"
    tiny = ["--downsample", "8", "--radiance-steps", "4", "--stage-steps", "1", "1", "1", "--backend", "torch",
            "--radiance.init.method", "random", "--radiance.init.num-points", "400", "--no-radiance.densify.enabled",
            "--model.env-resolution", "4", "--quiet"]
    scene = str(default_scene_dir())
    assert main(["inverse", "train", scene, "--out", str(out), "--nproc", "2", *tiny]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert (metrics["ranks"], metrics["views_per_step"]) == (2, 2) and metrics["psnr"] > 8
    assert [h.get("stage") for h in metrics["history"][:4]] == ["radiance", "specular", "diffuse", "joint"]
    assert (out / "export" / "materials.ply").is_file()
    assert json.loads((out / "run.json").read_text())["status"] == "complete"
    assert main(["inverse", "relight", str(out), "--env", "relight", "--quiet"]) == 0
    # --resume without --nproc continues the sharded run (on one rank), not a fresh single-process one
    assert main(["inverse", "train", scene, "--out", str(out), "--resume", *tiny]) == 0
    assert json.loads((out / "metrics.json").read_text())["ranks"] == 1
    capsys.readouterr()
    for flags, message in ((["--nproc", "0"], "--nproc must be a positive number"),
                           (["--views-per-rank", "0"], "--views-per-rank must be a positive number"),
                           (["--nproc", "40"], "more than the")):
        monkeypatch.setattr(sys, "argv", ["distill3d", "inverse", "train", scene, "--out", str(tmp_path / "bad"),
                                          *flags, *tiny])
        assert console_main() == 2
        error = capsys.readouterr().err.strip().splitlines()
        assert len(error) == 1 and message in error[0], error
        assert not (tmp_path / "bad" / "checkpoint_dist").exists()
