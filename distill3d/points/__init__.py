"""PointDistiller: structured knowledge distillation of point-cloud 3D detectors (Zhang et al., CVPR 2023).

- data: a LiDAR simulator over real meshes (:mod:`.simulate`, :mod:`.lidar`, :mod:`.meshes`), KITTI
  layout reader/writer (:mod:`.kitti`), augmentation (:mod:`.augment`);
- detectors: PointPillars-style (:mod:`.pillars`) and set-abstraction point detector
  (:mod:`.point_detector`), rotated boxes / NMS (:mod:`.boxes`, :mod:`.nms`);
- distillation: PointDistiller, FitNet, response KD (:mod:`.distill`, :mod:`.edgeconv`);
- evaluation: KITTI AP R40 in BEV and 3D (:mod:`.metrics`); training loop and checkpoints (:mod:`.train`);
  inference copies with BatchNorm folded (:mod:`.fusion`).
"""
from distill3d.points.boxes import bev_iou, iou_3d, points_in_boxes
from distill3d.points.distill import DistillConfig, PointDistillerConfig, PointDistillerLoss
from distill3d.points.fusion import fuse_for_inference
from distill3d.points.kitti import KittiDataset, write_kitti_dataset
from distill3d.points.metrics import DifficultyConfig, evaluate
from distill3d.points.nms import rotated_nms
from distill3d.points.scan import Scan
from distill3d.points.simulate import SimulationConfig, simulate_dataset
from distill3d.points.train import TrainConfig, build_detector, evaluate_detector, load_checkpoint, train_detector

__all__ = [
    "bev_iou", "iou_3d", "points_in_boxes", "rotated_nms", "Scan", "SimulationConfig", "simulate_dataset",
    "KittiDataset", "write_kitti_dataset", "DifficultyConfig", "evaluate", "DistillConfig", "PointDistillerConfig",
    "PointDistillerLoss", "TrainConfig", "build_detector", "train_detector", "evaluate_detector", "load_checkpoint",
    "fuse_for_inference",
]
