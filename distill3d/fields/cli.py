"""`distill3d train SCENE --teacher NAME`: train a Feature 3DGS field (or plain 3DGS with --plain).

Every flag is generated from :class:`~distill3d.fields.config.TrainConfig` (``--steps``,
``--loss.feature-weight``, ``--densify.refine-every``, ...) and :class:`TrainCommand`; ``--config``
takes a JSON config (a run's ``config.json``), ``--preset quick|benchmark|full`` a whole schedule.
"""
from __future__ import annotations

import dataclasses
import pathlib

from distillcore.config_cli import (ViewDistOptions, add_config_arguments, add_config_file_arguments,
                                    add_dist_options, add_run_options, apply_run_options, config_from_args,
                                    save_resolved_config, to_dict)
from distillcore.serialization import to_json

from .config import TRAIN_PRESETS, TrainConfig

# short flags kept from earlier releases (and for the most used fields)
TRAIN_ALIASES = {"loss.feature_weight": "--feature-weight", "loss.lambda_dssim": "--lambda-dssim",
                 "loss.feature_grad_to_geometry": "--feature-grad-to-geometry", "init.method": "--init",
                 "init.num_points": "--points", "densify.enabled": "--densify", "data.test_every": "--test-every",
                 "data.images": "--images"}


@dataclasses.dataclass
class TrainCommand:
    """`distill3d train` options outside the training config."""
    out: pathlib.Path | None = None  # output folder (default outputs/SCENE/TEACHER, or outputs/SCENE/plain)
    plain: bool = False  # plain 3DGS: no teacher, RGB loss only
    resume: bool = False  # continue from OUT/checkpoint.pt if it exists
    overwrite: bool = False  # replace a run already in OUT (else it is kept and this fails)
    teacher_checkpoint: str | None = None  # weights for teachers that need yours (sam, clip)
    cache: pathlib.Path | None = None  # teacher feature cache folder (None: ~/.cache/distillkit/features)
    downsample: int = 1  # train and evaluate at 1/F resolution (area-averaged images; COLMAP images_F if present)
    decoder_dim: int | None = None  # shorthand for --decoder.enabled --decoder.low-dim N (the speed-up decoder)

    def validate(self) -> None:
        if self.downsample < 1:
            raise ValueError(f"--downsample must be >= 1, got {self.downsample}")
        if self.decoder_dim is not None and self.decoder_dim < 1:
            raise ValueError(f"--decoder-dim must be >= 1, got {self.decoder_dim}")


def resolve_configs(args) -> tuple[TrainConfig, TrainCommand]:
    """The training config and the command options of parsed ``args`` (defaults < --config < --preset < flags)."""
    command = config_from_args(TrainCommand, args)
    config = config_from_args(TrainConfig, args)
    if command.plain:
        config.loss.feature_weight = 0.0
    if command.decoder_dim is not None:
        config.decoder.enabled, config.decoder.low_dim = True, command.decoder_dim
    return config, command


def cmd_train(args) -> int:
    from distillcore.dist import RankFailedError, is_main, report_rank_failure

    from .pipeline import DEFAULT_CACHE, train_field

    run = apply_run_options(args)
    ranks = config_from_args(ViewDistOptions, args)
    config, command = resolve_configs(args)
    out = command.out or pathlib.Path("outputs") / pathlib.Path(args.scene).name / (
        "plain" if command.plain else config.teacher)
    kwargs = {"checkpoint": command.teacher_checkpoint} if command.teacher_checkpoint else {}
    try:
        trainer, metrics = train_field(args.scene, config, out, command.cache or DEFAULT_CACHE, resume=command.resume,
                                       progress=run.progress, plain=command.plain, downscale=command.downsample,
                                       overwrite=command.overwrite, nproc=ranks.nproc,
                                       dist_timeout=ranks.dist_timeout, views_per_rank=ranks.views_per_rank, **kwargs)
    except RankFailedError as err:
        return report_rank_failure("distill3d train", err)
    if not is_main():  # the other ranks of a torchrun job: rank 0 reports
        return 0
    saved = {k: v for k, v in to_dict(command).items() if k not in ("out", "resume", "overwrite")}
    save_resolved_config({**saved, **to_dict(config)}, out)
    print(to_json(metrics))
    checkpoint = trainer.checkpoint_path if trainer is not None else out / "checkpoint_dist" / "manifest.json"
    print(f"field: {out / 'point_cloud.ply'}  checkpoint: {checkpoint}  config: {out / 'config.json'}")
    return 0


def add_parser(subparsers, name: str, help: str) -> None:
    p = subparsers.add_parser(name, help=help, description=help + ". Writes OUT/point_cloud.ply (3DGS columns + "
                              "feat_*), OUT/checkpoint.pt, OUT/metrics.json and OUT/config.json (the resolved "
                              "config; pass it back with --config).")
    p.add_argument("scene", help="scene folder: Blender (transforms_*.json) or COLMAP (sparse/0)")
    add_config_file_arguments(p, TRAIN_PRESETS)
    add_config_arguments(p, TrainCommand, group_title="command")
    add_config_arguments(p, TrainConfig, group_title="training config (TrainConfig)", aliases=TRAIN_ALIASES)
    add_run_options(p)
    add_dist_options(p, ViewDistOptions)  # --nproc, --dist-timeout, --views-per-rank
    p.set_defaults(func=cmd_train)
