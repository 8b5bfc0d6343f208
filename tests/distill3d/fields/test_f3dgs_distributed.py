"""Sharded Feature 3DGS training on 2 gloo ranks against 1 rank with the same batch of views.

Densification runs at steps 1-4 (duplicates, splits whose offsets are keyed by the split Gaussian, and
prunes at a high opacity threshold): 2 ranks x 1 view and 1 rank x 2 views must make the same grow /
prune decisions at every step and end with the same Gaussians (up to their order: new Gaussians are
appended to their shard). The two agree to rounding, not bit for bit (matrix products over shards of
other sizes round differently), so a run refining at every step for long enough can flip a decision
that sits on its threshold; the schedule here stops before that. One launch covers training,
checkpoint, merged PLY and resume on 2 ranks.
"""
import json
import os
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from conftest import shrunk_scene_copy, sized  # noqa: E402
from f3dgs_tiny_scene import tiny_scene  # noqa: E402

from distillcore import dist  # noqa: E402
from distill3d.fields.config import DensifyConfig, InitConfig, TrainConfig  # noqa: E402
from distill3d.fields.distributed import (  # noqa: E402
    CHECKPOINT_DIR, REBALANCE_TOLERANCE, ShardedTrainer, redistribute_rows, shard_bounds)
from distill3d.fields.field import FeatureField  # noqa: E402

STEPS, CHECKPOINT_AT = 6, 4


def _scene():
    return tiny_scene(num_train=4, num_test=3, size=16, cell=4)


def _config(steps: int = STEPS) -> TrainConfig:
    return TrainConfig(steps=steps, sh_degree=1, sh_degree_interval=2, eval_every=0, checkpoint_every=0,
                       backend="torch", init=InitConfig(method="random", num_points=61, random_radius=0.25),
                       densify=DensifyConfig(refine_start_iter=1, refine_stop_iter=5, refine_every=1,
                                             reset_every=10_000, grow_grad2d=2e-5, grow_scale3d=0.05,
                                             prune_opa=0.095))


def _params(field: FeatureField) -> torch.Tensor:
    """Every Gaussian as one row, rows sorted (shard order differs between rank counts)."""
    rows = torch.cat([p.detach().reshape(p.shape[0], -1) for p in field.splats.values()], 1)
    return rows[torch.argsort(rows[:, 0], stable=True)]


def _assert_same_gaussians(a: torch.Tensor, b: torch.Tensor, tol: float = 1e-5) -> None:
    """The same rows in any order (twins from duplication included): rows are paired one to one by the
    assignment of least total distance, then compared."""
    from scipy.optimize import linear_sum_assignment

    assert a.shape == b.shape
    rows, cols = linear_sum_assignment(torch.cdist(a.double(), b.double()).numpy())
    torch.testing.assert_close(a[rows], b[cols], rtol=tol, atol=tol)


def _steps(trainer: ShardedTrainer, until: int, counts: list[int]) -> None:
    while trainer.step < until:
        trainer.train_step()
        counts.append(trainer.global_gaussians)


def _two_rank_program(out: str, checkpoint: str) -> dict:
    train, test, maps = _scene()
    trainer = ShardedTrainer(train, _config(), out, maps, test)
    counts: list[int] = []
    _steps(trainer, CHECKPOINT_AT, counts)
    trainer.save_checkpoint(checkpoint)
    _steps(trainer, STEPS, counts)
    merged = trainer.merged_field()
    if dist.is_main():
        merged.save(Path(out) / "point_cloud.ply")
    dist.barrier()
    rank = dist.context().rank
    with torch.no_grad():  # test view `rank` on each rank, from the shards
        view = trainer.render_views(test, [rank], trainer.background(), with_features=True)
    renders = dist.gather_objects((view.rgb, view.features))
    resumed = ShardedTrainer(train, _config(), out, maps, test)
    resumed.resume(Path(checkpoint) / CHECKPOINT_DIR / "manifest.json")
    _steps(resumed, STEPS, [])
    return {"counts": counts, "params": _params(merged), "resumed": _params(resumed.merged_field()),
            "renders": renders, "rebalances": trainer.rebalances, "shards": trainer.shard_sizes(),
            "metrics": trainer.evaluate()}


def test_two_ranks_match_one_rank_and_checkpoints_resume(tmp_path, one_torch_thread):
    # one thread here as in each spawned rank: reductions then add in the same order, bit for bit
    out, checkpoint = tmp_path / "run", tmp_path / "at4"
    two = dist.launch(_two_rank_program, 2, str(out), str(checkpoint), timeout_s=300)

    # 1 rank x 2 views per step: the same global batch
    train, test, maps = _scene()
    one = ShardedTrainer(train, _config(), tmp_path / "one", maps, test, views_per_rank=2)
    counts: list[int] = []
    _steps(one, STEPS, counts)
    assert two["counts"] == counts  # identical grow / prune decisions at every step
    assert counts[-1] != 61 and len(set(counts)) > 2  # densification really grew and pruned
    # shards were evened out when they drifted apart, and stay within the tolerance
    assert two["rebalances"] >= 1 and max(two["shards"]) <= sum(two["shards"]) / 2 * (1 + REBALANCE_TOLERANCE)
    _assert_same_gaussians(two["params"], _params(one.field))
    metrics = one.evaluate()
    assert abs(two["metrics"]["psnr"] - metrics["psnr"]) < 1e-4  # all 3 test views, reduced once
    assert abs(two["metrics"]["feature_cosine"] - metrics["feature_cosine"]) < 1e-5

    # resume the 2-rank checkpoint on 2 ranks (done in the launch) and on 1 rank: same end state
    torch.testing.assert_close(two["resumed"], two["params"], rtol=0, atol=0)
    single = ShardedTrainer(train, _config(), tmp_path / "single", maps, test, views_per_rank=2)
    assert single.resume(checkpoint / CHECKPOINT_DIR / "manifest.json") == CHECKPOINT_AT
    _steps(single, STEPS, [])
    _assert_same_gaussians(_params(single.field), two["params"])

    # the merged PLY renders, in the single-process renderer, what the shards rendered
    field = FeatureField.load(out / "point_cloud.ply")
    assert field.num_gaussians == counts[-1]
    for rank, (rgb, features) in enumerate(two["renders"]):
        ref = field.render(test.viewmats[rank:rank + 1], test.Ks[rank:rank + 1], test.width, test.height,
                           background=torch.zeros(3), backend="torch")
        torch.testing.assert_close(rgb, ref.rgb, rtol=0, atol=1e-6)
        torch.testing.assert_close(features, ref.features, rtol=0, atol=1e-6)


def _killed_while_checkpointing(out: str) -> None:
    train, test, maps = _scene()
    trainer = ShardedTrainer(train, _config(), out, maps, test)
    _steps(trainer, 2, [])
    trainer.save_checkpoint()
    _steps(trainer, 4, [])
    if dist.context().rank == 1:
        os.kill(os.getpid(), 9)  # dies before writing its shard of step 4
    trainer.save_checkpoint()


def test_killed_rank_stops_the_job_and_keeps_the_last_complete_checkpoint(tmp_path):
    with pytest.raises(dist.RankFailedError, match="rank 1 failed: killed by signal SIGKILL"):
        dist.launch(_killed_while_checkpointing, 2, str(tmp_path), timeout_s=120)
    manifest = tmp_path / CHECKPOINT_DIR / "manifest.json"
    assert json.loads(manifest.read_text())["step"] == 2
    assert not list(tmp_path.rglob("*.tmp*"))  # no temporary (half-written) file left behind
    train, test, maps = _scene()
    resumed = ShardedTrainer(train, _config(), tmp_path, maps, test, views_per_rank=2)
    assert resumed.resume() == 2


def test_shard_bounds_and_single_process_rebalance():
    assert shard_bounds(10, 3) == [0, 3, 6, 10] and shard_bounds(2, 2) == [0, 1, 2]
    t = torch.arange(12.0).reshape(6, 2)
    assert torch.equal(redistribute_rows(t, [6], [0, 6]), t)


def test_more_ranks_than_views_is_refused(tmp_path, monkeypatch):
    train, test, maps = _scene()
    monkeypatch.setattr(dist, "context", lambda: dist.DistContext(0, 5, 0, torch.device("cpu"), "gloo"))
    with pytest.raises(ValueError, match="5 ranks for 4 training views"):
        ShardedTrainer(train, _config(), tmp_path, maps, test)


def _quality_program(scene_dir: str, steps: int, views_per_rank: int, out: str) -> dict:
    from distill3d.data import load_scene

    scene = load_scene(scene_dir)
    config = TrainConfig(steps=steps, sh_degree=0, eval_every=0, checkpoint_every=0, backend="native",
                         init=InitConfig(method="random", num_points=1000),
                         densify=DensifyConfig(refine_start_iter=steps // 4, refine_stop_iter=steps * 3 // 4,
                                               refine_every=max(1, steps // 8), reset_every=10 * steps))
    trainer = ShardedTrainer(scene, config, out, None, None, views_per_rank=views_per_rank)
    trainer.train(progress=False)
    return trainer.evaluate(scene)


@pytest.mark.slow
def test_two_ranks_one_view_match_one_rank_two_views_in_quality(tmp_path):
    scene = shrunk_scene_copy(tmp_path / "scene", views=4, shrink=sized(8, 4))
    steps = sized(30, 300)
    two = dist.launch(_quality_program, 2, str(scene), steps, 1, str(tmp_path / "two"), timeout_s=600)
    one = _quality_program(str(scene), steps, 2, str(tmp_path / "one"))
    assert abs(two["psnr"] - one["psnr"]) < 0.05, (two, one)


def _cli(monkeypatch, *argv) -> int:
    from distill3d.cli import console_main

    monkeypatch.setattr(sys, "argv", ["distill3d", *argv])
    return console_main()


def test_cli_bad_nproc_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys):
    scene = shrunk_scene_copy(tmp_path / "scene", views=3, shrink=8)
    for nproc, message in (("0", "--nproc must be a positive number of processes, got 0"),
                           ("-2", "got -2"), ("4", "--nproc 4 is more than the 3 training views")):
        assert _cli(monkeypatch, "train", str(scene), "--plain", "--out", str(tmp_path / "out"), "--nproc", nproc) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err


@pytest.mark.parametrize("command", [["train"], ["inverse", "train"]])
@pytest.mark.parametrize("flags, message", [
    (["--device", "cuda"], "device 'cuda' is not available"),
    (["--backend", "gsplat"], "backend='gsplat' is unavailable"),
])
@pytest.mark.skipif(torch.cuda.is_available(), reason="checks what a CPU-only machine refuses")
def test_cli_ranks_on_an_unavailable_device_or_backend_are_refused_before_launch(tmp_path, monkeypatch, capsys,
                                                                                 command, flags, message):
    """As the single-process commands do: one line, exit 2, no rank started and no output folder."""
    monkeypatch.setattr(dist, "launch", lambda *a, **k: pytest.fail("ranks were launched"))
    scene = shrunk_scene_copy(tmp_path / "scene", views=3, shrink=8)
    assert _cli(monkeypatch, *command, str(scene), "--out", str(tmp_path / "out"), "--nproc", "2", *flags) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not (tmp_path / "out").exists()


def test_cli_views_per_rank_bad_values_and_batch(tmp_path, monkeypatch, capsys):
    scene = shrunk_scene_copy(tmp_path / "scene", views=3, shrink=8)
    for argv, message in (
            (["--views-per-rank", "0"], "--views-per-rank must be a positive number of views, got 0"),
            (["--views-per-rank", "-1"], "--views-per-rank must be a positive number of views, got -1"),
            (["--views-per-rank", "4"], "--nproc 1 x --views-per-rank 4 is more than the 3 training views"),
            (["--nproc", "2", "--views-per-rank", "2"], "--nproc 2 x --views-per-rank 2 is more than the 3 training")):
        code = _cli(monkeypatch, "train", str(scene), "--plain", "--out", str(tmp_path / "bad"), *argv)
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and message in err[0], (argv, err)
        assert not (tmp_path / "bad" / CHECKPOINT_DIR).exists()  # refused before any rank trained
    # a valid value reaches the trainer: 1 rank x 3 views per step
    out = tmp_path / "out"
    assert _cli(monkeypatch, "train", str(scene), "--plain", "--out", str(out), "--views-per-rank", "3",
                "--steps", "2", "--backend", "torch", "--points", "100", "--no-progress") == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert (metrics["ranks"], metrics["views_per_step"], metrics["step"]) == (1, 3, 2)


def test_cli_unreachable_rendezvous_fails_within_the_timeout(tmp_path, monkeypatch, capsys):
    import socket
    import time

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    for key, value in (("MASTER_ADDR", "127.0.0.1"), ("MASTER_PORT", str(port)), ("RANK", "1"), ("WORLD_SIZE", "2")):
        monkeypatch.setenv(key, value)
    start = time.monotonic()
    code = _cli(monkeypatch, "train", "default", "--plain", "--out", str(tmp_path / "out"), "--dist-timeout", "2")
    assert code == 2 and time.monotonic() - start < 60
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"could not join the job at 127.0.0.1:{port} within 2 s" in err[0], err


@pytest.mark.slow
def test_cli_trains_on_two_ranks(tmp_path):
    import subprocess

    scene = shrunk_scene_copy(tmp_path / "scene", views=3, shrink=8)
    out = tmp_path / "out"
    argv = [sys.executable, "-m", "distill3d.cli", "train", str(scene), "--plain", "--out", str(out), "--nproc", "2",
            "--steps", "4", "--backend", "native", "--points", "500", "--no-progress", "--dist-timeout", "120"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["ranks"] == 2 and metrics["step"] == 4
    assert FeatureField.load(out / "point_cloud.ply").num_gaussians == metrics["num_gaussians"]
    assert json.loads((out / CHECKPOINT_DIR / "manifest.json").read_text())["world_size"] == 2
