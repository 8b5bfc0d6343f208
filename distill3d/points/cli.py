"""`distill3d points`: simulate LiDAR scenes, train detectors, distill them, evaluate them.

    distill3d points simulate --out data/sim --train 160 --val 40
    distill3d points train --data data/sim --model pillars --width 1.0 --out runs/teacher.pt
    distill3d points distill --data data/sim --teacher runs/teacher.pt --method pointdistiller --width 0.5 --out runs/student.pt
    distill3d points eval --data data/sim --split val --checkpoint runs/student.pt

``--data`` is any KITTI object-detection folder (``training/velodyne``, ``label_2``, ``calib``,
``ImageSets/<split>.txt``): the simulator writes that layout, and a real KITTI download works the
same way with ``--classes Car Pedestrian Cyclist``.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from distill3d.points.distill import METHODS, DistillConfig, PointDistillerConfig
from distill3d.points.kitti import KittiDataset, write_kitti_dataset
from distill3d.points.simulate import SimulationConfig, simulate_dataset
from distill3d.points.train import FAMILIES, TrainConfig, build_detector, evaluate_detector, load_checkpoint, train_detector

SIM = SimulationConfig()


def _common_data(p: argparse.ArgumentParser, split: str) -> None:
    p.add_argument("--data", type=Path, required=True, help="KITTI-layout folder (written by `simulate`, or real KITTI)")
    p.add_argument("--split", default=split, help=f"ImageSets/<split>.txt to use (default {split})")
    p.add_argument("--classes", nargs="+", default=list(SIM.class_names),
                   help=f"label types to detect, in class-index order (default: the simulator's {' '.join(SIM.class_names)})")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")


def _common_train(p: argparse.ArgumentParser) -> None:
    p.add_argument("--width", type=float, default=1.0, help="channel width multiplier (0.5 ~ 4x, 0.25 ~ 16x fewer parameters)")
    p.add_argument("--steps", type=int, default=TrainConfig.steps, help="optimizer steps")
    p.add_argument("--batch-size", type=int, default=TrainConfig.batch_size, help="scans per step")
    p.add_argument("--lr", type=float, default=TrainConfig.lr, help="peak learning rate (one-cycle schedule)")
    p.add_argument("--seed", type=int, default=0, help="random seed (sampling, augmentation, initialisation)")
    p.add_argument("--out", type=Path, required=True, help="checkpoint path; an unfinished run there is resumed")


def _load(args) -> list:
    if args.threads:
        torch.set_num_threads(args.threads)
    return KittiDataset(args.data, tuple(args.classes), split=args.split).scans()


def _thresholds(classes: list[str], given: list[float] | None) -> tuple[float, ...]:
    if given:
        if len(given) != len(classes):
            raise SystemExit(f"--iou needs one threshold per class ({len(classes)}), got {len(given)}")
        return tuple(given)
    sim = {c.name: c.iou_threshold for c in SIM.classes}
    # KITTI's official thresholds for its own classes, the simulator's for ours, else 0.5
    kitti = {"Car": 0.7, "Van": 0.7, "Truck": 0.7, "Pedestrian": 0.5, "Cyclist": 0.5}
    return tuple(sim.get(c, kitti.get(c, 0.5)) for c in classes)


def cmd_simulate(args) -> int:
    for split, count, seed in (("train", args.train, args.seed), ("val", args.val, args.seed + 1)):
        if count <= 0:
            continue
        scans = simulate_dataset(SIM, count, seed, progress=True)
        for s in scans:
            s.frame_id = f"{split}_{s.frame_id}"
        write_kitti_dataset(args.out, scans, SIM.class_names, split=split)
        print(f"wrote {count} {split} scans to {args.out}")
    return 0


def _train_config(args) -> TrainConfig:
    return TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed)


def cmd_train(args) -> int:
    scans = _load(args)
    torch.manual_seed(args.seed)
    model = build_detector(args.model, len(args.classes), args.width)
    meta = {"class_names": tuple(args.classes), "iou_thresholds": _thresholds(args.classes, None)}
    train_detector(model, scans, _train_config(args), args.out, meta=meta)
    print(f"saved {args.out}")
    return 0


def cmd_distill(args) -> int:
    scans = _load(args)
    teacher, state = load_checkpoint(args.teacher)
    if tuple(state["meta"].get("class_names", ())) != tuple(args.classes):
        raise SystemExit(f"the teacher was trained on classes {state['meta'].get('class_names')}, not {tuple(args.classes)}")
    torch.manual_seed(args.seed)
    student = build_detector(state["family"], len(args.classes), args.width)
    distill = DistillConfig(method=args.method, pointdistiller=PointDistillerConfig(
        num_important=args.num_important, neighbours=args.neighbours, temperature=args.temperature, weight=args.kd_weight),
        fitnet_weight=args.kd_weight, kd_weight=args.kd_weight)
    meta = dict(state["meta"], teacher=str(args.teacher))
    if args.method == "none":
        train_detector(student, scans, _train_config(args), args.out, meta=meta)
    else:
        train_detector(student, scans, _train_config(args), args.out, meta=meta, teacher=teacher, distill=distill)
    print(f"saved {args.out}")
    return 0


def cmd_eval(args) -> int:
    scans = _load(args)
    model, state = load_checkpoint(args.checkpoint)
    results = evaluate_detector(model, scans, tuple(args.classes), _thresholds(args.classes, args.iou))
    for key, value in results.items():
        print(f"{key:28s} {value:6.2f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


def add_parser(subparsers, name: str, help: str) -> None:
    group = subparsers.add_parser(name, help=help, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = group.add_subparsers(dest="points_command", metavar="COMMAND")

    p = sub.add_parser("simulate", help="simulate LiDAR scenes and write them in KITTI layout")
    p.add_argument("--out", type=Path, required=True, help="output folder (KITTI layout)")
    p.add_argument("--train", type=int, default=160, help="training scans (split 'train')")
    p.add_argument("--val", type=int, default=40, help="validation scans (split 'val')")
    p.add_argument("--seed", type=int, default=0, help="random seed (val uses seed + 1)")
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("train", help="train a detector (a teacher, or a student without KD)")
    _common_data(p, "train")
    p.add_argument("--model", choices=FAMILIES, default="pillars", help="pillars: PointPillars-style; point: set-abstraction point detector")
    _common_train(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("distill", help="train a narrower student of the teacher's family with knowledge distillation")
    _common_data(p, "train")
    p.add_argument("--teacher", type=Path, required=True, help="teacher checkpoint from `train`")
    p.add_argument("--method", choices=METHODS, default="pointdistiller",
                   help="pointdistiller (local graph + reweighting), fitnet (feature MSE), kd (response KD), none")
    p.add_argument("--num-important", type=int, default=PointDistillerConfig.num_important, help="PointDistiller N: local structures per scan")
    p.add_argument("--neighbours", type=int, default=PointDistillerConfig.neighbours, help="PointDistiller k: kNN graph size")
    p.add_argument("--temperature", type=float, default=PointDistillerConfig.temperature, help="PointDistiller reweighting temperature T")
    p.add_argument("--kd-weight", type=float, default=1.0, help="weight of the distillation loss")
    _common_train(p)
    p.set_defaults(width=0.5)
    p.set_defaults(func=cmd_distill)

    p = sub.add_parser("eval", help="KITTI-style AP (R40) in BEV and 3D per class and difficulty")
    _common_data(p, "val")
    p.add_argument("--checkpoint", type=Path, required=True, help="detector checkpoint")
    p.add_argument("--iou", type=float, nargs="+", default=None, help="IoU threshold per class (default: KITTI's / the simulator's)")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    p.set_defaults(func=cmd_eval)

    group.set_defaults(func=lambda args: group.print_help() or 2)


__all__ = ["add_parser"]
