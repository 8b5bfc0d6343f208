"""``distill3d inverse``: progressive radiance distillation from the command line.

    distill3d inverse train SCENE [--preset quick|benchmark|full] [--config FILE.json] [--out DIR]
                                  [--downsample F] [--radiance-steps N] [--stage-steps S D J]
                                  [--background white] [--no-radiance-fallback] [--resume] [--PRDConfig.field ...]
                                  [--nproc N] [--views-per-rank V] [--dist-timeout S]
    distill3d inverse relight RUN --env FILE|relight [--env-key KEY] [--out DIR] [--keep-radiance]

Every field of :class:`~distill3d.inverse.config.PRDConfig` is a flag (``--radiance.steps``,
``--model.init.albedo``, ``--masks.source``); ``stages`` are set with ``--stage-steps`` or ``--config``.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib

from distillcore.config_cli import (ViewDistOptions, add_config_arguments, add_config_file_arguments,
                                    add_dist_options, add_run_options, apply_run_options, config_from_args,
                                    save_resolved_config, to_dict)
from distillcore.serialization import to_json

# short flags kept from earlier releases
PRD_ALIASES = {"radiance.steps": "--radiance-steps", "radiance.backend": "--backend",
               "radiance.device": "--device", "radiance.background": "--background",
               "radiance.data.test_every": "--test-every", "radiance.data.images": "--images", "masks.source": "--masks"}


@dataclasses.dataclass
class InverseTrainCommand:
    """`distill3d inverse train` options outside the PRD config."""
    out: pathlib.Path | None = None  # run folder (default runs/prd_<scene name>)
    downsample: int = 1  # train at 1/F resolution (area-averaged images)
    stage_steps: tuple[int, ...] = ()  # steps of each physical stage, in order (empty: the config's)
    radiance_fallback: bool = True  # --no-radiance-fallback fixes the progress map to 1 (GS-IR style baseline)
    resume: bool = False  # continue from <out>/checkpoint.pt if present
    overwrite: bool = False  # replace a run already in <out> (else this fails)
    # folder of shared radiance pre-trainings, one per scene content + radiance settings, reused by every
    # run that matches (default: radiance_cache beside <out>)
    radiance_cache: pathlib.Path | None = None

    def validate(self) -> None:
        if self.downsample < 1:
            raise ValueError(f"--downsample must be >= 1, got {self.downsample}")


@dataclasses.dataclass
class RelightCommand:
    """`distill3d inverse relight` options."""
    env_key: str | None = None  # array name inside an .npz holding several maps (e.g. 'relight')
    out: pathlib.Path | None = None  # folder for the relit PNGs (default: <run>/relit)
    keep_radiance: bool = False  # blend the (not relightable) radiance term back in where the progress map is below 1
    background: str | None = None  # colour under transparent pixels (scene, white, black, R,G,B; None: the run's)


def resolve_train_configs(args):
    """The PRD config and the command options of parsed ``args`` (defaults < --config < --preset < flags)."""
    from .config import PRDConfig

    command = config_from_args(InverseTrainCommand, args)
    config = config_from_args(PRDConfig, args)
    if command.stage_steps:
        if len(command.stage_steps) != len(config.stages):
            raise ValueError(f"--stage-steps needs {len(config.stages)} values "
                             f"({', '.join(s.name for s in config.stages)}), got {len(command.stage_steps)}")
        for stage, steps in zip(config.stages, command.stage_steps):
            stage.steps = steps
    if not command.radiance_fallback:
        config.model.progress = "one"
    config.validate()
    return config, command


def _train(args: argparse.Namespace) -> int:
    from distillcore.dist import RankFailedError, is_main, report_rank_failure

    from .pipeline import train_prd

    run = apply_run_options(args)
    config, command = resolve_train_configs(args)
    ranks = config_from_args(ViewDistOptions, args)
    out = pathlib.Path(command.out or f"runs/prd_{pathlib.Path(args.scene).name}")
    try:
        _, metrics = train_prd(args.scene, config, out, downsample=command.downsample, resume=command.resume,
                               progress=run.progress, overwrite=command.overwrite,
                               radiance_cache=command.radiance_cache, nproc=ranks.nproc,
                               views_per_rank=ranks.views_per_rank, dist_timeout=ranks.dist_timeout)
    except RankFailedError as err:
        return report_rank_failure("distill3d inverse train", err)
    if not is_main():  # the other ranks of a torchrun job: rank 0 reports
        return 0
    saved = {k: v for k, v in to_dict(command).items() if k not in ("out", "resume", "overwrite", "stage_steps")}
    save_resolved_config({**saved, **to_dict(config)}, out)
    print(to_json(metrics))
    print(f"wrote {out}/checkpoint.pt, metrics.json, config.json and export/ (materials.ply, light, maps)")
    return 0


def _relight(args: argparse.Namespace) -> int:
    import imageio.v3 as iio

    from distill3d.fields.config import SceneDataConfig
    from distill3d.fields.metrics import image_ssim, psnr

    from .pipeline import load_splits
    from .relight import relight
    from .trainer import model_from_checkpoint

    apply_run_options(args)
    cfg = config_from_args(RelightCommand, args)
    run = pathlib.Path(args.run)
    info_path = run / "run.json"
    if not info_path.is_file():
        raise ValueError(f"{run} is not a PRD run folder (no run.json): train one with `distill3d inverse train`")
    info = json.loads(info_path.read_text())
    model, config = model_from_checkpoint(run / "checkpoint.pt")
    background = cfg.background or config.radiance.background
    _, test = load_splits(info["scene"], info["downsample"], SceneDataConfig(**info.get("data", {})), background)
    if test is None:
        raise ValueError(f"scene {info['scene']} has no test split to relight")
    env = args.env
    if env == "relight":
        if test.relight_environment is None:
            raise ValueError(f"scene {info['scene']} has no second environment map: pass --env FILE")
        env = test.relight_environment
    images = relight(model, test, env, keep_radiance=cfg.keep_radiance, env_key=cfg.env_key,
                     backend=config.radiance.backend)
    out = pathlib.Path(cfg.out or run / "relit")
    out.mkdir(parents=True, exist_ok=True)
    for image, name in zip(images, test.names):
        iio.imwrite(out / f"{pathlib.Path(name).name}.png", (image.permute(1, 2, 0).numpy() * 255).round().astype("uint8"))
    if args.env == "relight" and test.relit_images is not None:
        targets = test.relit_images.permute(0, 3, 1, 2)
        scores = {"relit_psnr": sum(psnr(i, t) for i, t in zip(images, targets)) / len(images),
                  "relit_ssim": sum(image_ssim(i, t) for i, t in zip(images, targets)) / len(images)}
        print(to_json(scores))
    print(f"wrote {len(images)} relit views to {out}")
    return 0


def add_parser(subparsers, name: str, help: str) -> argparse.ArgumentParser:
    from .config import PRD_PRESETS, PRDConfig

    parser = subparsers.add_parser(name, help=help, description=(
        "Progressive radiance distillation: distil per-Gaussian albedo, roughness, metallic, normals and an "
        "environment light out of a Gaussian radiance field, keeping the radiance field where the physical "
        "model cannot explain the images; relight the result under new light."))
    sub = parser.add_subparsers(dest="inverse_command", metavar="COMMAND", required=True)

    train = sub.add_parser("train", help="train PRD on a scene folder (Blender transforms.json or COLMAP)",
                           description="Train PRD; writes OUT/checkpoint.pt, metrics.json, run.json, config.json "
                                       "(the resolved config: pass it back with --config) and export/.")
    train.add_argument("scene", help="scene folder (e.g. distill3d/scenes/default)")
    add_config_file_arguments(train, PRD_PRESETS)
    add_config_arguments(train, InverseTrainCommand, group_title="command")
    add_config_arguments(train, PRDConfig, group_title="PRD config (PRDConfig; stages via --stage-steps or --config)",
                         aliases=PRD_ALIASES)
    add_dist_options(train, ViewDistOptions)  # --nproc, --dist-timeout, --views-per-rank
    add_run_options(train)
    train.set_defaults(func=_train)

    rel = sub.add_parser("relight", help="render a trained run's test views under a new environment map")
    rel.add_argument("run", help="run folder written by `inverse train`")
    rel.add_argument("--env", required=True,
                     help="equirectangular HDR map (.hdr, .exr, .npz, .npy; z-up, see distill3d.data.environment), "
                          "or 'relight' for the scene's own second light (then PSNR/SSIM vs its relit views are printed)")
    add_config_file_arguments(rel)
    add_config_arguments(rel, RelightCommand, group_title="relight config (RelightCommand)")
    add_run_options(rel)
    rel.set_defaults(func=_relight)
    return parser
