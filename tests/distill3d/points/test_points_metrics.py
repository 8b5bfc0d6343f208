import numpy as np
import pytest

from distill3d.points.metrics import DifficultyConfig, FrameResult, average_precision, evaluate, interpolated_ap


def b(x, y=0.0, l=4.0):
    return [x, y, 0.0, l, 2.0, 1.5, 0.0]


def test_interpolated_ap_hand_computed():
    # Ranked TP, FP, TP with 2 ground truths: precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1.
    # R40: levels 1/40..20/40 take max precision at recall >= level = 1 (from the first detection),
    # levels 21/40..40/40 need recall 1: precision 2/3.  AP = (20 * 1 + 20 * 2/3) / 40 = 5/6.
    assert interpolated_ap(np.array([1.0, 0.0, 1.0]), 2, 40) == pytest.approx(5 / 6)
    assert interpolated_ap(np.array([1.0, 1.0]), 4, 40) == pytest.approx(0.5)  # recall 1/2 only
    assert interpolated_ap(np.zeros(0), 3, 40) == 0.0
    assert np.isnan(interpolated_ap(np.zeros(0), 0, 40))


def test_average_precision_on_hand_made_detections():
    cfg = DifficultyConfig(max_range=(100.0, 100.0, 100.0), max_occlusion=(2, 2, 2))
    frames = [
        FrameResult(
            pred_boxes=np.array([b(10), b(20.3), b(40)]), pred_scores=np.array([0.9, 0.6, 0.8]), pred_labels=np.array([0, 0, 0]),
            gt_boxes=np.array([b(10), b(20)]), gt_labels=np.array([0, 0]), gt_occlusion=np.array([0, 0]),
        ),
        FrameResult(
            pred_boxes=np.array([b(10, 5), b(10, 5.1)]), pred_scores=np.array([0.7, 0.65]), pred_labels=np.array([0, 0]),
            gt_boxes=np.array([b(10, 5)]), gt_labels=np.array([0]), gt_occlusion=np.array([0]),
        ),
    ]
    # Global ranking: 0.9 TP, 0.8 FP (no box at x=40), 0.7 TP, 0.65 FP (duplicate), 0.6 TP (IoU 3.7/4.3 > 0.5).
    # precision: 1, 1/2, 2/3, 1/2, 3/5 ; recall: 1/3, 1/3, 2/3, 2/3, 1.
    # envelope: recall <= 1/3 -> 1; (1/3, 2/3] -> 2/3; (2/3, 1] -> 3/5.
    # levels i/40: i <= 13 -> 1 (13 levels), 14..26 -> 2/3 (13 levels), 27..40 -> 3/5 (14 levels).
    expected = (13 * 1 + 13 * 2 / 3 + 14 * 3 / 5) / 40
    assert average_precision(frames, 0, 0.5, "bev", 2, cfg) == pytest.approx(expected)
    # at IoU 0.9 the shifted detection (BEV IoU 0.86) is a false positive
    expected_strict = (13 * 1 + 13 * 2 / 3) / 40
    assert average_precision(frames, 0, 0.9, "bev", 2, cfg) == pytest.approx(expected_strict)


def test_difficulty_ignores_boxes_outside_the_bin():
    cfg = DifficultyConfig(max_range=(15.0, 30.0, 50.0), max_occlusion=(0, 1, 2))
    frame = FrameResult(
        pred_boxes=np.array([b(10), b(25)]), pred_scores=np.array([0.9, 0.8]), pred_labels=np.array([0, 0]),
        gt_boxes=np.array([b(10), b(25)]), gt_labels=np.array([0, 0]), gt_occlusion=np.array([0, 0]),
    )
    # easy: the far box is ignored, so its detection is neither TP nor FP -> AP 1
    assert average_precision([frame], 0, 0.5, "3d", 0, cfg) == pytest.approx(1.0)
    res = evaluate([frame], ("Duck",), (0.5,), cfg)
    assert res["Duck/bev/moderate"] == pytest.approx(100.0)
    assert res["mAP/3d/hard"] == pytest.approx(100.0)


def test_wrong_class_detection_is_not_a_match():
    cfg = DifficultyConfig()
    frame = FrameResult(np.array([b(10)]), np.array([0.9]), np.array([1]), np.array([b(10)]), np.array([0]), np.array([0]))
    res = evaluate([frame], ("A", "B"), (0.5, 0.5), cfg)
    assert res["A/bev/easy"] == 0.0
    assert np.isnan(res["B/bev/easy"])  # no ground truth of class B
    with pytest.raises(ValueError, match="one IoU threshold per class"):
        evaluate([frame], ("A", "B"), (0.5,), cfg)
