"""Each metric against a hand-computed value or a reference implementation."""

from __future__ import annotations

import numpy as np
import pytest

from explorer.eval import metrics as M


def test_topk_hand_case() -> None:
    scores = np.array([[0.1, 0.5, 0.2, 0.15, 0.05],   # true 1: top1 hit
                       [0.4, 0.3, 0.2, 0.06, 0.04],   # true 2: rank 3 -> top2 miss, top3 hit
                       [0.2, 0.2, 0.2, 0.2, 0.2],     # true 4: tie -> stable order 0..4, rank 5
                       [0.0, 0.0, 0.1, 0.9, 0.0]])    # true 0: ranks after 3, 2, then 0 (stable)
    labels = np.array([1, 2, 4, 0])
    acc = M.topk_accuracy(scores, labels, (1, 2, 3, 5))
    assert acc[1] == pytest.approx(0.25)
    assert acc[2] == pytest.approx(0.25)
    assert acc[3] == pytest.approx(0.75)   # rows 0, 1, 3
    assert acc[5] == pytest.approx(1.0)


def test_classification_metrics_against_sklearn_and_hand() -> None:
    from sklearn.metrics import balanced_accuracy_score, f1_score

    y = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2, 3])
    pred = np.array([0, 1, 0, 1, 1, 2, 0, 2, 2, 2])
    scores = np.eye(4)[pred] + 0.01  # one-hot scores -> argmax == pred
    out = M.classification_metrics(y, scores, class_names=["a", "b", "c", "d"])
    assert out["top1"] == pytest.approx(0.7)
    # per-class recall: a 2/3, b 1, c 3/4, d 0 -> balanced = (2/3 + 1 + 0.75 + 0) / 4
    assert out["balanced_accuracy"] == pytest.approx((2 / 3 + 1 + 0.75 + 0) / 4)
    assert out["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, pred))
    assert out["macro_f1"] == pytest.approx(f1_score(y, pred, average="macro", zero_division=0))
    assert out["weighted_f1"] == pytest.approx(f1_score(y, pred, average="weighted", zero_division=0))
    worst = out["worst_classes"]
    assert [w["name"] for w in worst] == ["d", "a", "c", "b"]
    assert worst[0]["accuracy"] == 0.0 and worst[0]["support"] == 1
    assert worst[1]["accuracy"] == pytest.approx(2 / 3)


def test_confusion_png(tmp_path) -> None:
    cm = M.confusion_matrix(np.array([0, 1, 1]), np.array([0, 1, 0]), 2)
    assert cm.tolist() == [[1, 0], [1, 1]]
    p = M.save_confusion_png(cm, tmp_path / "cm.png", ["x", "y"])
    assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_miou_hand_computed_with_void_and_absent_class() -> None:
    gt = np.array([[0, 0, 1, 1],
                   [0, 0, 1, 1],
                   [255, 255, 2, 2]], dtype=np.uint8)
    pred = np.array([[0, 1, 1, 1],
                     [0, 0, 1, 2],
                     [3, 3, 2, 2]], dtype=np.uint8)   # 3s sit on void pixels -> ignored
    out = M.mean_iou([gt], [pred], num_classes=5)
    iou = out["per_class_iou"]
    # class 0: inter 3, gt 4, pred 3 -> 3/4; class 1: inter 3, gt 4, pred 4 -> 3/5; class 2: inter 2, gt 2, pred 3 -> 2/3
    assert iou[0] == pytest.approx(3 / 4)
    assert iou[1] == pytest.approx(3 / 5)
    assert iou[2] == pytest.approx(2 / 3)
    assert np.isnan(iou[3]) and np.isnan(iou[4])  # absent from GT and (non-void) prediction -> excluded
    assert out["miou"] == pytest.approx((3 / 4 + 3 / 5 + 2 / 3) / 3)


def test_miou_counts_false_positive_class_as_zero() -> None:
    gt = np.zeros((2, 2), np.uint8)
    pred = np.array([[0, 0], [0, 1]], np.uint8)
    out = M.mean_iou([gt], [pred], num_classes=2)
    assert out["per_class_iou"][1] == 0.0  # predicted but absent from GT: IoU 0, kept in the mean
    assert out["miou"] == pytest.approx((3 / 4 + 0) / 2)


def test_miou_sums_confusion_over_images() -> None:
    a_gt, a_pr = np.array([[1, 1]]), np.array([[1, 0]])
    b_gt, b_pr = np.array([[1, 1, 1, 1]]), np.array([[1, 1, 1, 1]])
    out = M.mean_iou([a_gt, b_gt], [a_pr, b_pr], num_classes=2)
    assert out["per_class_iou"][1] == pytest.approx(5 / 6)  # dataset-level, not mean of per-image
    assert out["per_class_iou"][0] == 0.0


def test_box_iou_hand() -> None:
    a = np.array([[0, 0, 10, 10], [0, 0, 0, 5]])
    b = np.array([[5, 5, 15, 15], [0, 0, 10, 10], [20, 20, 30, 30]])
    iou = M.box_iou(a, b)
    assert iou[0, 0] == pytest.approx(25 / 175)
    assert iou[0, 1] == 1.0 and iou[0, 2] == 0.0
    assert (iou[1] == 0).all()  # degenerate box


def test_corloc_any_gt_box_and_mean_best_iou() -> None:
    preds = [np.array([0, 0, 10, 10]), np.array([0, 0, 10, 10]), np.array([0, 0, 10, 10])]
    gts = [
        np.array([[50, 50, 60, 60], [0, 0, 10, 12]]),   # second box IoU 100/120 -> hit
        np.array([[0, 0, 10, 25]]),                      # IoU 0.4 -> miss
        np.zeros((0, 4)),                                # no GT -> miss, IoU 0
    ]
    out = M.corloc(preds, gts)
    assert out["corloc"] == pytest.approx(1 / 3)
    assert out["mean_iou"] == pytest.approx((100 / 120 + 0.4 + 0) / 3)


def _det(boxes, scores, labels) -> dict:
    return {"boxes_xyxy": np.asarray(boxes, np.float32).reshape(-1, 4), "scores": np.asarray(scores, np.float32),
            "labels": np.asarray(labels, np.int64)}


def test_coco_map_perfect_is_one() -> None:
    gt_boxes = [np.array([[10, 10, 50, 60], [60, 20, 90, 90]]), np.array([[5, 5, 100, 80]])]
    gt_labels = [np.array([0, 1]), np.array([1])]
    dets = [_det(b, np.ones(len(b)), lab) for b, lab in zip(gt_boxes, gt_labels, strict=True)]
    out = M.coco_detection_map(gt_boxes, gt_labels, dets, num_classes=2)
    assert out["map"] == pytest.approx(1.0)
    assert out["ap50"] == pytest.approx(1.0) and out["ap75"] == pytest.approx(1.0)


def test_coco_map_hand_case_iou_between_thresholds() -> None:
    # One GT box [0,0,100,100]; the detection [0,0,100,70] has IoU 0.7: a TP at thresholds
    # 0.50..0.70 (5 of 10) and a miss above. COCO 101-point AP per threshold is 1 or 0 -> mAP 0.5.
    gt_boxes, gt_labels = [np.array([[0, 0, 100, 100]])], [np.array([0])]
    out = M.coco_detection_map(gt_boxes, gt_labels, [_det([[0, 0, 100, 70]], [0.9], [0])], num_classes=1)
    assert out["ap50"] == pytest.approx(1.0)
    assert out["ap75"] == pytest.approx(0.0)
    assert out["map"] == pytest.approx(0.5)


def test_coco_map_wrong_class_and_ranking() -> None:
    # Two GT of class 0; detections: a high-score false positive, then both true positives.
    # Precision/recall: FP (0/1), TP (1/2, r .5), TP (2/3, r 1). Interpolated precision = 2/3 for
    # every recall point -> AP50 = 2/3 (101-point, exact because the envelope is flat).
    gt_boxes = [np.array([[0, 0, 10, 10]]), np.array([[0, 0, 20, 20]])]
    gt_labels = [np.array([0]), np.array([0])]
    dets = [_det([[0, 0, 10, 10], [50, 50, 60, 60]], [0.8, 0.95], [0, 0]), _det([[0, 0, 20, 20]], [0.7], [0])]
    out = M.coco_detection_map(gt_boxes, gt_labels, dets, num_classes=1)
    assert out["ap50"] == pytest.approx(2 / 3, abs=1e-6)
    wrong = [_det([[0, 0, 10, 10]], [0.9], [1]), _det([[0, 0, 20, 20]], [0.9], [1])]
    assert M.coco_detection_map(gt_boxes, gt_labels, wrong, num_classes=2)["map"] == pytest.approx(0.0)


def test_coco_map_no_detections_is_zero() -> None:
    out = M.coco_detection_map([np.array([[0, 0, 5, 5]])], [np.array([0])], [_det(np.zeros((0, 4)), [], [])])
    assert out["map"] == 0.0
