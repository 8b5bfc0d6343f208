"""``distill3d inverse``: progressive radiance distillation from the command line.

    distill3d inverse train SCENE [--out DIR] [--downsample F] [--radiance-steps N] [--stage-steps S D J]
                                  [--no-radiance-fallback] [--config FILE.json] [--resume]
    distill3d inverse relight RUN --env FILE|relight [--env-key KEY] [--out DIR] [--keep-radiance]
"""
from __future__ import annotations

import argparse
import json
import pathlib

from distillcore.checks import check_positive


def _train(args: argparse.Namespace) -> int:
    from .config import PRDConfig
    from .pipeline import train_prd

    config = PRDConfig.from_dict(json.loads(pathlib.Path(args.config).read_text())) if args.config else PRDConfig()
    if args.radiance_steps is not None:
        check_positive(args.radiance_steps, "--radiance-steps")
        config.radiance.steps = args.radiance_steps
    if args.stage_steps is not None:
        if len(args.stage_steps) != len(config.stages):
            raise SystemExit(f"--stage-steps needs {len(config.stages)} values "
                             f"({', '.join(s.name for s in config.stages)}), got {len(args.stage_steps)}")
        for stage, steps in zip(config.stages, args.stage_steps):
            stage.steps = steps
    if args.no_radiance_fallback:
        config.model.progress = "one"
    config.radiance.backend = args.backend
    out = pathlib.Path(args.out or f"runs/prd_{pathlib.Path(args.scene).name}")
    _, metrics = train_prd(args.scene, config, out, downsample=args.downsample, resume=args.resume,
                           progress=not args.quiet)
    print(json.dumps(metrics, indent=2))
    print(f"wrote {out}/checkpoint.pt, metrics.json and export/ (materials.ply, light, maps)")
    return 0


def _relight(args: argparse.Namespace) -> int:
    import imageio.v3 as iio

    from distill3d.fields.metrics import image_ssim, psnr

    from .pipeline import load_splits
    from .relight import relight
    from .trainer import model_from_checkpoint

    run = pathlib.Path(args.run)
    info_path = run / "run.json"
    if not info_path.is_file():
        raise SystemExit(f"{run} is not a PRD run folder (no run.json): train one with `distill3d inverse train`")
    info = json.loads(info_path.read_text())
    model, config = model_from_checkpoint(run / "checkpoint.pt")
    _, test = load_splits(info["scene"], info["downsample"])
    if test is None:
        raise SystemExit(f"scene {info['scene']} has no test split to relight")
    env = args.env
    if env == "relight":
        if test.relight_environment is None:
            raise SystemExit(f"scene {info['scene']} has no second environment map: pass --env FILE")
        env = test.relight_environment
    images = relight(model, test, env, keep_radiance=args.keep_radiance, env_key=args.env_key,
                     backend=config.radiance.backend)
    out = pathlib.Path(args.out or run / "relit")
    out.mkdir(parents=True, exist_ok=True)
    for image, name in zip(images, test.names):
        iio.imwrite(out / f"{pathlib.Path(name).name}.png", (image.permute(1, 2, 0).numpy() * 255).round().astype("uint8"))
    if args.env == "relight" and test.relit_images is not None:
        targets = test.relit_images.permute(0, 3, 1, 2)
        scores = {"relit_psnr": sum(psnr(i, t) for i, t in zip(images, targets)) / len(images),
                  "relit_ssim": sum(image_ssim(i, t) for i, t in zip(images, targets)) / len(images)}
        print(json.dumps(scores, indent=2))
    print(f"wrote {len(images)} relit views to {out}")
    return 0


def add_parser(subparsers, name: str, help: str) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(name, help=help, description=(
        "Progressive radiance distillation: distil per-Gaussian albedo, roughness, metallic, normals and an "
        "environment light out of a Gaussian radiance field, keeping the radiance field where the physical "
        "model cannot explain the images; relight the result under new light."))
    sub = parser.add_subparsers(dest="inverse_command", metavar="COMMAND", required=True)

    train = sub.add_parser("train", help="train PRD on a scene folder (Blender transforms.json or COLMAP)")
    train.add_argument("scene", help="scene folder (e.g. distill3d/scenes/default)")
    train.add_argument("--out", help="run folder (default: runs/prd_<scene name>)")
    train.add_argument("--config", help="JSON file of a PRDConfig (stages, loss weights, learning rates, ...)")
    train.add_argument("--downsample", type=int, default=1, help="train at 1/F resolution (area-averaged images)")
    train.add_argument("--radiance-steps", type=int, help="steps of radiance pre-training (plain 3DGS)")
    train.add_argument("--stage-steps", type=int, nargs="+", metavar="N",
                       help="steps of each physical stage, in order (default: specular diffuse joint)")
    train.add_argument("--no-radiance-fallback", action="store_true",
                       help="fix the progress map to 1 (physical model only, GS-IR style baseline)")
    train.add_argument("--backend", default="auto", choices=("auto", "native", "torch", "gsplat"),
                       help="rasterizer backend")
    train.add_argument("--resume", action="store_true", help="continue from <out>/checkpoint.pt if present")
    train.add_argument("--quiet", action="store_true", help="no progress bars")
    train.set_defaults(func=_train)

    rel = sub.add_parser("relight", help="render a trained run's test views under a new environment map")
    rel.add_argument("run", help="run folder written by `inverse train`")
    rel.add_argument("--env", required=True,
                     help="equirectangular HDR map (.hdr, .exr, .npz, .npy; z-up, see distill3d.data.environment), "
                          "or 'relight' for the scene's own second light (then PSNR/SSIM vs its relit views are printed)")
    rel.add_argument("--env-key", help="array name inside an .npz holding several maps (e.g. 'relight')")
    rel.add_argument("--out", help="folder for the relit PNGs (default: <run>/relit)")
    rel.add_argument("--keep-radiance", action="store_true",
                     help="blend the (not relightable) radiance term back in where the progress map is below 1")
    rel.set_defaults(func=_relight)
    return parser
