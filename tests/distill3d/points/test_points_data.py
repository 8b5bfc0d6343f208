import dataclasses

import numpy as np
import pytest
import torch

from distill3d.points.augment import AugmentConfig, GroundTruthDatabase, augment, flip_y, paste_objects, rotate_z, scale
from distill3d.points.boxes import points_in_boxes
from distill3d.points.kitti import KittiDataset, parse_label_lines, Calibration, write_kitti_dataset
from distill3d.points.lidar import LidarConfig
from distill3d.points.scan import Scan
from distill3d.points.simulate import SimulationConfig, sample_surface, simulate_dataset
from distill3d.points.meshes import normalized_mesh


@pytest.fixture(scope="module")
def scans():
    cfg = SimulationConfig(objects_per_scene=(4, 5), clutter_per_scene=(0, 0), lidar=LidarConfig(dropout=0.0))
    return cfg, simulate_dataset(cfg, 3, seed=7)


def test_mesh_normalisation_gives_exact_box():
    cfg = SimulationConfig()
    vertices, _, size = normalized_mesh(cfg.classes[0].mesh, 3.0)
    assert size[0] == pytest.approx(3.0)
    assert size[0] >= size[1]
    assert np.allclose(vertices.min(0), -size / 2) and np.allclose(vertices.max(0), size / 2)


def test_surface_samples_lie_on_triangles():
    vertices = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1.0]])
    triangles = np.array([[0, 1, 2]])  # only the z = 0 triangle
    pts = sample_surface(vertices, triangles, 200, np.random.default_rng(0))
    assert np.allclose(pts[:, 2], 0) and (pts[:, :2].sum(1) <= 1 + 1e-9).all() and (pts >= -1e-9).all()


def test_simulated_points_are_on_object_surfaces_inside_boxes(scans):
    cfg, data = scans
    for scan in data:
        scan.validate()
        assert len(scan.boxes) >= 3
        pts = torch.from_numpy(scan.points)
        inside = points_in_boxes(pts, torch.from_numpy(scan.boxes), margin=0.1)  # margin: range noise
        ground = scan.points[:, 2] < -cfg.lidar.mount_height + 0.1
        # every return is either ground or on a placed mesh, and mesh returns lie in their box
        off_ground = ~ground
        assert inside[torch.from_numpy(off_ground)].any(1).float().mean() > 0.98
        # each visible object got returns; hidden ones are marked occlusion 3 (unknown)
        counts = inside.sum(0).numpy()
        assert ((counts >= cfg.min_points_visible) | (scan.occlusion == 3)).all()
        assert set(scan.labels.tolist()) <= {0, 1}
        # boxes stand on the ground
        assert np.allclose(scan.boxes[:, 2] - scan.boxes[:, 5] / 2, -cfg.lidar.mount_height, atol=1e-4)
        # intensity in [0, 1] and distance within the sensor's range
        assert (scan.points[:, 3] >= 0).all() and (scan.points[:, 3] <= 1).all()
        assert (np.linalg.norm(scan.points[:, :3], axis=1) <= cfg.lidar.max_range + 0.2).all()


def test_simulation_is_reproducible(scans):
    cfg, data = scans
    again = simulate_dataset(cfg, 1, seed=7)[0]
    assert np.array_equal(again.points, data[0].points) and np.array_equal(again.boxes, data[0].boxes)


def test_kitti_round_trip(tmp_path, scans):
    cfg, data = scans
    write_kitti_dataset(tmp_path, data, cfg.class_names, split="val")
    assert (tmp_path / "training" / "velodyne" / "000000.bin").stat().st_size == data[0].points.nbytes
    read = KittiDataset(tmp_path, cfg.class_names, split="val").scans()
    assert [s.frame_id for s in read] == [s.frame_id for s in data]
    for a, b in zip(data, read):
        assert np.array_equal(a.points, b.points)
        assert np.allclose(a.boxes[:, :6], b.boxes[:, :6], atol=1e-3)  # label_2 stores 4 decimals
        assert np.allclose(np.cos(a.boxes[:, 6] - b.boxes[:, 6]), 1, atol=1e-6)
        assert np.array_equal(a.labels, b.labels) and np.array_equal(a.occlusion, b.occlusion)


def test_kitti_label_conventions():
    # A real KITTI line: a car 10 m ahead (camera z), bottom at camera y = 1.65, facing the camera's x axis.
    line = "Car 0.00 0 -1.57 600 150 700 250 1.50 1.60 3.90 0.00 1.65 10.00 0.0\nDontCare -1 -1 -10 0 0 1 1 -1 -1 -1 -1000 -1000 -1000 -10\n"
    boxes, labels, occ, scores = parse_label_lines(line, ("Pedestrian", "Car"), Calibration())
    assert labels.tolist() == [1] and scores.tolist() == [1.0]
    # LiDAR frame: x forward = camera z, z up = -camera y, centre lifted by h/2; rotation_y 0 -> yaw -pi/2
    assert np.allclose(boxes[0], [10.0, 0.0, -1.65 + 0.75, 3.9, 1.6, 1.5, -np.pi / 2], atol=1e-5)
    with pytest.raises(ValueError, match="15 or 16 fields"):
        parse_label_lines("Car 0 0\n", ("Car",), Calibration())


def test_kitti_missing_folder_and_bad_scan(tmp_path):
    with pytest.raises(FileNotFoundError, match="velodyne"):
        KittiDataset(tmp_path, ("Car",))
    empty = Scan(np.zeros((0, 4), np.float32), np.zeros((0, 7), np.float32), np.zeros(0, np.int64), np.zeros(0, np.int64), "x")
    with pytest.raises(ValueError, match="no points"):
        empty.validate()
    nan = dataclasses.replace(empty, points=np.array([[np.nan, 0, 0, 0]], np.float32))
    with pytest.raises(ValueError, match="NaN"):
        nan.validate()
    flat = dataclasses.replace(empty, points=np.ones((1, 4), np.float32), boxes=np.array([[0, 0, 0, 1, 0, 1, 0]], np.float32),
                               labels=np.zeros(1, np.int64), occlusion=np.zeros(1, np.int64))
    with pytest.raises(ValueError, match="zero or negative size"):
        flat.validate()


def test_augmentations_keep_points_in_their_boxes(scans):
    _, data = scans
    scan = data[0]
    before = points_in_boxes(torch.from_numpy(scan.points), torch.from_numpy(scan.boxes))
    for moved in (flip_y(scan), rotate_z(scan, 0.7), scale(scan, 1.1)):
        after = points_in_boxes(torch.from_numpy(moved.points), torch.from_numpy(moved.boxes))
        assert torch.equal(before, after)
    db = GroundTruthDatabase.from_scans(data[1:])
    pasted = paste_objects(scan, db, 3, np.random.default_rng(0))
    assert len(pasted.boxes) > len(scan.boxes)
    inside = points_in_boxes(torch.from_numpy(pasted.points), torch.from_numpy(pasted.boxes[len(scan.boxes):]))
    assert (inside.sum(0) > 0).all()
    out = augment(scan, AugmentConfig(gt_sampling=True), np.random.default_rng(1), db)
    out.validate()
    with pytest.raises(ValueError, match="GroundTruthDatabase"):
        augment(scan, AugmentConfig(gt_sampling=True), np.random.default_rng(1))
