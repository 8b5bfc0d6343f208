"""`distill3d points`: simulate LiDAR scenes, train detectors, distill them, evaluate them.

    distill3d points simulate --out data/sim --train 160 --val 40
    distill3d points train --data data/sim --model pillars --width 1.0 --out runs/teacher.pt
    distill3d points distill --data data/sim --teacher runs/teacher.pt --method pointdistiller --width 0.5 --out runs/student.pt
    distill3d points eval --data data/sim --split val --checkpoint runs/student.pt

``--nproc N`` trains (or distils) data-parallel in N local processes (gloo on the CPU); under torchrun
each process joins the job instead: ``torchrun --nproc-per-node 4 -m distill3d points train ...``.

``--data`` is any KITTI object-detection folder (``training/velodyne``, ``label_2``, ``calib``,
``ImageSets/<split>.txt``): the simulator writes that layout, and a real KITTI download works the
same way with ``--classes Car Pedestrian Cyclist``.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import os
from dataclasses import asdict
from pathlib import Path
from typing import Literal

import torch

from distillcore import dist
from distillcore.checks import check_range
from distillcore.config_cli import (DistOptions, add_config_arguments, add_config_file_arguments, add_dist_options,
                                    add_run_options, apply_run_options, config_from_args, save_resolved_config, to_dict)
from distillcore.runs import (DATASET_HASH, RunDirectory, RunError, check_output_is_not_input, check_writable,
                              run_fingerprint)
from distillcore.serialization import write_json_atomic

from distill3d.points.distill import DistillConfig
from distill3d.points.kitti import LAYOUT_FOLDERS, KittiDataset, write_kitti_dataset
from distill3d.points.simulate import SimulationConfig, simulate_dataset
from distill3d.points.train import TrainConfig, build_detector, evaluate_detector, load_checkpoint, train_detector

SIM = SimulationConfig()


@dataclasses.dataclass
class SimulateCommand:
    """`distill3d points simulate` options."""
    train: int = 160  # training scans (split 'train')
    val: int = 40  # validation scans (split 'val')
    seed: int = 0  # random seed (val uses seed + 1)
    overwrite: bool = False  # replace a data set already in OUT (its training/, testing/, ImageSets/; else this fails)
    sim: SimulationConfig = dataclasses.field(default_factory=SimulationConfig)  # scene layout and LiDAR

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        check_range(self.train, "train", 0, integer=True)  # 0 skips a split; a negative count means nothing
        check_range(self.val, "val", 0, integer=True)
        if self.train + self.val == 0:
            raise ValueError("train and val are both 0: nothing to simulate")


@dataclasses.dataclass
class DataOptions:
    """The KITTI-layout data every points command reads."""
    split: str = "train"  # ImageSets/<split>.txt to use
    # label types to detect, in class-index order (default: the simulator's)
    classes: tuple[str, ...] = SIM.class_names
    allow_missing_calib: bool = False  # read frames without calib/label_2 files with the default calibration and no objects


@dataclasses.dataclass
class PointsTrainCommand(DataOptions):
    """`distill3d points train` options outside the training config."""
    model: Literal["pillars", "point"] = "pillars"  # pillars: PointPillars-style; point: set-abstraction point detector
    width: float = 1.0  # channel width multiplier (0.5 ~ 4x, 0.25 ~ 16x fewer parameters)
    resume: bool = False  # continue the unfinished run in OUT (same data and settings)
    overwrite: bool = False  # replace a run already in OUT (else this fails)


@dataclasses.dataclass
class PointsDistillCommand(DataOptions):
    """`distill3d points distill` options outside the training and distillation configs."""
    width: float = 0.5  # the student's channel width multiplier (the teacher's family)
    resume: bool = False  # continue the unfinished run in OUT (same data and settings)
    overwrite: bool = False  # replace a run already in OUT (else this fails)


@dataclasses.dataclass
class PointsEvalCommand(DataOptions):
    """`distill3d points eval` options."""
    split: str = "val"  # ImageSets/<split>.txt to use
    iou: tuple[float, ...] = ()  # IoU threshold per class (empty: KITTI's / the simulator's)
    json: Path | None = None  # also write the results here
    # simulated: range / occlusion bins of simulated scans; kitti: the official definition for real KITTI
    # labels (2D box height, occlusion, truncation; DontCare regions and Van / Person_sitting ignored)
    difficulty: Literal["simulated", "kitti"] = "simulated"


def _resolve(args, command_cls) -> None:
    """Resolves the command's configs (defaults < --config < --preset < flags) onto ``args``:
    the command's fields as attributes, ``args.train_config`` / ``args.distill_config`` where used."""
    args.run_options = apply_run_options(args)
    command = config_from_args(command_cls, args)
    for f in dataclasses.fields(command):
        setattr(args, f.name, getattr(command, f.name))
    args.classes = list(command.classes)
    args.command_config = command
    if command_cls in (PointsTrainCommand, PointsDistillCommand):
        args.dist_options = config_from_args(DistOptions, args)
        args.dist_options.validate()
        args.nproc = args.dist_options.nproc
        args.train_config = config_from_args(TrainConfig, args)
        args.steps, args.seed = args.train_config.steps, args.train_config.seed
    if command_cls is PointsDistillCommand:
        args.distill_config = config_from_args(DistillConfig, args)
        args.method = args.distill_config.method


def _save_config(args) -> None:
    """``config.json`` beside the checkpoint: the resolved configs of this run (pass it back with --config)."""
    saved = {k: v for k, v in to_dict(args.command_config).items() if k not in ("resume", "overwrite")}
    saved.update(to_dict(args.train_config))
    if getattr(args, "distill_config", None) is not None:
        saved.update(to_dict(args.distill_config))
    save_resolved_config(saved, Path(args.out).parent, name=Path(args.out).stem + ".config.json")


def _dataset(args) -> KittiDataset:
    return KittiDataset(args.data, tuple(args.classes), split=args.split,
                        allow_missing_calib=getattr(args, "allow_missing_calib", False))


def _check_classes_labelled(dataset: KittiDataset) -> None:
    """Every class of ``--classes`` must label at least one object of the split: a class that never
    occurs trains nothing and scores NaN (ValueError: exit 2)."""
    counts = dataset.label_counts()
    missing = [c for c in dataset.class_names if not counts[c]]
    if missing:
        present = ", ".join(f"{name} ({n})" for name, n in sorted(counts.items())) or "none"
        raise ValueError(f"--classes {' '.join(missing)}: no object of split {dataset.split!r} in {dataset.root} "
                         f"is labelled {' or '.join(missing)} (label types there: {present})")


def _check_not_overwriting_inputs(args, out: Path, what: str, *inputs: Path | None) -> None:
    """``out`` (a file this command writes) is none of its input files, ``--config`` included."""
    for source in (*inputs, getattr(args, "config", None)):
        if source is not None:
            check_output_is_not_input(out, source, what)


def _check_ranks(args) -> None:
    """``--nproc`` against the data and the batch, before any process starts (ValueError: exit 2)."""
    ranks = int(os.environ["WORLD_SIZE"]) if dist.in_torchrun_job() else args.nproc
    count = len(_dataset(args))
    if ranks > count:
        raise ValueError(f"--nproc {ranks} is more than the {count} training scans of split {args.split!r}")
    batch = min(args.train_config.batch_size, count)
    if batch % ranks:
        raise ValueError(f"--batch-size {batch} does not split evenly over --nproc {ranks} processes")


@dataclasses.dataclass
class _RankJob:
    """What every rank needs to train (picklable: spawned ranks load the data themselves)."""
    data: Path
    classes: tuple[str, ...]
    split: str
    allow_missing_calib: bool
    model: str
    width: float
    seed: int
    train_config: TrainConfig
    out: Path
    meta: dict
    progress: bool
    teacher: Path | None = None
    distill_config: DistillConfig | None = None


def _run_rank(job: _RankJob) -> None:
    """The training of one rank (all of it in a single process)."""
    scans = KittiDataset(job.data, job.classes, split=job.split, allow_missing_calib=job.allow_missing_calib).scans()
    teacher = load_checkpoint(job.teacher)[0] if job.teacher is not None else None
    torch.manual_seed(job.seed)  # the same initial weights on every rank
    model = build_detector(job.model, len(job.classes), job.width)
    distill = job.distill_config if teacher is not None else None
    train_detector(model, scans, job.train_config, job.out, meta=job.meta, teacher=teacher, distill=distill,
                   progress=job.progress)


def _launch(args, job: _RankJob) -> None:
    """Runs ``job`` on ``--nproc`` local ranks, or as this process's rank of a torchrun job."""
    dist.launch(_run_rank, args.nproc, job, device="cpu", timeout_s=args.dist_options.dist_timeout)


def _thresholds(classes: list[str], given: list[float] | None) -> tuple[float, ...]:
    if given:
        from distill3d.points.metrics import check_iou_thresholds

        return check_iou_thresholds(given, classes)
    sim = {c.name: c.iou_threshold for c in SIM.classes}
    # KITTI's official thresholds for its own classes, the simulator's for ours, else 0.5
    kitti = {"Car": 0.7, "Van": 0.7, "Truck": 0.7, "Pedestrian": 0.5, "Cyclist": 0.5}
    return tuple(sim.get(c, kitti.get(c, 0.5)) for c in classes)


def cmd_simulate(args) -> int:
    run = apply_run_options(args)
    cfg = config_from_args(SimulateCommand, args)
    # --out writable and locked, and a data set already there (its layout folders) refused, or removed
    # whole with --overwrite so no scan of the old set outlives it; other files of the folder are kept
    with RunDirectory(args.out, fingerprint={}, overwrite=cfg.overwrite, markers=LAYOUT_FOLDERS, record_info=False):
        for split, count, seed in (("train", cfg.train, cfg.seed), ("val", cfg.val, cfg.seed + 1)):
            if count <= 0:
                continue
            scans = simulate_dataset(cfg.sim, count, seed, progress=run.progress)
            for s in scans:
                s.frame_id = f"{split}_{s.frame_id}"
            write_kitti_dataset(args.out, scans, cfg.sim.class_names, split=split)
            print(f"wrote {count} {split} scans to {args.out}")
    return 0


def _train_config(args) -> TrainConfig:
    return args.train_config


def _guard(args, **inputs) -> RunDirectory:
    """The lock, writability check and overwrite / resume rules of ``--out`` (distillcore.runs), with the
    fingerprint of the data, the settings and ``inputs``."""
    fingerprint = run_fingerprint(scene=args.data, hash_config=DATASET_HASH, config=asdict(_train_config(args)),
                                  split=args.split, classes=list(args.classes), width=args.width, **inputs)
    return RunDirectory.for_file(args.out, fingerprint=fingerprint, resume=args.resume, overwrite=args.overwrite)


def _already_complete(run: RunDirectory, args) -> bool:
    if run.resumed and (run.previous or {}).get("status") == "complete":
        print(f"{args.out}: already complete at step {args.steps} (nothing to do)")
        return True
    return False


def _job(args, meta: dict, **extra) -> _RankJob:
    return _RankJob(args.data, tuple(args.classes), args.split, getattr(args, "allow_missing_calib", False),
                    extra.pop("model"), args.width, args.seed, _train_config(args), args.out, meta,
                    args.run_options.progress, **extra)


def _secondary_torchrun_rank(args) -> bool:
    """Joins a torchrun job if this process is one; True on its ranks other than 0 (they train without
    taking the output's lock, which rank 0 holds)."""
    if not dist.in_torchrun_job():
        return False
    return not dist.init_from_env("cpu", args.dist_options.dist_timeout).is_main


def cmd_train(args) -> int:
    _resolve(args, PointsTrainCommand)
    _check_not_overwriting_inputs(args, args.out, "--out")
    _check_classes_labelled(_dataset(args))
    _check_ranks(args)
    meta = {"class_names": tuple(args.classes), "iou_thresholds": _thresholds(args.classes, None)}
    if _secondary_torchrun_rank(args):
        _launch(args, _job(args, meta, model=args.model))
        return 0
    with _guard(args, command="train", model=args.model) as run:
        if _already_complete(run, args):
            return 0
        _launch(args, _job(args, dict(meta, fingerprint=run.fingerprint), model=args.model))
        run.complete(step=args.steps)
    _save_config(args)
    print(f"saved {args.out}")
    return 0


def cmd_distill(args) -> int:
    _resolve(args, PointsDistillCommand)
    _check_not_overwriting_inputs(args, args.out, "--out", args.teacher)
    _check_classes_labelled(_dataset(args))
    _check_ranks(args)
    if _secondary_torchrun_rank(args):
        _, state = load_checkpoint(args.teacher)
        _launch(args, _distill_job(args, state, dict(state["meta"], teacher=str(args.teacher))))
        return 0
    teacher_hash = hashlib.sha256(args.teacher.read_bytes()).hexdigest() if args.teacher.is_file() else None
    with _guard(args, command="distill", teacher=teacher_hash, distill=asdict(args.distill_config)) as run:
        if _already_complete(run, args):
            return 0
        return _distill(args, run)


def _distill_job(args, state: dict, meta: dict) -> _RankJob:
    if tuple(state["meta"].get("class_names", ())) != tuple(args.classes):
        taught = tuple(state["meta"].get("class_names", ()))
        raise ValueError(f"the teacher {args.teacher} was trained on classes {taught}, not --classes "
                         f"{tuple(args.classes)}: distill with the teacher's classes")
    # method "none" trains the student alone (the teacher only fixes its family)
    teacher = None if args.method == "none" else Path(args.teacher)
    return _job(args, meta, model=state["family"], teacher=teacher, distill_config=args.distill_config)


def _distill(args, run: RunDirectory) -> int:
    _, state = load_checkpoint(args.teacher)
    _launch(args, _distill_job(args, state, dict(state["meta"], teacher=str(args.teacher), fingerprint=run.fingerprint)))
    run.complete(step=args.steps)
    _save_config(args)
    print(f"saved {args.out}")
    return 0


def cmd_eval(args) -> int:
    _resolve(args, PointsEvalCommand)
    thresholds = _thresholds(args.classes, list(args.iou) or None)  # bad thresholds fail before any loading
    if args.json is not None:  # a results file that cannot be written fails now, not after the evaluation
        _check_not_overwriting_inputs(args, args.json, "--json", args.checkpoint)
        if args.json.is_dir():
            raise RunError(f"--json {args.json} is a folder: give the file to write")
        check_writable(args.json.parent, "--json")
    dataset = _dataset(args)
    scans = dataset.scans()  # first: a missing or malformed file is named before the labels are counted
    _check_classes_labelled(dataset)
    model, state = load_checkpoint(args.checkpoint)
    taught = tuple(state["meta"].get("class_names", ()))
    if taught and taught != tuple(args.classes):  # the heads' class order is the checkpoint's
        raise ValueError(f"the checkpoint {args.checkpoint} was trained on classes {taught}, not --classes "
                         f"{tuple(args.classes)}: evaluate with the checkpoint's classes")
    if args.difficulty == "kitti":
        from distill3d.points.kitti import with_kitti_annotations
        from distill3d.points.metrics import KittiDifficultyConfig, evaluate
        from distill3d.points.train import predict

        frames = with_kitti_annotations(dataset, predict(model, scans))
        results = evaluate(frames, tuple(args.classes), thresholds, KittiDifficultyConfig())
    else:
        results = evaluate_detector(model, scans, tuple(args.classes), thresholds)
    for key, value in results.items():
        print(f"{key:28s} {value:6.2f}")
    if args.json:
        write_json_atomic(args.json, results, indent=1)  # a NaN / inf score is written as null
    return 0


def add_parser(subparsers, name: str, help: str) -> None:
    group = subparsers.add_parser(name, help=help, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = group.add_subparsers(dest="points_command", metavar="COMMAND")

    def data_argument(p):
        p.add_argument("--data", type=Path, required=True,
                       help="KITTI-layout folder (written by `simulate`, or real KITTI)")

    p = sub.add_parser("simulate", help="simulate LiDAR scenes and write them in KITTI layout")
    p.add_argument("--out", type=Path, required=True,
                   help="output folder (KITTI layout; a data set already there is replaced only with --overwrite)")
    add_config_file_arguments(p)
    add_config_arguments(p, SimulateCommand, group_title="simulation config (SimulateCommand)")
    add_run_options(p)
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("train", help="train a detector (a teacher, or a student without KD)",
                       description="Train a detector; writes the checkpoint OUT and OUT's stem + .config.json.")
    data_argument(p)
    p.add_argument("--out", type=Path, required=True, help="checkpoint path to write")
    add_config_file_arguments(p)
    add_config_arguments(p, PointsTrainCommand, group_title="command")
    add_config_arguments(p, TrainConfig, group_title="training config (TrainConfig)")
    add_run_options(p)
    add_dist_options(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("distill", help="train a narrower student of the teacher's family with knowledge distillation",
                       description="Distill a teacher into a student; writes the checkpoint OUT and OUT's stem + "
                                   ".config.json. Methods: pointdistiller (local graph + reweighting), fitnet "
                                   "(feature MSE), kd (response KD), none.")
    data_argument(p)
    p.add_argument("--teacher", type=Path, required=True, help="teacher checkpoint from `train`")
    p.add_argument("--out", type=Path, required=True, help="checkpoint path to write")
    add_config_file_arguments(p)
    add_config_arguments(p, PointsDistillCommand, group_title="command")
    add_config_arguments(p, TrainConfig, group_title="training config (TrainConfig)")
    add_config_arguments(p, DistillConfig, group_title="distillation config (DistillConfig)",
                         aliases={"pointdistiller.num_important": "--num-important",
                                  "pointdistiller.neighbours": "--neighbours",
                                  "pointdistiller.temperature": "--temperature"})
    add_run_options(p)
    add_dist_options(p)
    p.set_defaults(func=cmd_distill)

    p = sub.add_parser("eval", help="KITTI-style AP (R40) in BEV and 3D per class and difficulty")
    data_argument(p)
    p.add_argument("--checkpoint", type=Path, required=True, help="detector checkpoint")
    add_config_file_arguments(p)
    add_config_arguments(p, PointsEvalCommand, group_title="command")
    add_run_options(p)
    p.set_defaults(func=cmd_eval)

    from distill3d.viewer.cli import add_points_view_parser  # the viewer owns the command; viser loads only when it runs

    add_points_view_parser(sub)

    group.set_defaults(func=lambda args: group.print_help() or 2)


__all__ = ["add_parser"]
