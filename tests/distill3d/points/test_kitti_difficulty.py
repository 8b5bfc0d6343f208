"""The official KITTI difficulty (2D height, occlusion, truncation), DontCare regions and neighbouring
classes, on hand-computed cases; the simulator's range/occlusion definition is unchanged."""
import numpy as np
import pytest

from distill3d.points.kitti import evaluate_kitti_folders, kitti_frame
from distill3d.points.metrics import (DifficultyConfig, FrameResult, KittiDifficultyConfig, average_precision,
                                      evaluate, kitti_difficulty_mask)

KITTI = KittiDifficultyConfig()


def b(x, y=0.0):
    return [x, y, 0.0, 4.0, 2.0, 1.5, 0.0]  # a car-sized LiDAR box on the x axis


def box2d(height, x=100.0):
    return [x, 100.0, x + 60.0, 100.0 + height]


def test_difficulty_by_height_occlusion_and_truncation():
    # A: 50 px, visible, whole -> every level. B: 30 px -> not easy (needs > 40 px). C: occlusion 2,
    # truncation 0.4 -> hard only. D: truncation 0.6 -> no level (ignored everywhere).
    frame = FrameResult(
        pred_boxes=np.array([b(60), b(10), b(20), b(40)]), pred_scores=np.array([0.95, 0.9, 0.8, 0.7]),
        pred_labels=np.zeros(4, int), pred_boxes_2d=np.array([box2d(50), box2d(50), box2d(30), box2d(50)]),
        gt_boxes=np.array([b(10), b(20), b(30), b(40)]), gt_labels=np.zeros(4, int),
        gt_occlusion=np.array([0, 0, 2, 0]), gt_truncation=np.array([0.0, 0.0, 0.4, 0.6]),
        gt_boxes_2d=np.array([box2d(50), box2d(30), box2d(50), box2d(50)]),
    )
    assert [kitti_difficulty_mask(frame, level, KITTI).tolist() for level in range(3)] == [
        [True, False, False, False], [True, True, False, False], [True, True, True, False]]
    # easy: the false positive at x=60 (0.95) ranks first, A is found (0.9); the 30 px detection of B is
    # dropped (lower than 40 px), the one of D matches an ignored box. Precision 1/2 at recall 1.
    assert average_precision([frame], 0, 0.7, "bev", 0, KITTI) == pytest.approx(0.5)
    # moderate: FP, TP(A), TP(B): precision 2/3 at recall 1 (the envelope) -> 2/3 at every recall level
    assert average_precision([frame], 0, 0.7, "bev", 1, KITTI) == pytest.approx(2 / 3)
    # hard: C is never detected: recall stops at 2/3 with precision 2/3 -> levels 1..26 of 40 count
    assert average_precision([frame], 0, 0.7, "bev", 2, KITTI) == pytest.approx(26 / 40 * 2 / 3)
    # the boundary: a box exactly 40 px tall is not easy, 40.5 px is
    edge = FrameResult(np.zeros((0, 7)), np.zeros(0), np.zeros(0), np.array([b(10), b(20)]), np.zeros(2, int),
                       np.zeros(2, int), gt_boxes_2d=np.array([box2d(40), box2d(40.5)]), gt_truncation=np.zeros(2))
    assert kitti_difficulty_mask(edge, 0, KITTI).tolist() == [False, True]


def test_dontcare_regions_and_neighbouring_classes_are_not_false_positives():
    dontcare = np.array([[500.0, 100.0, 700.0, 200.0]])
    frame = dict(
        pred_boxes=np.array([b(60), b(20), b(40), b(10)]), pred_scores=np.array([0.97, 0.96, 0.95, 0.9]),
        pred_labels=np.zeros(4, int),
        # inside the DontCare region; on the Van; on nothing (outside the region); on the car
        pred_boxes_2d=np.array([[550.0, 120.0, 600.0, 180.0], box2d(50), box2d(50), box2d(50)]),
        gt_boxes=np.array([b(10), b(20)]), gt_labels=np.array([0, -1]), gt_neighbor_of=np.array([-1, 0]),
        gt_occlusion=np.zeros(2, int), gt_truncation=np.zeros(2), gt_boxes_2d=np.array([box2d(50), box2d(50)]),
    )
    # ranked: ignored (DontCare), ignored (Van), FP, TP -> precision 1/2 at recall 1
    assert average_precision([FrameResult(**frame, dontcare_boxes_2d=dontcare)], 0, 0.7, "3d", 1, KITTI) == pytest.approx(0.5)
    # without the DontCare region the first detection is a false positive too: precision 1/3
    assert average_precision([FrameResult(**frame)], 0, 0.7, "3d", 1, KITTI) == pytest.approx(1 / 3)
    # a detection only half inside the region (overlap 0.5 of its area, not above 0.7) stays a false positive
    half = dict(frame, pred_boxes_2d=np.array([[450.0, 120.0, 550.0, 180.0], *frame["pred_boxes_2d"][1:]]))
    assert average_precision([FrameResult(**half, dontcare_boxes_2d=dontcare)], 0, 0.7, "3d", 1, KITTI) == pytest.approx(1 / 3)
    # without 2D boxes the official definition cannot be applied: one clear error; the simulator's still works
    plain = FrameResult(frame["pred_boxes"], frame["pred_scores"], frame["pred_labels"], frame["gt_boxes"][:1],
                        np.array([0]), np.array([0]))
    with pytest.raises(ValueError, match="gt_boxes_2d.*kitti_frame"):
        average_precision([plain], 0, 0.7, "3d", 1, KITTI)
    assert average_precision([plain], 0, 0.7, "3d", 1, DifficultyConfig()) == pytest.approx(0.25)  # FP, FP, FP, TP


GT_LABEL = """Car 0.00 0 -1.57 100.00 150.00 200.00 200.00 1.50 1.60 3.90 0.00 1.50 10.00 -1.57
Van 0.10 1 -1.57 300.00 150.00 400.00 180.00 2.00 1.80 4.50 3.00 1.50 20.00 -1.57
Cyclist 0.00 0 -1.57 10.00 150.00 40.00 200.00 1.70 0.60 1.80 -3.00 1.50 8.00 -1.57
DontCare -1 -1 -10 500.00 100.00 700.00 200.00 -1 -1 -1 -1000 -1000 -1000 -10
"""
PRED_LABEL = """Car -1 -1 -1.57 100.00 150.00 200.00 200.00 1.50 1.60 3.90 0.00 1.50 10.00 -1.57 0.90
Car -1 -1 -1.57 550.00 120.00 600.00 180.00 1.50 1.60 3.90 8.00 1.50 30.00 -1.57 0.95
"""


def test_kitti_frame_reads_what_the_official_evaluation_needs():
    frame = kitti_frame(GT_LABEL, PRED_LABEL, ("Car", "Pedestrian"))
    assert frame.gt_labels.tolist() == [0, -1] and frame.gt_neighbor_of.tolist() == [-1, 0]  # Van: ignored for Car
    np.testing.assert_allclose(frame.gt_truncation, [0.0, 0.1])
    np.testing.assert_allclose(frame.gt_boxes_2d[:, 3] - frame.gt_boxes_2d[:, 1], [50.0, 30.0])
    np.testing.assert_allclose(frame.dontcare_boxes_2d, [[500.0, 100.0, 700.0, 200.0]])
    np.testing.assert_allclose(frame.pred_scores, [0.9, 0.95])
    # the 0.95 detection sits inside the DontCare region: not a false positive, so the car is found at precision 1
    results = evaluate([frame], ("Car", "Pedestrian"), (0.7, 0.5), KITTI)
    assert results["Car/3d/easy"] == pytest.approx(100.0) and np.isnan(results["Pedestrian/3d/easy"])


def test_evaluate_kitti_folders(tmp_path):
    (tmp_path / "label_2").mkdir()
    (tmp_path / "results").mkdir()
    (tmp_path / "label_2" / "000000.txt").write_text(GT_LABEL)
    (tmp_path / "label_2" / "000001.txt").write_text(GT_LABEL)
    (tmp_path / "results" / "000000.txt").write_text(PRED_LABEL)  # frame 000001: no detections, its car is missed
    results = evaluate_kitti_folders(tmp_path / "label_2", tmp_path / "results", ("Car",), (0.7,))
    assert results["Car/bev/moderate"] == pytest.approx(50.0)  # recall 1/2 at precision 1: 20 of 40 levels
    with pytest.raises(FileNotFoundError, match="no label files"):
        evaluate_kitti_folders(tmp_path / "results" / "none", tmp_path / "results", ("Car",), (0.7,))


def kitti_folder(root):
    """A one-frame KITTI folder with GT_LABEL (a car, a van, a cyclist, a DontCare region)."""
    from distill3d.points.kitti import Calibration, write_calibration

    base = root / "training"
    for sub in ("velodyne", "label_2", "calib"):
        (base / sub).mkdir(parents=True)
    rng = np.random.default_rng(0)
    points = np.c_[rng.uniform(2, 30, (500, 1)), rng.uniform(-8, 8, (500, 1)), rng.uniform(-1.5, 1, (500, 1)),
                   rng.uniform(0, 1, (500, 1))].astype(np.float32)
    points.tofile(base / "velodyne" / "000000.bin")
    (base / "label_2" / "000000.txt").write_text(GT_LABEL)
    write_calibration(base / "calib" / "000000.txt", Calibration())
    (root / "ImageSets").mkdir()
    (root / "ImageSets" / "val.txt").write_text("000000\n")
    return root


def test_with_kitti_annotations_reads_a_kitti_folder(tmp_path):
    from distill3d.points.kitti import Calibration, KittiDataset, _image_boxes, with_kitti_annotations

    dataset = KittiDataset(kitti_folder(tmp_path), ("Car",))
    scan = dataset[0]
    assert scan.labels.tolist() == [0]  # the reader keeps the class boxes only
    found = FrameResult(scan.boxes, np.array([0.9]), np.array([0]), scan.boxes, scan.labels, scan.occlusion)
    (frame,) = with_kitti_annotations(dataset, [found])
    assert frame.gt_labels.tolist() == [0, -1] and frame.gt_neighbor_of.tolist() == [-1, 0]
    np.testing.assert_allclose(frame.dontcare_boxes_2d, [[500.0, 100.0, 700.0, 200.0]])
    np.testing.assert_allclose(frame.pred_boxes_2d, _image_boxes(scan.boxes.astype(np.float64), Calibration()))
    # the car 1.5 m tall, its near face 10 - 3.9 / 2 m ahead (length along the optical axis), spans
    # f * 1.5 / 8.05 px (f = 721.5377, KITTI's P2): easy
    assert frame.pred_boxes_2d[0, 3] - frame.pred_boxes_2d[0, 1] == pytest.approx(721.5377 * 1.5 / 8.05, rel=1e-3)
    assert evaluate([frame], ("Car",), (0.7,), KITTI)["Car/3d/easy"] == pytest.approx(100.0)
    with pytest.raises(ValueError, match="1 scans"):
        with_kitti_annotations(dataset, [found, found])


def test_cli_eval_with_the_official_difficulty(tmp_path):
    import json

    from distill3d.cli import main as cli_main
    from distill3d.points.train import build_detector, save_checkpoint

    data = kitti_folder(tmp_path / "kitti")
    save_checkpoint(tmp_path / "d.pt", build_detector("pillars", 1, width=0.25), {"class_names": ["Car"]})
    args = ["points", "eval", "--data", str(data), "--checkpoint", str(tmp_path / "d.pt"), "--classes", "Car",
            "--split", "val", "--json", str(tmp_path / "r.json"), "--threads", "1"]
    assert cli_main(args + ["--difficulty", "kitti"]) == 0
    results = json.loads((tmp_path / "r.json").read_text())
    assert set(results) >= {"Car/3d/easy", "mAP/bev/hard"} and all(v is None or 0 <= v <= 100 for v in results.values())
