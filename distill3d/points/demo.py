"""Demo: simulate a few LiDAR scenes, train a small pillar teacher, distill a 4x student with
PointDistiller, and write a bird's-eye-view plot of a validation scan with both detectors' boxes."""
from __future__ import annotations

from pathlib import Path

import torch

from distill3d.points.boxes import bev_corners
from distill3d.points.distill import DistillConfig
from distill3d.points.kitti import KittiDataset, write_kitti_dataset
from distill3d.points.simulate import SimulationConfig, simulate_dataset
from distill3d.points.train import TrainConfig, build_detector, evaluate_detector, predict, train_detector

DEMO_TRAIN_SCANS, DEMO_VAL_SCANS, DEMO_STEPS = 48, 12, 120


def _plot(path: Path, scan, frames: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 6))
    ax.scatter(scan.points[:, 0], scan.points[:, 1], s=0.2, c=scan.points[:, 2], cmap="viridis")
    styles = {"ground truth": ("k", "-"), **{name: (c, "--") for name, c in zip(frames, ("tab:red", "tab:blue"))}}
    for name, (color, ls) in styles.items():
        boxes = torch.from_numpy(scan.boxes) if name == "ground truth" else torch.from_numpy(frames[name].pred_boxes)
        for k, corners in enumerate(bev_corners(boxes).numpy()):
            ax.plot(*corners[[0, 1, 2, 3, 0]].T, color=color, ls=ls, lw=1, label=name if k == 0 else None)
    ax.set_xlim(0, 25.6), ax.set_ylim(-12.8, 12.8), ax.set_aspect("equal"), ax.legend(loc="upper right", fontsize=7)
    ax.set_title("BEV: ground truth, teacher, PointDistiller student")
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def demo(out_dir: Path) -> dict:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    sim = SimulationConfig()
    for split, count, seed in (("train", DEMO_TRAIN_SCANS, 0), ("val", DEMO_VAL_SCANS, 1)):
        scans = simulate_dataset(sim, count, seed)
        for s in scans:
            s.frame_id = f"{split}_{s.frame_id}"
        write_kitti_dataset(out_dir / "kitti", scans, sim.class_names, split=split)
    train = KittiDataset(out_dir / "kitti", sim.class_names, split="train").scans()
    val = KittiDataset(out_dir / "kitti", sim.class_names, split="val").scans()
    thresholds = tuple(c.iou_threshold for c in sim.classes)
    meta = {"class_names": sim.class_names, "iou_thresholds": thresholds}
    cfg = TrainConfig(steps=DEMO_STEPS)
    teacher = train_detector(build_detector("pillars", 2, 1.0), train, cfg, out_dir / "teacher.pt", meta=meta, progress=False)
    student = train_detector(build_detector("pillars", 2, 0.5), train, cfg, out_dir / "student.pt", meta=meta,
                             teacher=teacher, distill=DistillConfig(method="pointdistiller"), progress=False)
    ap_t = evaluate_detector(teacher, val, sim.class_names, thresholds)
    ap_s = evaluate_detector(student, val, sim.class_names, thresholds)
    _plot(out_dir / "bev_detections.png", val[0], {"teacher": predict(teacher, val[:1])[0], "student": predict(student, val[:1])[0]})
    count = lambda m: sum(p.numel() for p in m.parameters())
    return {
        "teacher_params": count(teacher), "student_params": count(student),
        "teacher_bev_mAP_moderate": round(ap_t["mAP/bev/moderate"], 2), "student_bev_mAP_moderate": round(ap_s["mAP/bev/moderate"], 2),
        "teacher_3d_mAP_moderate": round(ap_t["mAP/3d/moderate"], 2), "student_3d_mAP_moderate": round(ap_s["mAP/3d/moderate"], 2),
        "plot": str(out_dir / "bev_detections.png"),
    }
