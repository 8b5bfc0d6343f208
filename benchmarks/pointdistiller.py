"""PointDistiller benchmark: 4x-compressed students of a pillar and a point detector, distilled by
PointDistiller, FitNet, response KD or not at all, on simulated LiDAR scenes.

Prints a paper-style table (BEV / 3D mAP at moderate difficulty, mean ± std over seeds, parameters,
FLOPs, CPU inference time per scan) and writes ``benchmarks/results/pointdistiller.json``.

    python benchmarks/pointdistiller.py --threads 2   # both families, 5 seeds, 2000 steps per model (pillars about 50 min, point about 130 on an idle machine)
    python benchmarks/pointdistiller.py --quick        # 1 seed, 300 steps
    python benchmarks/pointdistiller.py --families pillars --threads 2   # one family; its rows merge into the JSON
    python benchmarks/pointdistiller.py --speed-only   # only the teacher-vs-student speed-scaling table

Times are CPU time of the process (``time.process_time``), not wall-clock: on a machine shared with other
jobs the wall clock measures the neighbours; with ``--threads 1`` the two agree on an idle machine. They
are taken on inference copies (:func:`distill3d.points.fusion.fuse_for_inference`: BatchNorm folded into
the convolutions, the pillar backbone channels-last), as a detector is deployed.

Simulated scans are cached in KITTI layout under ``--data-dir`` and checkpoints under ``--work-dir``,
so an interrupted run resumes where it stopped.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from distillcore.config_cli import assignments_tag, parse_assignments, set_dotted
from distillcore.serialization import load_state, write_json_atomic
from distill3d.points.distill import METHODS, DistillConfig, loss_settings
from distill3d.points.fusion import fuse_for_inference
from distill3d.points.kitti import KittiDataset, write_kitti_dataset
from distill3d.points.pillars import PillarConfig, PillarDetector
from distill3d.points.point_detector import PointDetector, PointDetectorConfig
from distill3d.points.simulate import SimulationConfig, simulate_dataset
from distill3d.points.train import FAMILIES, TrainConfig, build_detector, evaluate_detector, train_detector

RESULTS = Path(__file__).resolve().parent / "results" / "pointdistiller.json"
EVAL_SEEDS = {"val": 1, "test": 2}  # simulation seeds of the held-out splits (train: 0)
HEADLINE = "moderate"
INFERENCE = ("BatchNorm folded into the convolutions; pillar backbone channels-last; C++ cropping, pillar point "
             "features, FPS, kNN / ball query and grouping")


def load_or_simulate(root: Path, split: str, count: int, seed: int, sim: SimulationConfig):
    listing = root / "ImageSets" / f"{split}.txt"
    if not listing.is_file() or len(listing.read_text().split()) != count:  # absent, or cached at another size
        scans = simulate_dataset(sim, count, seed, progress=True)
        for s in scans:
            s.frame_id = f"{split}_{s.frame_id}"
        write_kitti_dataset(root, scans, sim.class_names, split=split)
    return KittiDataset(root, sim.class_names, split=split).scans()


def model_cost(model, scans) -> dict:
    """Parameters and forward FLOPs of one scan (the time per scan comes from :func:`interleaved_ms_per_scan`
    over every model of a family)."""
    model.eval()
    points = [torch.from_numpy(scans[0].points)]
    with torch.no_grad():
        inputs = model.preprocess(points, torch.Generator().manual_seed(0))
        with FlopCounterMode(display=False) as counter:
            model(inputs)
    return {"params": sum(p.numel() for p in model.parameters()), "gflops": counter.get_total_flops() / 1e9}


# Pillar teachers of growing size for the speed-scaling table: our default, and PointPillars' own
# channel plan (64-channel pillar net; blocks of 64/128/256 channels with 3/5/5 convolutions).
SCALING_TEACHERS = {
    "default": PillarConfig(),
    "pointpillars-channels": PillarConfig(pfn_channels=64, block_channels=(64, 128, 256), block_layers=(3, 5, 5),
                                          upsample_channels=128, head_channels=64),
}


@torch.no_grad()
def interleaved_ms_per_scan(models: dict, scans, runs: int, repeats: int = 3, decode: bool = False) -> dict:
    """Median CPU time (ms) per scan of preprocess + forward (+ decoding and NMS with ``decode``) of the
    inference copies of ``models`` (:func:`fuse_for_inference`) over the first ``runs`` scans, each timed
    ``repeats`` times after one warm-up pass. The models are timed in turn on each scan (in alternating
    order), so a load change on a shared machine hits them alike."""
    fused = {name: fuse_for_inference(model) for name, model in models.items()}
    times = {name: [] for name in models}
    for repeat in range(repeats + 1):
        for scan in scans[:runs]:
            points = [torch.from_numpy(scan.points)]
            for name, model in (fused.items() if repeat % 2 else reversed(fused.items())):
                start = time.process_time()
                out = model(model.preprocess(points, torch.Generator().manual_seed(0)))
                if decode:
                    model.decode(out)
                if repeat:  # the first pass warms caches and allocators
                    times[name].append(time.process_time() - start)
    return {name: 1000 * statistics.median(t) for name, t in times.items()}


def speed_scaling(scans, width: float, runs: int) -> dict:
    """Teacher vs width-``width`` student forward time for each of ``SCALING_TEACHERS`` and the point
    detector (untrained; BatchNorm with random statistics, as after training, so folding it is no
    shortcut; no decoding: untrained heads score everything alike). Teacher and student are timed in
    turn on every scan (:func:`interleaved_ms_per_scan`), three rounds, and each keeps its fastest round."""
    rows = {}
    for name, build in [*((n, lambda w, c=c: PillarDetector(dataclasses.replace(c, width=w))) for n, c in SCALING_TEACHERS.items()),
                        ("point-default", lambda w: PointDetector(PointDetectorConfig(width=w)))]:
        models = {"teacher": build(1.0), "student": build(width)}
        for model in models.values():
            randomise_batchnorm(model)
        row = {f"{role}_params": sum(p.numel() for p in m.parameters()) for role, m in models.items()}
        rounds = [interleaved_ms_per_scan(models, scans, runs) for _ in range(3)]
        for role in models:
            row[f"{role}_forward_ms"] = min(r[role] for r in rounds)
        row["speedup"] = row["teacher_forward_ms"] / row["student_forward_ms"]
        rows[name] = row
    return rows


@torch.no_grad()
def randomise_batchnorm(model) -> None:
    """Non-trivial BatchNorm statistics and affine parameters for untrained models."""
    gen = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen))
            m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=gen))
            m.weight.copy_(0.5 + torch.rand(m.num_features, generator=gen))
            m.bias.copy_(0.1 * torch.randn(m.num_features, generator=gen))


def print_speed_scaling(table: dict, threads: int) -> None:
    print(f"\nSpeed scaling, untrained weights, preprocess + forward per scan (CPU ms) of the inference copies on {threads} thread(s)")
    print(f"{'teacher size':24s} {'teacher params':>15s} {'ms':>7s} {'student params':>15s} {'ms':>7s} {'speedup':>8s}")
    for name, row in table.items():
        print(f"{name:24s} {row['teacher_params']:15d} {row['teacher_forward_ms']:7.1f} {row['student_params']:15d} "
              f"{row['student_forward_ms']:7.1f} {row['speedup']:7.1f}x")


def speed_scaling_config(args) -> dict:
    # the load average goes with the times: on a shared machine they are slower than on an idle one
    return {"threads": args.threads, "student_width": args.width, "timing_runs": args.timing_runs, "clock": "process CPU time",
            "inference": INFERENCE, "loadavg_1_5_15": [round(x, 2) for x in os.getloadavg()]}


def distill_config(method: str, settings: dict[str, object]) -> DistillConfig:
    """``DistillConfig(method=method)`` with the dotted ``--set`` fields changed (validated)."""
    config = DistillConfig(method=method)
    for key, value in settings.items():
        set_dotted(config, key, value)
    config.validate()
    return config


def load_finished(path: Path, steps: int, distill: DistillConfig | None, model) -> bool:
    """Loads ``path`` into ``model`` if it holds a finished run of ``model``'s architecture with these
    settings; a run with another architecture or other distillation settings is deleted (resuming it
    would mix two configurations)."""
    if not path.is_file():
        return False
    state = load_state(path, what="detector checkpoint")
    if (state["model_config"] != dataclasses.asdict(model.cfg)
            or state["meta"].get("distill") != (dataclasses.asdict(distill) if distill is not None else None)):
        path.unlink()
        return False
    if state.get("step") != steps:
        return False
    model.load_state_dict(state["state_dict"])
    model.eval()
    return True


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1 seed and shorter training (a smoke run of the full table)")
    parser.add_argument("--seeds", type=int, default=None, help="student seeds 0..N-1 (default 5, quick 1)")
    parser.add_argument("--seed-list", type=int, nargs="+", default=None,
                        help="these student seeds instead of 0..N-1 (a subset of the table, e.g. to extend it)")
    parser.add_argument("--steps", type=int, default=None, help="training steps per model (default 2000, quick 300)")
    parser.add_argument("--train-scans", type=int, default=800, help="simulated training scans")
    parser.add_argument("--eval-scans", type=int, default=400, help="simulated held-out scans the table is measured on")
    parser.add_argument("--eval-split", choices=list(EVAL_SEEDS), default="test",
                        help="held-out split: 'val' for choosing settings, 'test' (another simulation seed) for reporting")
    parser.add_argument("--width", type=float, default=0.5, help="student width multiplier (0.5 = about 4x fewer parameters)")
    parser.add_argument("--families", nargs="+", default=list(FAMILIES), choices=FAMILIES,
                        help="detector families (the point detector trains about 2.5x slower on a CPU)")
    parser.add_argument("--methods", nargs="+", default=["none", "kd", "fitnet", "pointdistiller"], choices=METHODS)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 avoids oversubscribing a shared machine)")
    parser.add_argument("--timing-runs", type=int, default=10, help="scans timed for the inference-time column")
    parser.add_argument("--no-scaling", action="store_true", help="skip the teacher-size speed-scaling table")
    parser.add_argument("--speed-only", action="store_true",
                        help="only the speed-scaling table (no training), merged into an existing --out")
    parser.add_argument("--data-dir", type=Path, default=Path(tempfile.gettempdir()) / "distillkit_pointdistiller_sim",
                        help="cache of the simulated KITTI-layout data set")
    parser.add_argument("--work-dir", type=Path, default=Path(tempfile.gettempdir()) / "distillkit_pointdistiller_ckpt",
                        help="checkpoints (reused and resumed across runs)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="JSON results file")
    parser.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", dest="settings",
                        help="change DistillConfig fields of the distilled students, e.g. pointdistiller.weight=3 "
                             "fitnet_weight=2 (VALUE read as JSON); their checkpoints go to a folder of their own "
                             "under --work-dir (the teacher and the no-KD students are shared)")
    args = parser.parse_args(argv)
    try:
        settings = parse_assignments(args.settings)
        distill_config("pointdistiller", settings)
    except ValueError as error:
        parser.error(str(error))
    if "method" in settings:
        parser.error("--set method: each row is its method (--methods), not a setting")
    if settings and args.out == RESULTS:
        parser.error(f"--set: give --out for the results of other settings (they would replace {RESULTS.name})")
    seed_list = args.seed_list or list(range(args.seeds or (1 if args.quick else 5)))
    seeds = len(seed_list)
    steps = args.steps or (300 if args.quick else 2000)
    torch.set_num_threads(args.threads)

    sim = SimulationConfig()
    if args.speed_only:
        held_out = load_or_simulate(args.data_dir, args.eval_split, args.eval_scans, EVAL_SEEDS[args.eval_split], sim)
        table = speed_scaling(held_out, args.width, args.timing_runs)
        print_speed_scaling(table, args.threads)
        results = json.loads(args.out.read_text()) if args.out.is_file() else {}
        results["speed_scaling"] = table
        results["speed_scaling_config"] = speed_scaling_config(args)
        write_json_atomic(args.out, results, indent=1)
        print(f"\nwrote {args.out}")
        return results
    train = load_or_simulate(args.data_dir, "train", args.train_scans, 0, sim)
    held_out = load_or_simulate(args.data_dir, args.eval_split, args.eval_scans, EVAL_SEEDS[args.eval_split], sim)
    thresholds = tuple(c.iou_threshold for c in sim.classes)
    meta = {"class_names": sim.class_names, "iou_thresholds": thresholds}
    tag = f"s{steps}_n{len(train)}"
    results: dict = {"config": {"steps": steps, "train_scans": len(train), "eval_split": args.eval_split, "eval_scans": len(held_out),
                                "student_width": args.width, "difficulty": HEADLINE, "threads": args.threads,
                                "classes": list(sim.class_names), "iou_thresholds": list(thresholds)}, "families": {}}
    if settings:
        results["config"]["distill_settings"] = settings
    if args.seed_list:
        results["config"]["seed_list"] = seed_list
    for family in args.families:
        rows = {}
        teacher_path = args.work_dir / f"{family}_teacher_{tag}.pt"
        torch.manual_seed(0)  # the initialisation too is part of the seed
        teacher = build_detector(family, len(sim.class_names), 1.0)
        if not load_finished(teacher_path, steps, None, teacher):
            train_detector(teacher, train, TrainConfig(steps=steps, seed=0), teacher_path, meta=meta)
        ap = evaluate_detector(teacher, held_out, sim.class_names, thresholds)
        rows["teacher"] = {"width": 1.0, "seeds": 1, **model_cost(teacher, held_out), "ap": [ap]}
        timed = {"teacher": teacher}  # the last seed's student of each method joins it
        for method in args.methods:
            runs = []
            for seed in seed_list:
                distill = None if method == "none" else distill_config(method, settings)
                # only students whose own loss the settings change train again, in a folder of their own
                changed = distill is not None and loss_settings(distill) != loss_settings(DistillConfig(method=method))
                if distill is not None and not changed:
                    distill = DistillConfig(method=method)  # the default run's settings, so its checkpoint is reused
                folder = args.work_dir / assignments_tag(settings) if changed else args.work_dir
                path = folder / f"{family}_student{args.width}_{method}_seed{seed}_{tag}.pt"
                torch.manual_seed(seed)
                student = build_detector(family, len(sim.class_names), args.width)
                if not load_finished(path, steps, distill, student):
                    train_detector(student, train, TrainConfig(steps=steps, seed=seed), path, meta=meta,
                                   teacher=None if distill is None else teacher, distill=distill)
                runs.append(evaluate_detector(student, held_out, sim.class_names, thresholds))
            rows[f"student+{method}"] = {"width": args.width, "seeds": seeds, **model_cost(student, held_out), "ap": runs}
            timed[f"student+{method}"] = student
        for name, ms in interleaved_ms_per_scan(timed, held_out, args.timing_runs, decode=True).items():
            rows[name]["ms_per_scan"] = ms
        for row in rows.values():
            for kind in ("bev", "3d"):
                m, s = mean_std([r[f"mAP/{kind}/{HEADLINE}"] for r in row["ap"]])
                row[f"mAP_{kind}_mean"], row[f"mAP_{kind}_std"] = m, s
        # Paired by seed (same initialisation and batch order): the difference to no KD is far less
        # noisy than either mean when a seed is unlucky for every method alike.
        baseline = rows.get("student+none")
        for name, row in rows.items():
            if baseline is not None and name.startswith("student+") and name != "student+none":
                for kind in ("bev", "3d"):
                    key = f"mAP/{kind}/{HEADLINE}"
                    m, s = mean_std([r[key] - b[key] for r, b in zip(row["ap"], baseline["ap"])])
                    row[f"delta_vs_none_{kind}_mean"], row[f"delta_vs_none_{kind}_std"] = m, s
        teacher_ms = rows["teacher"]["ms_per_scan"]
        for row in rows.values():
            row["speedup_vs_teacher"] = teacher_ms / row["ms_per_scan"]
        results["families"][family] = rows

    print(f"\nPointDistiller on simulated LiDAR ({len(train)} train / {len(held_out)} {args.eval_split} scans, {steps} steps, "
          f"{seeds} student seed(s), 1 teacher); mAP over {', '.join(sim.class_names)} at {HEADLINE} difficulty, AP R40 (%)")
    header = (f"{'family':8s} {'model':24s} {'params':>8s} {'GFLOPs':>7s} {'ms/scan':>8s} {'speedup':>7s} {'BEV mAP':>13s} "
              f"{'3D mAP':>13s} {'BEV vs none':>13s} {'3D vs none':>13s}")
    print(header + "\n" + "-" * len(header))
    for family, rows in results["families"].items():
        for name, row in rows.items():
            print(f"{family:8s} {name:24s} {row['params']:8d} {row['gflops']:7.3f} {row['ms_per_scan']:8.1f} {row['speedup_vs_teacher']:6.1f}x "
                  f"{row['mAP_bev_mean']:6.1f} ± {row['mAP_bev_std']:4.1f} {row['mAP_3d_mean']:6.1f} ± {row['mAP_3d_std']:4.1f}"
                  + "".join(f" {row[f'delta_vs_none_{k}_mean']:+6.1f} ± {row[f'delta_vs_none_{k}_std']:4.1f}"
                            for k in ("bev", "3d") if f"delta_vs_none_{k}_mean" in row))
    if not args.no_scaling:
        results["speed_scaling"] = speed_scaling(held_out, args.width, args.timing_runs)
        results["speed_scaling_config"] = speed_scaling_config(args)
        print_speed_scaling(results["speed_scaling"], args.threads)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if args.out.is_file():  # keep the other family's rows from an earlier run with the same settings (seeds may differ)
        previous = json.loads(args.out.read_text())
        if previous.get("config") == results["config"]:
            results["families"] = {**previous["families"], **results["families"]}
        if "speed_scaling" not in results:  # --no-scaling keeps the earlier table (older files lack its config)
            results.update({k: previous[k] for k in ("speed_scaling", "speed_scaling_config") if k in previous})
    write_json_atomic(args.out, results, indent=1)
    print(f"\nwrote {args.out}")
    return results


if __name__ == "__main__":
    main()
