"""Box ops, matching, NMS and losses of the detection heads, against hand values and brute force."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from explorer.heads.detection_dense import (
    DenseConfig,
    DenseDetector,
    assign_targets,
    boxes_to_ltrb,
    cell_centres,
    centerness,
    dense_targets,
    flip_dense_targets,
    ltrb_to_boxes,
)
from explorer.heads.detection_ops import (
    batched_nms,
    box_cxcywh_to_xyxy,
    box_iou,
    box_sine_embedding,
    box_xyxy_to_cxcywh,
    generalized_box_iou,
    giou_aligned,
    hungarian_match,
    nms,
    sigmoid_focal_loss,
    sine_pos_encoding_2d,
)


def test_iou_and_giou_hand_values() -> None:
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0]])
    b = torch.tensor([[1.0, 1.0, 3.0, 3.0], [4.0, 0.0, 6.0, 2.0], [0.0, 0.0, 2.0, 2.0]])
    iou, _ = box_iou(a, b)
    # overlap 1, union 4 + 4 - 1 = 7; disjoint; identical
    torch.testing.assert_close(iou[0], torch.tensor([1 / 7, 0.0, 1.0]))
    g = generalized_box_iou(a, b)[0]
    # hull of a and b0 is 3x3 = 9: 1/7 - (9 - 7)/9 ; a and b1: hull 6x2 = 12, union 8: 0 - 4/12
    torch.testing.assert_close(g, torch.tensor([1 / 7 - 2 / 9, -1 / 3, 1.0]))
    torch.testing.assert_close(giou_aligned(a.expand(3, 4), b), g)


def test_cxcywh_round_trip() -> None:
    b = torch.tensor([[10.0, 20.0, 50.0, 40.0], [0.0, 0.0, 1.0, 3.0]])
    c = box_xyxy_to_cxcywh(b)
    torch.testing.assert_close(c[0], torch.tensor([30.0, 30.0, 40.0, 20.0]))
    torch.testing.assert_close(box_cxcywh_to_xyxy(c), b)


@pytest.mark.parametrize("seed", range(6))
def test_hungarian_matches_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    q, g = int(rng.integers(2, 6)), int(rng.integers(1, 4))
    g = min(g, q)
    cost = rng.normal(size=(q, g))
    rows, cols = hungarian_match(torch.from_numpy(cost))
    assert len(rows) == g and len(set(rows.tolist())) == g and sorted(cols.tolist()) == list(range(g))
    best = min(sum(cost[p, j] for j, p in enumerate(perm)) for perm in itertools.permutations(range(q), g))
    assert cost[rows, cols].sum() == pytest.approx(best)


def test_hungarian_empty() -> None:
    rows, cols = hungarian_match(torch.zeros(5, 0))
    assert rows.size == 0 and cols.size == 0


def test_nms_hand_case() -> None:
    boxes = torch.tensor([
        [0.0, 0.0, 10.0, 10.0],   # 0: score .9
        [1.0, 1.0, 11.0, 11.0],   # 1: IoU 81/119 = .68 with 0 -> suppressed
        [20.0, 20.0, 30.0, 30.0],  # 2: far away -> kept
        [0.0, 0.0, 10.0, 5.0],    # 3: IoU .5 with 0 -> kept at thr .6, suppressed at .4
    ])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6])
    assert nms(boxes, scores, 0.6).tolist() == [0, 2, 3]
    assert nms(boxes, scores, 0.4).tolist() == [0, 2]
    # different classes never suppress each other
    labels = torch.tensor([0, 1, 0, 0])
    assert sorted(batched_nms(boxes, scores, labels, 0.4).tolist()) == [0, 1, 2]
    assert nms(torch.zeros(0, 4), torch.zeros(0), 0.5).numel() == 0


def test_ltrb_encode_decode_round_trip() -> None:
    centres = cell_centres(4, 5, 8)
    assert centres[0, 0].tolist() == [4.0, 4.0] and centres[3, 4].tolist() == [36.0, 28.0]
    boxes = torch.tensor([1.0, 2.0, 39.0, 30.0]).expand(4, 5, 4)
    ltrb = boxes_to_ltrb(boxes, centres, 8)
    torch.testing.assert_close(ltrb_to_boxes(ltrb, centres, 8), boxes)
    # centre of a box -> centerness 1; a point at a quarter -> sqrt(1/3 * 1)
    torch.testing.assert_close(centerness(torch.tensor([[2.0, 1.0, 2.0, 1.0], [1.0, 1.0, 3.0, 1.0]])),
                               torch.tensor([1.0, (1 / 3) ** 0.5]))


def test_assign_targets_prefers_small_box_and_covers_tiny_box() -> None:
    boxes = torch.tensor([[0.0, 0.0, 64.0, 64.0], [24.0, 24.0, 40.0, 40.0], [50.0, 2.0, 53.0, 5.0]])
    labels = torch.tensor([0, 1, 2])
    gt, ltrb = assign_targets(boxes, labels, 8, 8, 8, center_radius=1.5)
    # cell (3, 3) centre (28, 28): inside both big and mid box -> the smaller (1)
    assert gt[3, 3] == 1
    torch.testing.assert_close(ltrb[3, 3], torch.tensor([4.0, 4.0, 12.0, 12.0]) / 8)
    # the 3 px box contains no cell centre but still gets the cell under its centre (51.5, 3.5)
    assert gt[0, 6] == 2
    # far corners are outside every centre region -> background
    assert gt[7, 0] == -1


def test_focal_loss_hand_value() -> None:
    x = torch.tensor([0.0, 2.0])
    t = torch.tensor([1.0, 0.0])
    p = torch.sigmoid(x)
    want = 0.25 * (-torch.log(p[0])) * (1 - p[0]) ** 2 + 0.75 * (-torch.log(1 - p[1])) * p[1] ** 2
    torch.testing.assert_close(sigmoid_focal_loss(x, t), want)


def test_sine_encodings_shapes_and_distinctness() -> None:
    pos = sine_pos_encoding_2d(3, 4, 16)
    assert pos.shape == (12, 16)
    assert torch.cdist(pos, pos).add(torch.eye(12)).min() > 1e-3  # every cell has its own code
    emb = box_sine_embedding(torch.rand(2, 5, 4), 32)
    assert emb.shape == (2, 5, 32)


def test_dense_detector_output_shapes() -> None:
    m = DenseDetector(DenseConfig(in_dim=24, num_classes=3, hidden=16, num_convs=1, upsample=True))
    out = m(torch.randn(2, 5, 6, 24))
    assert out["cls"].shape == (2, 10, 12, 3) and out["ltrb"].shape == (2, 10, 12, 4)
    assert out["ctr"].shape == (2, 10, 12) and m.stride == 8
    assert (out["ltrb"] > 0).all()


def test_flipped_dense_targets_equal_targets_of_flipped_boxes() -> None:
    boxes = torch.tensor([[3.0, 5.0, 40.0, 30.0], [50.0, 10.0, 62.0, 60.0], [20.0, 33.0, 29.0, 41.0]])
    labels = torch.tensor([4, 1, 2])
    w_px = 64
    flipped = boxes.clone()
    flipped[:, 0], flipped[:, 2] = w_px - boxes[:, 2], w_px - boxes[:, 0]
    lab, ltrb = dense_targets([{"boxes": boxes, "labels": labels}], 8, 8, 8, 1.5)
    lab_f, ltrb_f = dense_targets([{"boxes": flipped, "labels": labels}], 8, 8, 8, 1.5)
    got_lab, got_ltrb = flip_dense_targets(lab, ltrb)
    assert torch.equal(got_lab, lab_f)
    pos = lab_f >= 0
    assert pos.sum() > 5
    torch.testing.assert_close(got_ltrb[pos], ltrb_f[pos])


def test_detr_matching_is_optimal_against_brute_force() -> None:
    """The batched DETR matcher solves each image's block exactly (brute force over assignments)."""
    from explorer.heads.detection_detr import DetrConfig, match

    torch.manual_seed(0)
    cfg = DetrConfig(in_dim=8, num_classes=3)
    out = {"logits": torch.randn(2, 4, 4), "boxes": torch.rand(2, 4, 4) * 0.5 + 0.25}
    targets = [{"labels": torch.tensor([0, 2]), "boxes_cxcywh": torch.tensor([[0.3, 0.3, 0.2, 0.2], [0.6, 0.7, 0.3, 0.2]])},
               {"labels": torch.tensor([1]), "boxes_cxcywh": torch.tensor([[0.5, 0.5, 0.4, 0.4]])}]
    got = match(out, targets, cfg)
    for i, t in enumerate(targets):
        prob = out["logits"][i].softmax(-1)
        pb, tb = out["boxes"][i], t["boxes_cxcywh"]
        cost = (2 * -prob[:, t["labels"]] + 5 * torch.cdist(pb, tb, p=1)
                - 2 * generalized_box_iou(box_cxcywh_to_xyxy(pb), box_cxcywh_to_xyxy(tb))).numpy()
        g = len(t["labels"])
        best = min(sum(cost[p, j] for j, p in enumerate(perm)) for perm in itertools.permutations(range(4), g))
        rows, cols = got[i]
        assert cost[rows, cols].sum() == pytest.approx(best, rel=1e-5)
