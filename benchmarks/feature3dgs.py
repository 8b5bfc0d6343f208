"""Feature 3DGS: image quality, feature fidelity, query segmentation, speed; default and outdoor scenes.

Three fields train on a scene (default: the committed distill3d/scenes/default, 32 train / 8 held-out views):

    plain      3DGS, RGB loss only
    feature    + feature L1 to the teacher (EfficientNet-Lite0 112-ch H/16 map), D = 112 rendered
    decoder    + speed-up decoder: D_low rendered channels, 1x1 conv to 112 (PCA-initialised, see
               distill3d.fields.decoder); ``--low-dims 8 16 32 64`` adds one row ``decoder_<k>`` per width

and, from the trained ``feature`` field without training, one row ``compressed_<k>`` per width: the field
compressed into the teacher's top-k PCA (``FeatureField.compressed``: each Gaussian's feature replaced by
its coordinates in that subspace, the decoder set to the basis).

Reported per field at the held-out views: PSNR / SSIM, feature cosine similarity to the teacher's
map of the held-out image, query-segmentation mIoU against the object masks, training time, and CPU
render FPS (RGB + features, one view at a time). Segmentation protocol: one mask-mean prototype per
object id from every 4th TRAINING view, each held-out pixel labelled by its most cosine-similar
prototype, mIoU over the held-out views' object masks (coarser maps bilinearly upsampled). The teacher
row scores the teacher's own maps of the held-out images the same way.

``--scene outdoor`` trains on the ``outdoor`` recipe (rendered into benchmarks/.cache/scenes on first
use, a few minutes): photos without alpha that show ground, walls and sky behind the objects. It is
trained as from photos: no depth maps (``init.method = random``), a sky sphere of distant Gaussians
(``init.sky_points``), over black (the scene's colour: every pixel is covered). With ``--eval-every``
the held-out PSNR is recorded along training, and the first step / time at >= 30 dB is reported.

``--speed-size 256`` (and more sizes) times the feature render alone on one geometry: the trained
``feature`` field's Gaussians rendered with their D features, and compressed to D_low (the
``compressed_<k>`` rows) plus the 1x1 decode, at each size, so the ratio isolates the compositing of D
channels; and a segmentation query end to end (render + nearest-prototype labels), where a compressed
field is scored in D_low without writing the D-channel map.

Usage::

    python benchmarks/feature3dgs.py                          # default scene (feature3dgs.json)
    python benchmarks/feature3dgs.py --quick                  # reduced steps
    python benchmarks/feature3dgs.py --scene outdoor --out benchmarks/results/feature3dgs_outdoor.json \\
        --eval-every 250 --steps 3000 --modes feature --workdir benchmarks/.cache/runs/outdoor   # resumable
    python benchmarks/feature3dgs.py --low-dims 8 32 64 --speed-size 256 512 --workdir benchmarks/.cache/runs/default
    python benchmarks/feature3dgs.py --low-dims 8 32 64 --speed-size 256 512 --workdir benchmarks/.cache/runs/default \\
        --speed-only --speed-repeats 5    # re-time the speed table alone on the trained field
"""
from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import sys
import tempfile
import time

from distillcore.config_cli import preload_environment

preload_environment()  # before torch loads (as the distill3d command does: large frames on huge pages)

import torch  # noqa: E402

from distillcore.config_cli import build_config, merge  # noqa: E402
from distillcore.serialization import write_json_atomic  # noqa: E402
from distill3d.data import default_scene_dir  # noqa: E402
from distill3d.data.recipes import RECIPES, get_recipe  # noqa: E402
from distill3d.fields.config import TrainConfig, short_schedule  # noqa: E402
from distill3d.fields.decoder import teacher_pca  # noqa: E402
from distill3d.fields.field import FeatureField  # noqa: E402
from distill3d.fields.pipeline import prepare_scene  # noqa: E402
from distill3d.fields.trainer import Trainer  # noqa: E402
from distill3d.query import prototypes_from_views, segmentation_miou  # noqa: E402

RESULTS = pathlib.Path(__file__).parent / "results" / "feature3dgs.json"
BUILT_SCENES = pathlib.Path(__file__).parent / ".cache" / "scenes"
PROTOTYPE_VIEW_STRIDE = 4  # every 4th training view gives prototypes
FPS_REPEATS = 2
SPEED_REPEATS = 3  # rounds of the feature-render speed table (fastest kept)
MODES = ("plain", "feature", "decoder")
TARGET_PSNR = 30.0
DEFAULT_CHECKPOINT_EVERY = 250  # steps between checkpoints of a --workdir run without --eval-every
# photos without alpha (the outdoor recipe): no depth maps, random points in the cube of half-side
# 1.5 camera distances around the focus (ground and walls reach past the cameras), a sky sphere
OUTDOOR_SETTINGS = {"init": {"method": "random", "random_radius": 1.5, "sky_points": 4000}}


def make_config(args, mode: str, low_dim: int | None = None) -> TrainConfig:
    # the same short schedule as `distill3d train --preset quick|benchmark` (one definition)
    data = merge(short_schedule(args.steps, args.points), {"teacher": args.teacher, "sh_degree": args.sh_degree,
                                                            "eval_every": args.eval_every})
    if args.photos:
        data = merge(data, OUTDOOR_SETTINGS)
    data = merge(data, json.loads(args.override))
    if mode == "plain":
        data = merge(data, {"loss": {"feature_weight": 0.0}})
    if mode == "decoder":
        data = merge(data, {"decoder": {"enabled": True, "low_dim": low_dim or args.low_dim,
                                        "init": args.decoder_init}})
    return build_config(TrainConfig, data)


def scene_folder(scene: str | None) -> pathlib.Path:
    """A folder as given, a bundled scene, or a recipe rendered (once) into benchmarks/.cache/scenes."""
    if scene is None:
        return default_scene_dir()
    if pathlib.Path(scene).is_dir():
        return pathlib.Path(scene)
    try:
        return default_scene_dir(scene)
    except FileNotFoundError:
        if scene not in RECIPES:
            raise
    from distill3d.data.builder import build_scene

    return build_scene(get_recipe(scene), BUILT_SCENES / scene)  # resumes an interrupted build


@torch.no_grad()
def rendered_maps(trainer: Trainer, scene, indices: list[int]) -> list[torch.Tensor]:
    return [trainer.render_view(scene, i).features[0] for i in indices]


@torch.no_grad()
def render_fps(trainer: Trainer, scene, with_features: bool) -> float:
    trainer.render_view(scene, 0, with_features=with_features)  # warm-up
    started = time.perf_counter()
    for _ in range(FPS_REPEATS):
        for i in range(scene.num_views):
            trainer.render_view(scene, i, with_features=with_features)
    return FPS_REPEATS * scene.num_views / (time.perf_counter() - started)


@torch.no_grad()
def feature_render_speed(trainer: Trainer, scene, compressed: dict[int, FeatureField], prototypes: torch.Tensor,
                         sizes: list[int], repeats: int = SPEED_REPEATS) -> dict:
    """Seconds per view of the trained field's Gaussians rendered with D features and, for each D_low of
    ``compressed``, as that compressed field, at each square size (test views, intrinsics scaled to the
    size), four ways:

    - ``rgb_and_features``: RGB in the same pass (as in training), then the 1x1 decode to D;
    - ``features_only``: features alone (a query needs no colour), then the 1x1 decode to D;
    - ``render_only``: features alone, not decoded (what the render itself costs at each width: the
      width-independent part bounds every speed-up);
    - ``segmentation``: features alone, then nearest-prototype labels for ``prototypes [K, D]``; a
      compressed field is scored in D_low without decoding (``SpeedUpDecoder.cosine_similarity``), so no
      D-channel map is written.

    Times are CPU time of this process (``time.process_time``, all its threads together: the committed
    runs use ``OMP_NUM_THREADS=1``, recorded as ``torch_threads``), which other processes on a shared
    machine inflate far less than wall-clock time; widths are timed interleaved and each keeps its
    fastest of ``repeats`` rounds over the views."""
    from distill3d.query import nearest_prototype
    from distill3d.render import rasterize

    g = trainer.field.gaussians
    teacher_dim = g.features.shape[1]
    low_dims = sorted(compressed)
    widths = {teacher_dim: (g.features.contiguous(), None),
              **{k: (low.gaussians.features.contiguous(), low.decoder) for k, low in compressed.items()}}
    views = list(range(min(scene.num_views, 4)))
    out = {}
    for size in sizes:
        Ks = scene.Ks.clone()
        Ks[:, :2] *= size / scene.width
        table = {}
        for kind in ("rgb_and_features", "features_only", "render_only", "segmentation"):
            with_rgb = kind == "rgb_and_features"

            def render(features, decoder):
                for i in views:
                    # without colours the one-channel depth is the cheapest mode rasterize offers
                    _, feats, _, _ = rasterize(g.means, g.quats, g.activated_scales, g.activated_opacities,
                                               g.sh_coeffs if with_rgb else None, scene.viewmats[i:i + 1],
                                               Ks[i:i + 1], size, size, features=features,
                                               sh_degree=g.sh_degree if with_rgb else None,
                                               render_mode="RGB" if with_rgb else "D",
                                               backend=trainer.config.backend)
                    maps = feats.permute(0, 3, 1, 2)
                    if kind == "segmentation":
                        nearest_prototype(maps[0], prototypes, decoder)
                    elif decoder is not None and kind != "render_only":
                        decoder(maps)
            best = {k: float("inf") for k in widths}
            render(*widths[teacher_dim])  # warm-up
            for _ in range(repeats):
                for k, (features, decoder) in widths.items():
                    started = time.process_time()
                    render(features, decoder)
                    best[k] = min(best[k], (time.process_time() - started) / len(views))
            table[kind] = {"seconds_per_view": {str(k): v for k, v in best.items()},
                           "speedup": {str(k): best[teacher_dim] / best[k] for k in low_dims}}
            print(f"feature render {size}x{size} {kind}: "
                  + ", ".join(f"D={k}: {1000 * v:.1f} ms" for k, v in best.items()), flush=True)
        out[str(size)] = table
    # the machine's load while timing (sizes are the other keys)
    out.update({"rounds": repeats, "prototypes": int(prototypes.shape[0]), "clock": "process CPU time",
                "load_average": [round(v, 2) for v in os.getloadavg()],
                "thp_mem_alloc_enable": os.environ.get("THP_MEM_ALLOC_ENABLE", "unset")})
    return out


@torch.no_grad()
def region_psnr(trainer: Trainer, scene) -> dict:
    """Held-out PSNR over the pixels of each region (sky = id 0, ground + walls, table, objects) and the
    region's share of the total squared error: where the image error of a photo scene sits."""
    names = scene.object_names or []
    groups = {"sky": {0}, "ground_walls": {i for i, n in enumerate(names) if n == "ground" or n.startswith("wall_")},
              "table": {i for i, n in enumerate(names) if n == "table"}}
    groups["objects"] = set(range(len(names))) - set().union(*groups.values())
    sums, counts = {k: 0.0 for k in groups}, {k: 0 for k in groups}
    for i in range(scene.num_views):
        error = ((trainer.render_view(scene, i, with_features=False).rgb[0].clamp(0, 1)
                  - trainer.target_image(scene, i, trainer.background())[0]) ** 2).sum(0)
        for key, ids in groups.items():
            inside = torch.isin(scene.masks[i], torch.tensor(sorted(ids), dtype=torch.long))
            sums[key] += float(error[inside].sum()) / 3
            counts[key] += int(inside.sum())
    total = sum(sums.values())
    pixels = sum(counts.values())
    return {k: {"psnr": -10 * math.log10(max(sums[k] / counts[k], 1e-12)), "pixel_share": counts[k] / pixels,
                "error_share": sums[k] / total} for k in groups if counts[k]}


def class_ious(reference_maps, reference_masks, eval_maps, eval_masks, num_classes: int) -> list[float | None]:
    """Per-class IoU over all held-out pixels (segmentation protocol of the module doc)."""
    from distill3d.query.evaluate import segment_views

    labels = torch.stack(segment_views(eval_maps, prototypes_from_views(reference_maps, reference_masks, num_classes),
                                       tuple(eval_masks[0].shape)))
    target = torch.stack(eval_masks)
    out = []
    for k in range(num_classes):
        union = int(((labels == k) | (target == k)).sum())
        out.append(int(((labels == k) & (target == k)).sum()) / union if union else None)
    return out


def psnr_curve_summary(history: list[dict], seconds_per_step: float) -> dict:
    """Held-out PSNR along training and the first evaluated step at >= TARGET_PSNR (None if never), with
    the training time to it: as the trainer recorded it, else ``step * seconds_per_step`` (the run's mean,
    an over-estimate: early steps have fewer Gaussians)."""
    curve = [{"step": h["step"], "psnr": h["psnr"]} for h in history if "psnr" in h]
    first = next((h for h in history if h.get("psnr", -math.inf) >= TARGET_PSNR), None)
    if first is None:
        return {"psnr_curve": curve, "steps_to_30db": None, "seconds_to_30db": None}
    recorded = "total_train_seconds" in first
    return {"psnr_curve": curve, "steps_to_30db": first["step"],
            "seconds_to_30db": first["total_train_seconds"] if recorded else first["step"] * seconds_per_step,
            "seconds_to_30db_from": "recorded" if recorded else "mean time per step"}


def compressed_widths(field: FeatureField, train_maps: list[torch.Tensor], args) -> dict[int, FeatureField]:
    """The trained field compressed into the teacher's top-k PCA for every decoder width of the run."""
    return {k: field.compressed(*teacher_pca(train_maps, k)) for k in sorted({args.low_dim, *args.low_dims})}


def speed_only(parser, args, settings: dict, prepared, reference: list[int], ref_masks, num_classes: int) -> None:
    """``--speed-only``: the speed table of the ``feature`` field checkpointed in ``--workdir``, merged into
    ``--out`` (which must hold a run with the same settings)."""
    if not (args.workdir and args.speed_size and args.out.is_file()):
        parser.error("--speed-only needs --workdir (holding a trained feature field), --speed-size and an existing --out")
    previous = json.loads(args.out.read_text())
    differing = [k for k, v in settings.items() if previous.get(k) != v]
    if differing:
        parser.error(f"{args.out} was measured with other settings ({', '.join(differing)}): pass the same ones")
    train, test, maps = prepared.train, prepared.test, prepared.teacher_maps
    trainer = Trainer(train, make_config(args, "feature"), args.workdir / "feature", maps, test, name=prepared.name)
    if not trainer.checkpoint_path.is_file():
        parser.error(f"no feature field checkpoint at {trainer.checkpoint_path}: train it with --modes feature first")
    trainer.resume()
    if trainer.step < args.steps:
        parser.error(f"the feature field in {args.workdir} stopped at step {trainer.step} of {args.steps}: finish it first")
    compressed_fields = compressed_widths(trainer.field, [maps[n] for n in train.names], args)
    prototypes = prototypes_from_views(rendered_maps(trainer, train, reference), ref_masks, num_classes)
    previous["feature_render_speed"] = feature_render_speed(trainer, test, compressed_fields, prototypes,
                                                            args.speed_size, args.speed_repeats)
    write_json_atomic(args.out, previous)
    print(f"wrote {args.out}")


def results(args, settings: dict, rows: dict, speed: dict | None) -> dict:
    """The JSON written after every field (a long run interrupted keeps the rows it finished)."""
    result = {**settings, "quick": args.quick, "device": "cpu", "torch_threads": torch.get_num_threads(),
              "segmentation_protocol": "mask-mean prototypes from every 4th training view; nearest prototype "
                                       "(cosine) per held-out pixel; mIoU over the held-out views' object masks",
              "rows": {name: rows[name] for name in ("teacher", *MODES, *sorted(set(rows) - {"teacher", *MODES}))
                       if name in rows}}
    if speed is not None:
        result["feature_render_speed"] = speed
    if all(m in rows for m in MODES):
        result["psnr_gap_vs_plain_db"] = rows["plain"]["psnr"] - rows["feature"]["psnr"]
        result["decoder_speedup"] = rows["decoder"]["render_fps"] / rows["feature"]["render_fps"]
        result["decoder_miou_drop_points"] = 100 * (rows["feature"]["miou"] - rows["decoder"]["miou"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.out, result)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="reduced run (fewer steps and points)")
    parser.add_argument("--steps", type=int, default=None, help="training steps per field (default 1000, quick 150)")
    parser.add_argument("--points", type=int, default=None, help="initial Gaussians (default 5000)")
    parser.add_argument("--teacher", default="efficientnet-lite0", help="teacher registry name")
    parser.add_argument("--low-dim", type=int, default=16, help="decoder's rendered width D_low (row 'decoder')")
    parser.add_argument("--low-dims", type=int, nargs="*", default=[],
                        help="more decoder widths, one row decoder_<k> each (and in the speed table)")
    parser.add_argument("--decoder-init", default="pca", choices=("pca", "random"), help="decoder initialisation")
    parser.add_argument("--sh-degree", type=int, default=3, help="maximum SH degree")
    parser.add_argument("--downscale", type=int, default=2, help="train and evaluate at 1/N resolution")
    parser.add_argument("--scene", default=None,
                        help="scene folder, bundled scene or recipe name (e.g. outdoor; default: the default scene)")
    parser.add_argument("--eval-every", type=int, default=0, help="held-out PSNR every N steps (0: only at the end)")
    parser.add_argument("--speed-size", type=int, nargs="*", default=[],
                        help="square sizes of the feature-render speed table (needs the feature mode)")
    parser.add_argument("--speed-repeats", type=int, default=SPEED_REPEATS,
                        help="rounds of the speed table (each width keeps its fastest; more on a loaded machine)")
    parser.add_argument("--override", default="{}", help="JSON merged into every field's TrainConfig")
    parser.add_argument("--cache", type=pathlib.Path, default=pathlib.Path("benchmarks/.cache/features"),
                        help="teacher feature cache")
    parser.add_argument("--out", type=pathlib.Path, default=RESULTS, help="JSON results path")
    parser.add_argument("--workdir", type=pathlib.Path, default=None,
                        help="run folders kept here, checkpointed every --eval-every steps (else 250): an "
                             "interrupted benchmark resumes its fields (default: a temporary folder)")
    parser.add_argument("--speed-only", action="store_true",
                        help="only the --speed-size table, re-timed on the feature field checkpointed in --workdir "
                             "(no training; e.g. on a quieter machine), merged into an existing --out")
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES),
                        help="fields to train; rows of other modes already in --out with the same settings are "
                             "kept, so a long benchmark can run in several processes")
    args = parser.parse_args(argv)
    args.steps = args.steps or (150 if args.quick else 1000)
    args.points = args.points or 5000
    scene_dir = scene_folder(args.scene)

    prepared = prepare_scene(scene_dir, args.teacher, args.cache, downscale=args.downscale)
    train, test, maps = prepared.train, prepared.test, prepared.teacher_maps
    if test is None or train.masks is None or test.masks is None:
        raise ValueError(f"{scene_dir} needs a test split and object masks for this benchmark")
    args.photos = train.alphas is None  # photos without alpha: trained as a real capture (OUTDOOR_SETTINGS)
    num_classes = int(max(train.masks.max(), test.masks.max())) + 1
    reference = list(range(0, train.num_views, PROTOTYPE_VIEW_STRIDE))
    ref_masks = [train.masks[i] for i in reference]
    test_masks = [test.masks[i] for i in range(test.num_views)]
    teacher_miou = segmentation_miou([maps[train.names[i]] for i in reference], ref_masks,
                                     [maps[n] for n in test.names], test_masks, num_classes)
    rows = {"teacher": {"miou": teacher_miou}}
    teacher_eval = [maps[n] for n in test.names]
    train_maps = [maps[n] for n in train.names]  # their PCA gives the compressed fields
    rows["teacher"]["class_iou"] = class_ious([maps[train.names[i]] for i in reference], ref_masks, teacher_eval,
                                              test_masks, num_classes)
    runs = None if args.workdir else tempfile.TemporaryDirectory(prefix="feature3dgs-")
    run_root = args.workdir or pathlib.Path(runs.name)
    settings = {"scene": str(scene_dir), "teacher": args.teacher, "steps": args.steps, "initial_points": args.points,
                "decoder_low_dim": args.low_dim, "decoder_init": args.decoder_init, "downscale": args.downscale,
                "resolution": [train.height, train.width], "override": json.loads(args.override),
                "photos": args.photos, "object_names": train.object_names}
    if args.speed_only:
        speed_only(parser, args, settings, prepared, reference, ref_masks, num_classes)
        return 0
    names = [*args.modes] + ([f"decoder_{k}" for k in args.low_dims] if "decoder" in args.modes else [])
    if args.out.is_file():
        previous = json.loads(args.out.read_text())
        if all(previous.get(k) == v for k, v in settings.items()):
            rows.update({m: r for m, r in previous["rows"].items() if m != "teacher" and m not in names})
    jobs = [(mode, None) for mode in args.modes]
    if "decoder" in args.modes:
        jobs += [("decoder", k) for k in args.low_dims]
    speed = None
    for mode, low_dim in jobs:
        name = mode if low_dim is None else f"decoder_{low_dim}"
        cfg = make_config(args, mode, low_dim)
        if args.workdir:
            cfg.checkpoint_every = args.eval_every or DEFAULT_CHECKPOINT_EVERY
        trainer = Trainer(train, cfg, run_root / name, maps, test, name=prepared.name)
        if args.workdir and trainer.checkpoint_path.is_file():
            trainer.resume()
        resumed_from = trainer.step
        metrics = trainer.train(progress=True)
        row = {k: metrics[k] for k in ("psnr", "ssim", "num_gaussians")}
        row["train_seconds"] = metrics["total_train_seconds"]  # a resumed field adds its runs' times
        if resumed_from:
            row["resumed_from_step"] = resumed_from
        if args.eval_every:
            row.update(psnr_curve_summary(trainer.history, metrics["total_train_seconds"] / metrics["step"]))
        def segmentation(row: dict) -> None:
            field_ref = rendered_maps(trainer, train, reference)
            field_eval = rendered_maps(trainer, test, list(range(test.num_views)))
            row["miou"] = segmentation_miou(field_ref, ref_masks, field_eval, test_masks, num_classes)
            row["class_iou"] = class_ious(field_ref, ref_masks, field_eval, test_masks, num_classes)

        if trainer.use_features:
            row["feature_cosine"] = metrics["feature_cosine"]
            segmentation(row)
        if mode == "feature":
            # the trained field compressed afterwards into the teacher's top-k PCA (FeatureField.compressed)
            full_field = trainer.field
            compressed_fields = compressed_widths(full_field, train_maps, args)
            for k, compressed_field in compressed_fields.items():
                trainer.field = compressed_field
                compressed = {key: value for key, value in trainer.evaluate().items()
                              if key in ("psnr", "ssim", "feature_cosine")}
                segmentation(compressed)
                rows[f"compressed_{k}"] = compressed
            trainer.field = full_field
        if args.photos:
            row["region_psnr"] = region_psnr(trainer, test)
        row["render_fps"] = render_fps(trainer, test, with_features=trainer.use_features)
        if mode == "feature" and args.speed_size:
            prototypes = prototypes_from_views(rendered_maps(trainer, train, reference), ref_masks, num_classes)
            speed = feature_render_speed(trainer, test, compressed_fields, prototypes, args.speed_size,
                                         args.speed_repeats)
        rows[name] = row
        print(f"{name}: {json.dumps({k: v for k, v in row.items() if k != 'psnr_curve'})}", flush=True)
        results(args, settings, rows, speed)
    if runs is not None:
        runs.cleanup()
    result = results(args, settings, rows, speed)

    print(f"\nFeature 3DGS on {scene_dir.name} at {train.width}x{train.height} ({args.steps} steps, "
          f"teacher {args.teacher}, CPU)")
    print(f"{'method':11s} {'PSNR':>7s} {'SSIM':>6s} {'feat cos':>8s} {'mIoU':>6s} {'train s':>8s} {'FPS':>6s} "
          f"{'steps@30dB':>10s}")
    for name, row in result["rows"].items():
        def cell(key, width, digits):
            return f"{row[key]:{width}.{digits}f}" if row.get(key) is not None else f"{'-':>{width}s}"
        print(f"{name:11s} {cell('psnr', 7, 2)} {cell('ssim', 6, 3)} {cell('feature_cosine', 8, 3)} "
              f"{cell('miou', 6, 3)} {cell('train_seconds', 8, 0)} {cell('render_fps', 6, 2)} "
              f"{cell('steps_to_30db', 10, 0)}")
    if "decoder_speedup" in result:
        print(f"PSNR gap vs plain: {result['psnr_gap_vs_plain_db']:.2f} dB; decoder speed-up "
              f"{result['decoder_speedup']:.2f}x at {result['decoder_miou_drop_points']:.1f} mIoU points drop")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
