"""Sharded Gaussian training on several processes: speed, memory, traffic, and 2 x 1 vs 1 x 2 quality.

Part 1, scaling (``--ranks 1 2 4``): a random scene of ``--gaussians`` Gaussians
(:mod:`distill3d.render.random_scene`) trains with a fixed global batch of ``--views`` views per step
(``R`` ranks render ``views / R`` each), the Gaussians sharded ``N / R`` per rank
(:func:`distill3d.render.distributed.rasterize_distributed`, L2 loss to a fixed target image, Adam on
the shard). Per rank count: steps/s (median of the timed steps, after warm-up), per-rank peak resident
memory (``VmHWM``, includes the ~0.3-0.5 GB of the interpreter and torch; the 1-rank case runs in
the launching process), per-rank parameter +
Adam bytes (the part sharding divides), and bytes exchanged per step (forward rows plus the same float
volume of gradients returned, summed over ranks). Each rank gets ``cores / R`` threads.

Part 2, quality (``--quality``): Feature 3DGS on the default scene (EfficientNet-Lite0 maps from the
feature cache, ``--downscale`` resolution, ``short_schedule(--steps)``) trained as 2 ranks x 1 view
per step and as 1 rank x 2 views per step (the same views, drawn from one shared stream); held-out
PSNR and feature cosine of both, and their differences (targets: 0.05 dB, 0.005).

On this project's 2-core machine (shared with other jobs while measuring) ranks compete for two
cores: the figures show what sharding divides (parameter memory, N per rank) and what it costs
(traffic, the all-to-all), not the speed-up of separate GPUs or machines.

Usage::

    python benchmarks/distributed.py                       # scaling 1, 2 ranks + quality (distributed.json)
    # the committed results/distributed.json (two parts, each updating its section of the file):
    python benchmarks/distributed.py --no-quality --ranks 1 2 4 --gaussians 50000 --size 96 --steps 4
    python benchmarks/distributed.py --no-scaling    # quality at the defaults: 300 steps, 1/2 resolution
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import sys
import tempfile
import time

from distillcore.config_cli import preload_environment

preload_environment()  # before torch loads: spinning OpenMP threads starve the other ranks' cores

import torch  # noqa: E402

from distillcore import dist  # noqa: E402
from distillcore.serialization import write_json_atomic  # noqa: E402

RESULTS = pathlib.Path(__file__).parent / "results" / "distributed.json"
WARMUP_STEPS = 2


def peak_rss_mb() -> float:
    """This process's peak resident memory (``VmHWM``). Not ``ru_maxrss``: that survives ``execve``, so a
    spawned rank would report its parent's peak."""
    for line in pathlib.Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _scaling_rank(gaussians: int, views: int, size: int, steps: int, backend: str) -> dict:
    from distill3d.fields.distributed import shard_bounds
    from distill3d.render.distributed import rasterize_distributed
    from distill3d.render.random_scene import SceneConfig, random_scene

    ctx = dist.context()
    scene = random_scene(SceneConfig(n_gaussians=gaussians, width=size, height=size, n_cameras=views,
                                     feature_dim=16, blends_per_pixel=20.0))
    bounds = shard_bounds(gaussians, ctx.world_size)
    mine = slice(bounds[ctx.rank], bounds[ctx.rank + 1])
    per_rank = views // ctx.world_size
    cameras = slice(ctx.rank * per_rank, (ctx.rank + 1) * per_rank)
    names = ("means", "quats", "scales", "opacities", "colors", "features")
    # raw parameters: log-scales and logit-opacities, as a trainer holds them
    raw = {"means": scene["means"], "quats": scene["quats"], "scales": scene["scales"].log(),
           "opacities": torch.logit(scene["opacities"]), "colors": scene["colors"], "features": scene["features"]}
    params = {k: raw[k][mine].clone().requires_grad_() for k in names}
    optimizer = torch.optim.Adam(params.values(), lr=1e-3)
    target = torch.full((per_rank, size, size, 3), 0.5)
    times, sent = [], []
    for step in range(WARMUP_STEPS + steps):
        start = time.perf_counter()
        render, features, _, meta = rasterize_distributed(
            params["means"], params["quats"], params["scales"].exp(), params["opacities"].sigmoid(), params["colors"],
            scene["viewmats"][cameras], scene["Ks"][cameras], size, size, features=params["features"], backend=backend)
        loss = (render - target).pow(2).mean() + features.pow(2).mean() * 1e-3
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        dist.barrier()
        if step >= WARMUP_STEPS:
            times.append(time.perf_counter() - start)
            sent.append(meta["bytes_sent"] + meta["gradient_bytes_sent"])
    state_bytes = sum(p.numel() * p.element_size() * 3 for p in params.values())  # value + 2 Adam moments
    row = {"rank": ctx.rank, "gaussians": mine.stop - mine.start, "seconds_per_step": statistics.median(times),
           "peak_rss_mb": peak_rss_mb(),
           "param_adam_mb": state_bytes / 2**20, "bytes_sent_per_step": statistics.mean(sent)}
    return dist.gather_objects(row)


def scaling(args) -> list[dict]:
    rows = []
    for ranks in args.ranks:
        if args.views % ranks:
            print(f"skip {ranks} ranks: --views {args.views} is not a multiple", file=sys.stderr)
            continue
        threads = max(1, (os.cpu_count() or 1) // ranks)
        torch.set_num_threads(threads)  # one rank runs in this process
        try:
            per_rank = dist.launch(_scaling_rank, ranks, args.gaussians, args.views, args.size, args.steps,
                                   args.backend, timeout_s=1800, threads_per_rank=threads)
        except dist.RankFailedError as err:
            print(f"{ranks} ranks failed: {err}", file=sys.stderr)
            rows.append({"ranks": ranks, "error": str(err)})
            continue
        slowest = max(r["seconds_per_step"] for r in per_rank)
        print(f"{ranks} ranks: {1 / max(r['seconds_per_step'] for r in per_rank):.3f} steps/s", flush=True)
        rows.append({"ranks": ranks, "threads_per_rank": threads, "steps_per_s": 1 / slowest,
                     "views_per_step": args.views, "gaussians_per_rank": [r["gaussians"] for r in per_rank],
                     "peak_rss_mb_per_rank": [round(r["peak_rss_mb"], 1) for r in per_rank],
                     "param_adam_mb_per_rank": [round(r["param_adam_mb"], 2) for r in per_rank],
                     "bytes_exchanged_per_step": sum(r["bytes_sent_per_step"] for r in per_rank)})
    return rows


def _quality_rank(prepared, config_dict: dict, views_per_rank: int, out: str) -> dict:
    from distill3d.fields.config import TrainConfig
    from distill3d.fields.distributed import ShardedTrainer

    trainer = ShardedTrainer(prepared.train, TrainConfig.from_dict(config_dict), out, prepared.teacher_maps,
                             prepared.test, prepared.name, views_per_rank=views_per_rank)
    start = time.perf_counter()
    metrics = trainer.train(progress=False)
    metrics["wall_seconds"] = time.perf_counter() - start
    return metrics


def quality(args) -> dict:
    from distillcore.config_cli import merge
    from distill3d.data import default_scene_dir
    from distill3d.fields.config import TrainConfig, short_schedule
    from distill3d.fields.pipeline import prepare_scene

    prepared = prepare_scene(default_scene_dir(), args.teacher, args.cache, progress=False, downscale=args.downscale)
    config = TrainConfig.from_dict(merge(short_schedule(args.quality_steps, args.points),
                                         {"teacher": args.teacher, "backend": args.backend}))
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, ranks, per_rank in (("2x1", 2, 1), ("1x2", 1, 2)):
            metrics = dist.launch(_quality_rank, ranks, prepared, config.to_dict(), per_rank, f"{tmp}/{label}",
                                  timeout_s=3600, threads_per_rank=max(1, (os.cpu_count() or 1) // ranks))
            out[label] = {k: metrics[k] for k in ("psnr", "ssim", "feature_cosine", "num_gaussians", "wall_seconds")}
    out["psnr_difference_db"] = abs(out["2x1"]["psnr"] - out["1x2"]["psnr"])
    out["cosine_difference"] = abs(out["2x1"]["feature_cosine"] - out["1x2"]["feature_cosine"])
    out["within_targets"] = out["psnr_difference_db"] <= 0.05 and out["cosine_difference"] <= 0.005
    out.update(steps=args.quality_steps, downscale=args.downscale, teacher=args.teacher,
               test_views=prepared.test.num_views if prepared.test is not None else 0)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--gaussians", type=int, default=100_000, help="Gaussians of the scaling scene (all ranks)")
    parser.add_argument("--views", type=int, default=4, help="views per step (global batch)")
    parser.add_argument("--size", type=int, default=128, help="image width and height")
    parser.add_argument("--steps", type=int, default=8, help="timed steps per rank count")
    parser.add_argument("--backend", default="native", choices=("native", "torch"))
    parser.add_argument("--scaling", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--quality", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--quality-steps", type=int, default=300)
    parser.add_argument("--points", type=int, default=5000, help="initial Gaussians of the quality runs")
    parser.add_argument("--downscale", type=int, default=2)
    parser.add_argument("--teacher", default="efficientnet-lite0")
    parser.add_argument("--cache", type=pathlib.Path, default=pathlib.Path("benchmarks/.cache/features"))
    parser.add_argument("--out", type=pathlib.Path, default=RESULTS)
    args = parser.parse_args(argv)

    # a part run alone (--no-scaling / --no-quality) updates its section of an existing results file
    result = json.loads(args.out.read_text()) if args.out.is_file() else {}
    machine = {"cores": os.cpu_count(), "torch": torch.__version__, "backend": args.backend}
    if args.scaling:
        result["scaling"] = {"gaussians": args.gaussians, "views_per_step": args.views, "size": args.size,
                             "load_average_at_start": os.getloadavg()[0], "rows": scaling(args)}
        result["scaling"]["load_average_at_end"] = os.getloadavg()[0]
        print_scaling(result["scaling"])
    if args.quality:
        load = os.getloadavg()[0]
        result["quality"] = q = quality(args)
        q["load_average_at_start"], q["load_average_at_end"] = load, os.getloadavg()[0]
        print_quality(q)
    result["machine"] = machine
    write_json_atomic(args.out, result)
    print(f"wrote {args.out}")
    return 0


def print_scaling(scaling_result: dict) -> None:
    print(f"{'ranks':>5} {'steps/s':>8} {'G/rank':>16} {'peak RSS MB/rank':>22} {'param+Adam MB/rank':>22} "
          f"{'MB exchanged/step':>18}")
    for row in scaling_result["rows"]:
        if "error" in row:
            print(f"{row['ranks']:>5} failed: {row['error']}")
            continue
        print(f"{row['ranks']:>5} {row['steps_per_s']:>8.3f} {str(row['gaussians_per_rank']):>16} "
              f"{str(row['peak_rss_mb_per_rank']):>22} {str(row['param_adam_mb_per_rank']):>22} "
              f"{row['bytes_exchanged_per_step'] / 2**20:>18.2f}")


def print_quality(q: dict) -> None:
    print(f"\nquality after {q['steps']} steps (default scene, 1/{q['downscale']} resolution, "
          f"{q['test_views']} held-out views):")
    for label in ("2x1", "1x2"):
        m = q[label]
        print(f"  {label}: PSNR {m['psnr']:.3f} dB  cosine {m['feature_cosine']:.4f}  "
              f"Gaussians {m['num_gaussians']}  {m['wall_seconds']:.0f} s")
    print(f"  |dPSNR| {q['psnr_difference_db']:.4f} dB (target 0.05)  |dcos| {q['cosine_difference']:.5f} "
          f"(target 0.005)  within: {q['within_targets']}")

if __name__ == "__main__":
    sys.exit(main())
