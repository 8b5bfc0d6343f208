"""Progressive radiance distillation benchmark: novel views, relighting, albedo and normals.

For each scene (the committed default scene; ``--scenes default glossy`` adds the glossy recipe once
``distill3d scenes build glossy --out distill3d/scenes/glossy`` has rendered it):

  (a) PRD: radiance pre-training, then the physical stages with the learned progress map;
  (b) the same physical model and stages with alpha_p = 1 throughout (no radiance fallback, GS-IR style);
  (c) plain 3DGS (the shared radiance pre-training) for novel views.

(a) and (b) start from the same pre-trained radiance field (its checkpoint is copied). Metrics at the
held-out test views (``distill3d.inverse.metrics``): novel-view PSNR/SSIM, relit PSNR/SSIM against the
renderer's views under the scene's second light, albedo PSNR after per-channel scale alignment,
normal mean angular error; then ``relit_oracles``: the relit PSNR again with ground-truth normals /
albedo / materials swapped in, and how each model treats cast shadows. Writes ``benchmarks/results/prd.json``.

    python benchmarks/prd.py --quick      # 64 x 64, 300 radiance steps, 3 x 50 physical steps
    python benchmarks/prd.py              # 128 x 128, the default PRDConfig schedule
    python benchmarks/prd.py --quick --progress-sweep 0.1 0.9   # + PRD runs from other initial progress
    python benchmarks/prd.py --set model.init.albedo=0.5 --out /tmp/prd_grey.json   # (a) and (b) with other settings
"""
from __future__ import annotations

import argparse
import functools
import json
import pathlib
import re
import shutil

from distillcore.serialization import write_json_atomic
from distill3d.data import SCENES_DIR
from distill3d.inverse.config import PRDConfig
from distill3d.inverse.metrics import evaluate_inverse, relit_oracles
from distill3d.inverse.pipeline import load_splits
from distill3d.inverse.trainer import PRDTrainer, load_prd_checkpoint

RESULTS = pathlib.Path(__file__).resolve().parent / "results" / "prd.json"
QUICK = {"downsample": 2, "radiance_steps": 300, "stage_steps": (50, 50, 50), "num_points": 3000}
FULL = {"downsample": 1, "radiance_steps": 3000, "stage_steps": None, "num_points": 20_000}
STAGE_NAMES = {stage.name for stage in PRDConfig().stages}


def apply_settings(config: PRDConfig, settings: dict[str, object]) -> None:
    """Sets dotted ``PRDConfig`` fields (``model.init.albedo``); ``stages.FIELD`` sets it in every stage."""
    for key, value in settings.items():
        *path, name = key.split(".")
        try:
            targets = config.stages if path == ["stages"] else [functools.reduce(getattr, path, config)]
        except AttributeError:
            raise ValueError(f"--set {key}: PRDConfig has no {'.'.join(path)!r}") from None
        for target in targets:
            if not hasattr(target, name):
                raise ValueError(f"--set {key}: {type(target).__name__} has no field {name!r}")
            setattr(target, name, value)


def settings_tag(settings: dict[str, object]) -> str:
    """A folder name for the runs of these settings, so they never overwrite the default runs."""
    return "set_" + re.sub(r"[^A-Za-z0-9._=-]", "", "_".join(f"{k}={v}" for k, v in sorted(settings.items())))


def benchmark_config(size: dict, progress: str, progress_init: float | None = None,
                     settings: dict[str, object] | None = None) -> PRDConfig:
    config = PRDConfig()
    if progress_init is not None:
        config.model.init.progress = progress_init
    radiance = config.radiance
    radiance.steps, radiance.init.num_points, radiance.eval_every = size["radiance_steps"], size["num_points"], 0
    if size["stage_steps"] is not None:  # reduced run: densify and raise the SH degree early
        radiance.sh_degree_interval = radiance.steps * 2 // 3 or 1
        radiance.densify.refine_start_iter, radiance.densify.refine_every = radiance.steps // 3, 100
        radiance.densify.refine_stop_iter = radiance.steps * 2 // 3
        for stage, steps in zip(config.stages, size["stage_steps"]):
            stage.steps = steps
    apply_settings(config, settings or {})
    config.model.progress = progress
    return config


def run_scene(scene_dir: pathlib.Path, size: dict, workdir: pathlib.Path, progress_bars: bool,
              progress_sweep: tuple[float, ...] = (), settings: dict[str, object] | None = None) -> dict:
    settings = settings or {}
    train, test = load_splits(scene_dir, size["downsample"])
    results: dict[str, dict] = {}
    runs = [("prd", "learned", None), ("alpha_one", "one", None)]
    runs += [(f"prd_progress_init_{p:g}", "learned", p) for p in progress_sweep]
    run_dir = workdir / scene_dir.name / (settings_tag(settings) if settings else "")
    # Every run starts from the same pre-training: the default runs' one, unless the settings change it.
    shared = workdir / scene_dir.name / "prd" / "radiance"
    if any(key.startswith("radiance.") for key in settings) or not shared.exists():
        shared = run_dir / "prd" / "radiance"
    for method, progress, progress_init in runs:
        out = run_dir / method
        if out / "radiance" != shared and not (out / "radiance").exists():
            shutil.copytree(shared, out / "radiance")
        config = benchmark_config(size, progress, progress_init, settings)
        trainer = PRDTrainer(train, config, out, test, name=scene_dir.name)
        if trainer.checkpoint_path.is_file():
            if load_prd_checkpoint(trainer.checkpoint_path)["config"] == trainer.config.to_dict():
                trainer.resume()
            else:  # an older run with other settings: retrain the physical stages from the shared pre-training
                print(f"{out}: the configuration changed since its checkpoint, training the physical stages again")
                trainer.checkpoint_path.unlink()
        trainer.train(progress=progress_bars)
        metrics = evaluate_inverse(trainer.model, test)
        metrics["oracles"] = relit_oracles(trainer.model, test)
        # Summed over the stages from the checkpoint's history, so a reused run reports its training time;
        # None for checkpoints of versions that did not record it.
        stage_seconds = [h.get("seconds") for h in trainer.history if h.get("stage") in STAGE_NAMES]
        metrics["physical_train_seconds"] = None if None in stage_seconds else sum(stage_seconds)
        results[method] = metrics
        if method == "prd":
            radiance = next(h for h in trainer.history if h.get("stage") == "radiance")
            results["plain_3dgs"] = {"novel_psnr": radiance["psnr"], "novel_ssim": radiance["ssim"],
                                     "num_gaussians": radiance["num_gaussians"]}
    return {"resolution": [train.height, train.width], "train_views": train.num_views, "test_views": test.num_views,
            **results}


def print_table(scene: str, r: dict) -> None:
    cols = ("novel_psnr", "novel_ssim", "relit_psnr", "relit_psnr_aligned", "relit_ssim", "albedo_psnr",
            "normal_error_deg", "mean_progress_objects")
    print(f"\n{scene} ({r['resolution'][0]}x{r['resolution'][1]}, {r['train_views']} train / {r['test_views']} test views)")
    print(f"{'method':<34}" + "".join(f"{c:>22}" for c in cols))
    names = {"prd": "(a) PRD", "alpha_one": "(b) physical only (alpha=1)", "plain_3dgs": "(c) plain 3DGS"}
    names.update({k: f"(a) initial progress {k.rsplit('_', 1)[1]}" for k in r if k.startswith("prd_progress_init_")})
    for key, label in names.items():
        row = r[key]
        print(f"{label:<34}" + "".join(f"{row[c]:>22.3f}" if c in row else f"{'-':>22}" for c in cols))
    print(f"relit PSNR (a) - (b): {r['prd']['relit_psnr'] - r['alpha_one']['relit_psnr']:+.2f} dB (target >= +1); "
          f"novel PSNR (a) - (c): {r['prd']['novel_psnr'] - r['plain_3dgs']['novel_psnr']:+.2f} dB (target >= -0.5)")
    oracle_cols = ("relit_psnr_model", "relit_psnr_gt_normals", "relit_psnr_albedo_rescaled", "relit_psnr_gt_albedo",
                   "relit_psnr_gt_materials", "relit_psnr_gt_albedo_in_shadows", "mean_progress_shadows",
                   "mean_progress_lit", "albedo_brightness_shadows")
    print("relit PSNR with ground truth swapped in on objects (distill3d.inverse.metrics.relit_oracles); "
          f"cast shadows cover {r['prd']['oracles'].get('shadow_fraction', 0) * 100:.1f}% of object pixels")
    print(f"{'method':<34}" + "".join(f"{c.removeprefix('relit_psnr_'):>27}" for c in oracle_cols))
    for key, label in names.items():
        row = r[key].get("oracles", {})
        if row:
            print(f"{label:<34}" + "".join(f"{row[c]:>27.3f}" if c in row else f"{'-':>27}" for c in oracle_cols))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="reduced run (64 x 64, short schedules)")
    parser.add_argument("--scenes", nargs="+", default=["default"], help="bundled scene names (distill3d/scenes/NAME) or paths")
    parser.add_argument("--workdir", default=str(pathlib.Path.home() / ".cache" / "distillkit" / "bench_prd"),
                        help="run folders (checkpoints: an interrupted benchmark resumes)")
    parser.add_argument("--out", default=str(RESULTS), help="JSON results file")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--progress-sweep", type=float, nargs="*", default=[],
                        help="extra PRD runs starting the progress map at these values (default start: 0.5)")
    parser.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", dest="settings",
                        help="change PRDConfig fields for (a) and (b), e.g. model.init.albedo=0.5 stages.light_weight=0 "
                             "optim.light_lr=0.1 (VALUE is read as JSON, else as text); the runs go to their own "
                             "folders and start from the default runs' pre-training unless radiance.* is set")
    args = parser.parse_args(argv)
    settings = {}
    for item in args.settings:
        key, sep, raw = item.partition("=")
        if not sep:
            parser.error(f"--set takes KEY=VALUE, got {item!r}")
        try:
            settings[key] = json.loads(raw)
        except json.JSONDecodeError:
            settings[key] = raw
    try:
        apply_settings(PRDConfig(), settings)
    except ValueError as error:
        parser.error(str(error))
    size = QUICK if args.quick else FULL
    workdir = pathlib.Path(args.workdir) / ("quick" if args.quick else "full")
    report = {"mode": "quick" if args.quick else "full", "size": size, "settings": settings, "scenes": {}}
    for name in args.scenes:
        scene_dir = pathlib.Path(name) if pathlib.Path(name).is_dir() else SCENES_DIR / name
        if not (scene_dir / "transforms_train.json").is_file():
            print(f"skipping {name}: no scene at {scene_dir} (build it with `distill3d scenes build {name}`)")
            report["scenes"][name] = {"missing": str(scene_dir)}
            continue
        report["scenes"][name] = run_scene(scene_dir, size, workdir, not args.no_progress, tuple(args.progress_sweep),
                                           settings)
        print_table(name, report["scenes"][name])
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out, report)
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
