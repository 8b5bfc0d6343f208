"""Feature 3DGS on the default scene: image quality, feature fidelity, query segmentation, speed.

Three fields train on the committed default scene (distill3d/scenes/default, 32 train / 8 held-out views):

    plain      3DGS, RGB loss only
    feature    + feature L1 to the teacher (EfficientNet-Lite0 112-ch H/16 map), D = 112 rendered
    decoder    + speed-up decoder: D_low rendered channels, 1x1 conv to 112

Reported per field at the held-out views: PSNR / SSIM, feature cosine similarity to the teacher's
map of the held-out image, query-segmentation mIoU against the object masks (mask-mean prototypes
from 8 training views, nearest prototype per pixel), training time, and CPU render FPS (RGB +
features, one view at a time). The teacher row scores the teacher's own features of the held-out
images with the same protocol. Usage::

    python benchmarks/feature3dgs.py            # full
    python benchmarks/feature3dgs.py --quick    # reduced steps
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys
import tempfile
import time

import torch

from distillcore.serialization import write_json_atomic
from distill3d.data import default_scene_dir
from distillcore.config_cli import build_config, merge
from distill3d.fields.config import TrainConfig, short_schedule
from distill3d.fields.pipeline import prepare_scene
from distill3d.fields.trainer import Trainer
from distill3d.query import segmentation_miou

RESULTS = pathlib.Path(__file__).parent / "results" / "feature3dgs.json"
PROTOTYPE_VIEW_STRIDE = 4  # every 4th training view gives prototypes
FPS_REPEATS = 2
MODES = ("plain", "feature", "decoder")


def make_config(args, mode: str) -> TrainConfig:
    # the same short schedule as `distill3d train --preset quick|benchmark` (one definition)
    data = merge(short_schedule(args.steps, args.points), {"teacher": args.teacher, "sh_degree": args.sh_degree})
    if mode == "plain":
        data = merge(data, {"loss": {"feature_weight": 0.0}})
    if mode == "decoder":
        data = merge(data, {"decoder": {"enabled": True, "low_dim": args.low_dim}})
    return build_config(TrainConfig, data)


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="reduced run (fewer steps and points)")
    parser.add_argument("--steps", type=int, default=None, help="training steps per field (default 1000, quick 150)")
    parser.add_argument("--points", type=int, default=None, help="initial Gaussians (default 5000)")
    parser.add_argument("--teacher", default="efficientnet-lite0", help="teacher registry name")
    parser.add_argument("--low-dim", type=int, default=16, help="decoder's rendered width D_low")
    parser.add_argument("--sh-degree", type=int, default=3, help="maximum SH degree")
    parser.add_argument("--downscale", type=int, default=2, help="train and evaluate at 1/N resolution")
    parser.add_argument("--scene", type=pathlib.Path, default=None, help="scene folder (default: distill3d/scenes/default)")
    parser.add_argument("--cache", type=pathlib.Path, default=pathlib.Path("benchmarks/.cache/features"),
                        help="teacher feature cache")
    parser.add_argument("--out", type=pathlib.Path, default=RESULTS, help="JSON results path")
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES),
                        help="fields to train; rows of other modes already in --out with the same settings are "
                             "kept, so a long benchmark can run in several processes")
    args = parser.parse_args(argv)
    args.steps = args.steps or (150 if args.quick else 1000)
    args.points = args.points or 5000
    scene_dir = args.scene or default_scene_dir()

    prepared = prepare_scene(scene_dir, args.teacher, args.cache, downscale=args.downscale)
    train, test, maps = prepared.train, prepared.test, prepared.teacher_maps
    if test is None or train.masks is None or test.masks is None:
        raise ValueError(f"{scene_dir} needs a test split and object masks for this benchmark")
    num_classes = int(max(train.masks.max(), test.masks.max())) + 1
    reference = list(range(0, train.num_views, PROTOTYPE_VIEW_STRIDE))
    ref_masks = [train.masks[i] for i in reference]
    test_masks = [test.masks[i] for i in range(test.num_views)]
    teacher_miou = segmentation_miou([maps[train.names[i]] for i in reference], ref_masks,
                                     [maps[n] for n in test.names], test_masks, num_classes)
    rows = {"teacher": {"miou": teacher_miou}}
    runs = tempfile.TemporaryDirectory(prefix="feature3dgs-")
    settings = {"scene": str(scene_dir), "teacher": args.teacher, "steps": args.steps, "initial_points": args.points,
                "decoder_low_dim": args.low_dim, "downscale": args.downscale, "resolution": [train.height, train.width]}
    if args.out.is_file():
        previous = json.loads(args.out.read_text())
        if all(previous.get(k) == v for k, v in settings.items()):
            rows.update({m: r for m, r in previous["rows"].items() if m in MODES and m not in args.modes})
    for mode in args.modes:
        cfg = make_config(args, mode)
        trainer = Trainer(train, cfg, pathlib.Path(runs.name) / mode, maps, test, name=prepared.name)
        metrics = trainer.train(progress=True)
        row = {k: metrics[k] for k in ("psnr", "ssim", "train_seconds", "num_gaussians")}
        if trainer.use_features:
            row["feature_cosine"] = metrics["feature_cosine"]
            row["miou"] = segmentation_miou(rendered_maps(trainer, train, reference), ref_masks,
                                            rendered_maps(trainer, test, list(range(test.num_views))),
                                            test_masks, num_classes)
        row["render_fps"] = render_fps(trainer, test, with_features=trainer.use_features)
        rows[mode] = row
        print(f"{mode}: {row}", flush=True)
    runs.cleanup()

    result = {**settings, "quick": args.quick, "device": "cpu", "torch_threads": torch.get_num_threads(),
              "rows": {name: rows[name] for name in ("teacher", *MODES) if name in rows}}
    if all(m in rows for m in MODES):
        result["psnr_gap_vs_plain_db"] = rows["plain"]["psnr"] - rows["feature"]["psnr"]
        result["decoder_speedup"] = rows["decoder"]["render_fps"] / rows["feature"]["render_fps"]
        result["decoder_miou_drop_points"] = 100 * (rows["feature"]["miou"] - rows["decoder"]["miou"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.out, result)

    print(f"\nFeature 3DGS on {scene_dir.name} at {train.width}x{train.height} ({args.steps} steps, "
          f"teacher {args.teacher}, CPU)")
    print(f"{'method':10s} {'PSNR':>7s} {'SSIM':>6s} {'feat cos':>8s} {'mIoU':>6s} {'train s':>8s} {'FPS':>6s}")
    for name, row in result["rows"].items():
        def cell(key, width, digits):
            return f"{row[key]:{width}.{digits}f}" if key in row else f"{'-':>{width}s}"
        print(f"{name:10s} {cell('psnr', 7, 2)} {cell('ssim', 6, 3)} {cell('feature_cosine', 8, 3)} "
              f"{cell('miou', 6, 3)} {cell('train_seconds', 8, 0)} {cell('render_fps', 6, 2)}")
    if "decoder_speedup" in result:
        print(f"PSNR gap vs plain: {result['psnr_gap_vs_plain_db']:.2f} dB; decoder speed-up "
              f"{result['decoder_speedup']:.2f}x at {result['decoder_miou_drop_points']:.1f} mIoU points drop")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
