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
    python benchmarks/prd.py --size medium --scenes interreflect --visibility both --seeds 0 1 2
    python benchmarks/prd.py --size quick --scenes default glossy --visibility both --methods prd   # (a) only
    python benchmarks/prd.py --size quick --scenes interreflect default glossy --visibility on --seeds 0 1 2 \
        --set model.init.albedo_deshadow_side=cameras model.init.albedo_deshadow_floor=0.3   # docs/prd.md

``--visibility on`` shades (a) and (b) with the baked visibility of ``distill3d.inverse.visibility``
(``both``: with and without, as ``prd`` / ``alpha_one`` and ``prd_visibility`` / ``alpha_one_visibility``).
A scene name that is a builder recipe but not a bundled scene (``interreflect``) is built into
``WORKDIR/scenes/NAME`` first; scenes with direct-only renders also report ``fallback``
(``distill3d.inverse.unmodelled.fallback_report``). Colour: ``relit_psnr_aligned`` and ``albedo_psnr`` are
per-channel-scale aligned (the tables' default); ``oracles.relit_psnr_white_balance`` /
``relit_psnr_grey_world`` use the calibrations of ``distill3d.inverse.metrics`` instead. Visibility runs on a
recipe's scene also report ``visibility_leak`` (:func:`visibility_leak`): the baked visibility of the table-top
Gaussians against rays traced on the recipe's true shapes.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil

import torch

from distillcore.config_cli import assignments_tag, parse_assignments, set_dotted
from distillcore.serialization import write_json_atomic
from distill3d.data import SCENES_DIR
from distill3d.data.builder import build_scene, mitsuba_scene_dict
from distill3d.data.recipes import RECIPES, get_recipe
from distill3d.inverse.config import PRDConfig
from distill3d.inverse.cubemap import texel_directions, texel_solid_angles
from distill3d.inverse.metrics import evaluate_inverse, relit_oracles
from distill3d.inverse.model import PRDModel
from distill3d.inverse.pipeline import Scene, load_splits
from distill3d.inverse.relight import environment_from
from distill3d.inverse.trainer import PRDTrainer, load_prd_checkpoint
from distill3d.inverse.unmodelled import fallback_report, load_direct_renders
from distill3d.inverse.visibility import light_bins

RESULTS = pathlib.Path(__file__).resolve().parent / "results" / "prd.json"
QUICK = {"downsample": 2, "radiance_steps": 300, "stage_steps": (50, 50, 50), "num_points": 3000}
FULL = {"downsample": 1, "radiance_steps": 3000, "stage_steps": None, "num_points": 20_000}
# between the two: for runs over several seeds and settings on a shared CPU
MEDIUM = {"downsample": 2, "radiance_steps": 1000, "stage_steps": (150, 200, 150), "num_points": 5000}
SIZES = {"quick": QUICK, "medium": MEDIUM, "full": FULL}
STAGE_NAMES = {stage.name for stage in PRDConfig().stages}


def apply_settings(config: PRDConfig, settings: dict[str, object]) -> None:
    """Sets dotted ``PRDConfig`` fields (``model.init.albedo``); ``stages.FIELD`` sets it in every stage."""
    for key, value in settings.items():
        if key.startswith("stages."):
            for stage in config.stages:
                set_dotted(stage, key.removeprefix("stages."), value, option=key)
        else:
            set_dotted(config, key, value)


# receivers of visibility_leak: Gaussians this close to the table top (z = 0), in scene units
TABLE_BAND = 0.03
LEAK_CUBE_RESOLUTION = 16  # cube-map face size of the fine ground truth of visibility_leak
# the visibility_leak entries printed and summarised over seeds
LEAK_COLUMNS = ("shadow_light_fraction_true", "shadow_light_fraction_true_at_directions", "shadow_light_fraction_baked",
                "lit_light_fraction_true", "lit_light_fraction_baked", "shadow_ambient_true", "shadow_ambient_baked")


@torch.no_grad()
def visibility_leak(model: PRDModel, scene_dir: pathlib.Path, scene: Scene) -> dict | None:
    """The baked visibility ``V`` of the table-top Gaussians against rays traced on the scene's true shapes
    (mitsuba, the recipe that built the scene). Receivers: Gaussians within ``TABLE_BAND`` of z = 0 whose
    first surface straight down from above is the table top; their true rays leave from just above the
    table along its normal z. Per receiver, the light-weighted visible fraction of the upper hemisphere under
    the training light,

        S_i = sum_k V_ik w_k / sum_k w_k,   w_k = mean_c B_k,c max(0, b_k . z)   (``visibility.light_bins``)

    baked (the model's ``V``), true on the model's directions ``d_k`` and true over the texels of a
    ``LEAK_CUBE_RESOLUTION`` cube map (what a finer direction set would see), which classifies the receivers:
    in cast shadow where that fine S < 1/2, lit where it is > 0.9; and the cosine-weighted (ambient) visible
    fraction ``sum_k V_ik max(0, d_k . z) / sum_k max(0, d_k . z)``, baked and true. Means over each group.
    None when the scene was not built from a recipe, has no training light, or mitsuba is missing."""
    meta = json.loads((scene_dir / "scene.json").read_text()) if (scene_dir / "scene.json").is_file() else {}
    if meta.get("name") not in RECIPES or scene.environment is None or not model.uses_visibility:
        return None
    try:
        from distill3d.data.mitsuba_setup import ensure_variant
        mi = ensure_variant()
    except ImportError:
        return None
    recipe = get_recipe(meta["name"])
    shapes = mi.load_dict(mitsuba_scene_dict(recipe, scene.environment.numpy().astype("float32")))
    means = model.gaussians.means.detach().double()
    half_x, half_y = recipe.table.half_extent
    on_table = (means[:, 2].abs() < TABLE_BAND) & (means[:, 0].abs() < half_x) & (means[:, 1].abs() < half_y)
    near = torch.nonzero(on_table)[:, 0]
    down = mi.Vector3f(0.0, 0.0, -1.0)
    top = [abs(shapes.ray_intersect(mi.Ray3f(mi.Point3f(float(x), float(y), 10.0), down)).p.z) < 1e-3
           for x, y in means[near, :2].tolist()]
    receivers = near[torch.tensor(top, dtype=torch.bool)]
    starts = [mi.Point3f(float(x), float(y), 1e-3) for x, y in means[receivers, :2].tolist()]

    def traced(directions: torch.Tensor) -> torch.Tensor:  # [R, K] 1 where the ray leaves the scene
        out = torch.zeros(len(starts), len(directions))
        for k, d in enumerate(directions.tolist()):
            if d[2] > 0:
                ray_dir = mi.Vector3f(*d)
                out[:, k] = torch.tensor([not shapes.ray_test(mi.Ray3f(p, ray_dir)) for p in starts],
                                         dtype=torch.float32)
        return out

    light = environment_from(scene.environment, LEAK_CUBE_RESOLUTION).radiance().detach()
    directions = model.visibility_directions
    bins = light_bins(light, directions)
    weights = bins.power.mean(-1) * bins.directions[:, 2].clamp(min=0)
    cosine = directions[:, 2].clamp(min=0)
    texels = texel_directions(LEAK_CUBE_RESOLUTION).reshape(-1, 3)
    texel_weights = (light.reshape(-1, 3).mean(-1) * texel_solid_angles(LEAK_CUBE_RESOLUTION).reshape(-1)
                     * texels[:, 2].clamp(min=0))
    upper = texel_weights > 0
    fine = (traced(texels[upper]) * texel_weights[upper]).sum(-1) / texel_weights[upper].sum()
    true, baked = traced(directions), model.visibility.float()[receivers]
    fraction = {name: (v * w).sum(-1) / w.sum() for name, v, w in (
        ("light_fraction_true_at_directions", true, weights), ("light_fraction_baked", baked, weights),
        ("ambient_true", true, cosine), ("ambient_baked", baked, cosine))}
    fraction["light_fraction_true"] = fine
    report: dict = {"receivers": len(receivers)}
    for group, where in (("shadow", fine < 0.5), ("lit", fine > 0.9)):
        report[f"{group}_receivers"] = int(where.sum())
        for name, values in fraction.items():
            report[f"{group}_{name}"] = float(values[where].mean()) if where.any() else None
    return report


def benchmark_config(size: dict, progress: str, progress_init: float | None = None,
                     settings: dict[str, object] | None = None, visibility: bool = False, seed: int = 0) -> PRDConfig:
    config = PRDConfig(seed=seed)
    config.radiance.seed = seed
    config.model.visibility.enabled = visibility
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
              progress_sweep: tuple[float, ...] = (), settings: dict[str, object] | None = None,
              visibility: str = "off", seed: int = 0, methods: tuple[str, ...] = ("prd", "alpha_one")) -> dict:
    settings = settings or {}
    train, test = load_splits(scene_dir, size["downsample"])
    direct = load_direct_renders(scene_dir, "test", size["downsample"])
    results: dict[str, dict] = {}
    runs = []
    for shaded in {"off": (False,), "on": (True,), "both": (False, True)}[visibility]:
        suffix = "_visibility" if shaded else ""
        runs += [(f"{method}{suffix}", progress, None, shaded)
                 for method, progress in (("prd", "learned"), ("alpha_one", "one")) if method in methods]
    runs += [(f"prd_progress_init_{p:g}", "learned", p, visibility == "on") for p in progress_sweep]
    run_dir = workdir / scene_dir.name / (f"seed_{seed}" if seed else "") / (assignments_tag(settings) if settings else "")
    # Every run starts from the same pre-training: the default runs' one, unless the settings change it.
    shared = workdir / scene_dir.name / (f"seed_{seed}" if seed else "") / runs[0][0] / "radiance"
    if any(key.startswith("radiance.") for key in settings) or not shared.exists():
        shared = run_dir / runs[0][0] / "radiance"
    for method, progress, progress_init, shaded in runs:
        out = run_dir / method
        if out / "radiance" != shared and not (out / "radiance").exists():
            shutil.copytree(shared, out / "radiance")
        config = benchmark_config(size, progress, progress_init, settings, shaded, seed)
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
        if direct is not None:
            metrics["fallback"] = fallback_report(trainer.model, test, direct)
        if shaded:
            leak = visibility_leak(trainer.model, scene_dir, test)
            if leak is not None:
                metrics["visibility_leak"] = leak
        # Summed over the stages from the checkpoint's history, so a reused run reports its training time;
        # None for checkpoints of versions that did not record it.
        stage_seconds = [h.get("seconds") for h in trainer.history if h.get("stage") in STAGE_NAMES]
        metrics["physical_train_seconds"] = None if None in stage_seconds else sum(stage_seconds)
        results[method] = metrics
        bake = [h["seconds"] for h in trainer.history if h.get("stage") == "visibility"]
        if bake:
            metrics["visibility_bake_seconds"] = bake[0]
        if method == runs[0][0]:
            radiance = next(h for h in trainer.history if h.get("stage") == "radiance")
            results["plain_3dgs"] = {"novel_psnr": radiance["psnr"], "novel_ssim": radiance["ssim"],
                                     "num_gaussians": radiance["num_gaussians"]}
    return {"resolution": [train.height, train.width], "train_views": train.num_views, "test_views": test.num_views,
            **results}


METHOD_LABELS = {"prd": "(a) PRD", "alpha_one": "(b) physical only (alpha=1)",
                 "prd_visibility": "(a) PRD, visibility", "alpha_one_visibility": "(b) alpha=1, visibility",
                 "plain_3dgs": "(c) plain 3DGS"}
SUMMARY_METRICS = ("novel_psnr", "relit_psnr", "relit_psnr_aligned", "albedo_psnr")


def _cell(value: float | None, width: int) -> str:
    """A table cell: the value to 3 decimals, or '-' where it is missing or was stored as null (a NaN
    correlation is written to JSON as null)."""
    return f"{'-':>{width}}" if value is None else f"{value:>{width}.3f}"


def print_table(scene: str, r: dict) -> None:
    cols = ("novel_psnr", "novel_ssim", "relit_psnr", "relit_psnr_aligned", "relit_ssim", "albedo_psnr",
            "normal_error_deg", "mean_progress_objects")
    print(f"\n{scene} ({r['resolution'][0]}x{r['resolution'][1]}, {r['train_views']} train / {r['test_views']} test views; "
          "relit aligned and albedo PSNR: per-channel scale aligned)")
    print(f"{'method':<34}" + "".join(f"{c:>22}" for c in cols))
    names = {k: v for k, v in METHOD_LABELS.items() if k in r}
    names.update({k: f"(a) initial progress {k.rsplit('_', 1)[1]}" for k in r if k.startswith("prd_progress_init_")})
    for key, label in names.items():
        row = r[key]
        print(f"{label:<34}" + "".join(_cell(row.get(c), 22) for c in cols))
    for suffix in ("", "_visibility"):
        a, b = r.get("prd" + suffix), r.get("alpha_one" + suffix)
        if a and b:
            print(f"(a) - (b){suffix}: relit aligned {a['relit_psnr_aligned'] - b['relit_psnr_aligned']:+.2f} dB, albedo "
                  f"{a['albedo_psnr'] - b['albedo_psnr']:+.2f} dB; novel (a) - (c) "
                  f"{a['novel_psnr'] - r['plain_3dgs']['novel_psnr']:+.2f} dB (target >= -0.5)")
    oracle_cols = ("relit_psnr_model", "relit_psnr_white_balance", "relit_psnr_grey_world", "relit_psnr_albedo_rescaled",
                   "relit_psnr_gt_albedo", "relit_psnr_gt_materials", "relit_psnr_gt_albedo_in_shadows",
                   "mean_progress_shadows", "mean_progress_lit", "albedo_brightness_shadows", "albedo_brightness_lit")
    first = next(iter(names))
    print("relit PSNR with ground truth swapped in on objects or colour calibrations (distill3d.inverse.metrics."
          f"relit_oracles); cast shadows cover {r[first].get('oracles', {}).get('shadow_fraction', 0) * 100:.1f}% of "
          "object pixels")
    _print_rows(r, names, "oracles", oracle_cols, 27, lambda c: c.removeprefix("relit_psnr_"))
    fallback_cols = ("unmodelled_fraction_mean", "correlation_1_minus_progress_vs_unmodelled", "progress_dominated",
                     "progress_rest", "albedo_abs_error_dominated", "albedo_abs_error_rest", "physical_abs_error_dominated",
                     "physical_abs_error_rest", "radiance_abs_error_dominated", "radiance_abs_error_rest")
    if any("fallback" in r[k] for k in names if isinstance(r[k], dict)):
        print("unmodelled light (full - direct renders; distill3d.inverse.unmodelled.fallback_report)")
        _print_rows(r, names, "fallback", fallback_cols, 45)
    if any("visibility_leak" in r[k] for k in names if isinstance(r[k], dict)):
        print("visible fraction of the training light (S) and of the cosine-weighted hemisphere (ambient) of table-top "
              "receivers: baked V against rays on the true shapes (visibility_leak)")
        _print_rows(r, names, "visibility_leak", LEAK_COLUMNS, 30, lambda c: c.replace("light_fraction", "S"))


def _print_rows(r: dict, names: dict, section: str, columns, width: int, header=lambda c: c) -> None:
    """One line per method that has ``section`` in its results: the ``columns`` of it, ``width`` wide."""
    print(f"{'method':<34}" + "".join(f"{header(c):>{width}}" for c in columns))
    for key, label in names.items():
        row = r[key].get(section, {})
        if row:
            print(f"{label:<34}" + "".join(_cell(row.get(c), width) for c in columns))


def seed_summary(per_seed: dict[int, dict]) -> dict:
    """Mean and spread (max - min) over seeds of the headline metrics of each method."""
    out: dict[str, dict] = {}
    methods = set.intersection(*(set(k for k, v in r.items() if isinstance(v, dict)) for r in per_seed.values()))
    for method in sorted(methods):
        for metric in SUMMARY_METRICS + ("fallback.correlation_1_minus_progress_vs_unmodelled",
                                         "fallback.albedo_abs_error_dominated", "oracles.albedo_brightness_shadows",
                                         *(f"visibility_leak.{k}" for k in LEAK_COLUMNS)):
            group, _, name = metric.rpartition(".")
            values = [(r[method].get(group, {}) if group else r[method]).get(name) for r in per_seed.values()]
            if all(v is not None for v in values):
                out.setdefault(method, {})[metric] = {"mean": sum(values) / len(values), "spread": max(values) - min(values),
                                                      "values": values}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="reduced run (64 x 64, short schedules); = --size quick")
    parser.add_argument("--size", choices=sorted(SIZES), default=None, help="quick, medium or full (default: full)")
    parser.add_argument("--visibility", choices=("off", "on", "both"), default="off",
                        help="shade (a) and (b) with baked visibility: off, on, or both variants")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds of the pre-training and stages")
    parser.add_argument("--methods", nargs="+", choices=("prd", "alpha_one"), default=["prd", "alpha_one"],
                        help="physical-model runs: (a) prd and / or (b) alpha_one ((c) plain 3DGS always comes along)")
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
    try:
        settings = parse_assignments(args.settings)
        apply_settings(config := PRDConfig(), settings)
        config.validate()  # ranges now, not after a scene has loaded
    except ValueError as error:
        parser.error(str(error))
    if "model.progress" in settings:
        parser.error("--set model.progress: each run is its method, (a) learned and (b) one (--methods)")
    mode = args.size or ("quick" if args.quick else "full")
    size = SIZES[mode]
    workdir = pathlib.Path(args.workdir) / mode
    report = {"mode": mode, "size": size, "settings": settings, "visibility": args.visibility, "seeds": args.seeds,
              "methods": args.methods, "load_average_at_start": os.getloadavg(),
              "colour": "relit_psnr_aligned and albedo_psnr are per-channel-scale aligned; oracles hold the "
                        "white-balance and grey-world calibrations", "scenes": {}}
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    for name in args.scenes:
        scene_dir = pathlib.Path(name) if pathlib.Path(name).is_dir() else SCENES_DIR / name
        if not (scene_dir / "transforms_train.json").is_file() and name in RECIPES:
            scene_dir = build_scene(get_recipe(name), pathlib.Path(args.workdir) / "scenes" / name)
        if not (scene_dir / "transforms_train.json").is_file():
            print(f"skipping {name}: no scene at {scene_dir} (build it with `distill3d scenes build {name}`)")
            report["scenes"][name] = {"missing": str(scene_dir)}
            continue
        per_seed = {}
        for seed in args.seeds:
            per_seed[seed] = run_scene(scene_dir, size, workdir, not args.no_progress, tuple(args.progress_sweep),
                                       settings, args.visibility, seed, tuple(args.methods))
            print_table(f"{name}, seed {seed}", per_seed[seed])
            report["scenes"][name] = {**per_seed[args.seeds[0]], "seeds": {str(k): v for k, v in per_seed.items()},
                                      "seed_summary": seed_summary(per_seed)}
            report["load_average"] = os.getloadavg()  # 1 / 5 / 15 min: times measured on a shared machine
            write_json_atomic(out, report)  # after every seed: an interrupted benchmark keeps what it measured
    write_json_atomic(out, report)
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
