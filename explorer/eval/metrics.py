"""Evaluation metrics for the four frozen-backbone tasks (report Tables 3-8 and 12).

Every function takes plain numpy arrays so the same code scores the bundled heads, heads trained by
users on real data, and the hand-built cases in the tests.

Conventions (stated once, relied on everywhere):
- Boxes are ``[x0, y0, x1, y1]`` in continuous pixel coordinates (no VOC ``+1``), like pycocotools.
- Segmentation label maps use 0 = background, ``k + 1`` = class ``k`` and 255 = void (ignored).
- mIoU averages IoU over classes that occur in the ground truth OR the prediction of the evaluated
  set; a class absent from both has an undefined IoU (0/0) and is excluded rather than counted as
  0 or 1. Void pixels are dropped before counting, whatever the prediction says there.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

IGNORE_INDEX = 255


# --------------------------------------------------------------------------- classification
def topk_accuracy(scores: np.ndarray, labels: np.ndarray, ks: Sequence[int] = (1, 5)) -> dict[int, float]:
    """Fraction of rows whose true label is among the k highest scores.

    Ties are broken by the lower class index (stable sort), so a constant score row predicts class 0.
    With fewer than k classes the top-k set is every class (accuracy 1.0).
    """
    scores = np.asarray(scores)
    labels = np.asarray(labels).astype(np.int64)
    if scores.ndim != 2 or scores.shape[0] != labels.shape[0]:
        raise ValueError(f"scores must be [N, K] matching labels [N]; got {scores.shape} and {labels.shape}")
    if len(labels) == 0:
        return {k: float("nan") for k in ks}
    order = np.argsort(-scores, axis=1, kind="stable")
    out: dict[int, float] = {}
    for k in ks:
        hit = (order[:, : min(k, scores.shape[1])] == labels[:, None]).any(axis=1)
        out[k] = float(hit.mean())
    return out


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """``cm[t, p]`` = number of samples of true class t predicted as p (int64)."""
    y_true = np.asarray(y_true, dtype=np.int64).ravel()
    y_pred = np.asarray(y_pred, dtype=np.int64).ravel()
    idx = y_true * num_classes + y_pred
    return np.bincount(idx, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def worst_classes(
    y_true: np.ndarray, y_pred: np.ndarray, num_classes: int, k: int = 10, class_names: Sequence[str] | None = None
) -> list[dict]:
    """The k classes with the lowest per-class accuracy (recall), as in the report's Table 5.

    Only classes with at least one test sample are ranked; ties go to the lower class id.
    """
    cm = confusion_matrix(y_true, y_pred, num_classes)
    support = cm.sum(axis=1)
    rows = []
    for c in np.flatnonzero(support > 0):
        acc = cm[c, c] / support[c]
        name = class_names[c] if class_names is not None else str(c)
        rows.append({"class_id": int(c), "name": name, "accuracy": float(acc), "support": int(support[c])})
    rows.sort(key=lambda r: (r["accuracy"], r["class_id"]))
    return rows[:k]


def classification_metrics(
    y_true: np.ndarray,
    scores: np.ndarray,
    class_names: Sequence[str] | None = None,
    worst_k: int = 10,
) -> dict:
    """Tables 3-5 of the report from class scores: top-1/top-5, balanced accuracy, macro and weighted
    precision/recall/F1 (sklearn, ``zero_division=0``) and the worst classes."""
    import warnings

    from sklearn.metrics import balanced_accuracy_score, precision_recall_fscore_support

    scores = np.asarray(scores)
    y_true = np.asarray(y_true, dtype=np.int64)
    num_classes = scores.shape[1]
    y_pred = np.argsort(-scores, axis=1, kind="stable")[:, 0]
    topk = topk_accuracy(scores, y_true, (1, 5))
    out: dict = {
        "n": int(len(y_true)),
        "num_classes": int(num_classes),
        "top1": topk[1],
        "top5": topk[5],
    }
    with warnings.catch_warnings():  # "y_pred contains classes not in y_true" is expected on small splits
        warnings.simplefilter("ignore", UserWarning)
        out["balanced_accuracy"] = float(balanced_accuracy_score(y_true, y_pred))
    for avg in ("macro", "weighted"):
        # sklearn averages over the classes present in y_true or y_pred (as classification_report
        # does), so classes with no test sample and no prediction do not dilute the macro mean.
        p, r, f, _ = precision_recall_fscore_support(y_true, y_pred, average=avg, zero_division=0)
        out[f"{avg}_precision"] = float(p)
        out[f"{avg}_recall"] = float(r)
        out[f"{avg}_f1"] = float(f)
    out["worst_classes"] = worst_classes(y_true, y_pred, num_classes, worst_k, class_names)
    out["y_pred"] = y_pred
    return out


def save_confusion_png(
    cm: np.ndarray, path: str | Path, class_names: Sequence[str] | None = None, normalize: bool = True
) -> Path:
    """Write the confusion matrix as a PNG (rows = true class, normalised per row by default)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mat = cm.astype(np.float64)
    if normalize:
        mat = mat / np.maximum(mat.sum(axis=1, keepdims=True), 1)
    n = cm.shape[0]
    side = min(max(4.0, 0.18 * n + 2), 20.0)
    fig, ax = plt.subplots(figsize=(side, side), dpi=100)
    im = ax.imshow(mat, cmap="viridis", vmin=0, vmax=1 if normalize else None, interpolation="nearest")
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    if class_names is not None and n <= 40:
        ax.set_xticks(range(n), labels=list(class_names), rotation=90, fontsize=6)
        ax.set_yticks(range(n), labels=list(class_names), fontsize=6)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    ax.set_title("confusion matrix" + (" (row-normalised)" if normalize else ""))
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


# --------------------------------------------------------------------------- segmentation
def segmentation_confusion(
    gt: np.ndarray, pred: np.ndarray, num_classes: int, ignore_index: int = IGNORE_INDEX
) -> np.ndarray:
    """Pixel confusion matrix ``[K, K]`` (rows = ground truth) for one image; sum over images."""
    gt = np.asarray(gt).ravel().astype(np.int64)
    pred = np.asarray(pred).ravel().astype(np.int64)
    if gt.shape != pred.shape:
        raise ValueError(f"gt and pred sizes differ: {gt.shape} vs {pred.shape}")
    keep = gt != ignore_index
    gt, pred = gt[keep], pred[keep]
    if len(gt) and (gt.max() >= num_classes or pred.max() >= num_classes or pred.min() < 0):
        raise ValueError("label outside [0, num_classes) after removing ignore_index")
    return confusion_matrix(gt, pred, num_classes)


def iou_from_confusion(cm: np.ndarray) -> tuple[np.ndarray, float]:
    """Per-class IoU (NaN where the class is absent from both GT and prediction) and their mean."""
    cm = np.asarray(cm, dtype=np.float64)
    inter = np.diag(cm)
    union = cm.sum(axis=0) + cm.sum(axis=1) - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, inter / np.where(union > 0, union, 1), np.nan)
    miou = float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan")
    return iou, miou


def mean_iou(
    gts: Sequence[np.ndarray], preds: Sequence[np.ndarray], num_classes: int, ignore_index: int = IGNORE_INDEX
) -> dict:
    """Dataset-level mIoU from the summed confusion matrix (the standard VOC/mmseg definition)."""
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    for g, p in zip(gts, preds, strict=True):
        cm += segmentation_confusion(g, p, num_classes, ignore_index)
    iou, miou = iou_from_confusion(cm)
    pix_acc = float(np.diag(cm).sum() / max(cm.sum(), 1))
    return {"miou": miou, "per_class_iou": iou, "pixel_accuracy": pix_acc, "confusion": cm}


# --------------------------------------------------------------------------- boxes / discovery
def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU ``[N, M]`` of xyxy boxes; degenerate boxes have IoU 0."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def corloc(pred_boxes: Sequence[np.ndarray], gt_boxes: Sequence[np.ndarray], threshold: float = 0.5) -> dict:
    """CorLoc as in LOST/TokenCut: an image counts as correct when its single predicted box has
    IoU >= threshold with ANY ground-truth box. ``mean_iou`` averages each image's best IoU.

    Images without a ground-truth box count as misses (best IoU 0) so they cannot inflate the score.
    """
    best = []
    for p, g in zip(pred_boxes, gt_boxes, strict=True):
        g = np.asarray(g, dtype=np.float64).reshape(-1, 4)
        best.append(float(box_iou(np.asarray(p).reshape(1, 4), g).max()) if len(g) else 0.0)
    best_arr = np.asarray(best)
    if len(best_arr) == 0:
        return {"corloc": float("nan"), "mean_iou": float("nan"), "n": 0, "best_iou": best_arr}
    return {
        "corloc": float((best_arr >= threshold).mean()),
        "mean_iou": float(best_arr.mean()),
        "n": int(len(best_arr)),
        "best_iou": best_arr,
    }


# --------------------------------------------------------------------------- detection (COCO)
def coco_detection_map(
    gt_boxes: Sequence[np.ndarray],
    gt_labels: Sequence[np.ndarray],
    detections: Sequence[dict],
    num_classes: int | None = None,
    image_sizes: Sequence[tuple[int, int]] | None = None,
    gt_iscrowd: Sequence[np.ndarray] | None = None,
) -> dict:
    """COCO mAP@[.5:.95], AP50 and AP75 via pycocotools' COCOeval, built in memory.

    ``gt_boxes[i]`` is ``[n_i, 4]`` xyxy for image i with integer class ids ``gt_labels[i]`` (0-based);
    ``detections[i]`` has ``boxes_xyxy``, ``scores``, ``labels``. ``gt_iscrowd`` marks boxes to be
    ignored the COCO way (use it for VOC "difficult"). Stats that COCOeval leaves undefined (-1,
    e.g. no ground truth at all) come back as NaN.
    """
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    if num_classes is None:
        labs = [int(x) for arr in gt_labels for x in np.asarray(arr).ravel()]
        labs += [int(x) for d in detections for x in np.asarray(d["labels"]).ravel()]
        num_classes = max(labs) + 1 if labs else 1
    images, anns, dets = [], [], []
    ann_id = 1
    for i, (boxes, labels) in enumerate(zip(gt_boxes, gt_labels, strict=True)):
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        labels = np.asarray(labels).ravel()
        crowd = np.zeros(len(boxes), bool) if gt_iscrowd is None else np.asarray(gt_iscrowd[i], bool).ravel()
        if image_sizes is not None:
            h, w = image_sizes[i]
        else:  # COCOeval only uses image size for segm; any positive size works for boxes
            h = int(np.ceil(boxes[:, 3].max())) + 1 if len(boxes) else 1
            w = int(np.ceil(boxes[:, 2].max())) + 1 if len(boxes) else 1
        images.append({"id": i + 1, "height": int(h), "width": int(w)})
        for b, lab, c in zip(boxes, labels, crowd, strict=True):
            bw, bh = float(b[2] - b[0]), float(b[3] - b[1])
            anns.append(
                {"id": ann_id, "image_id": i + 1, "category_id": int(lab) + 1,
                 "bbox": [float(b[0]), float(b[1]), bw, bh], "area": bw * bh, "iscrowd": int(c)}
            )
            ann_id += 1
    for i, det in enumerate(detections):
        boxes = np.asarray(det["boxes_xyxy"], dtype=np.float64).reshape(-1, 4)
        for b, s, lab in zip(boxes, np.asarray(det["scores"]).ravel(), np.asarray(det["labels"]).ravel(), strict=True):
            dets.append(
                {"image_id": i + 1, "category_id": int(lab) + 1,
                 "bbox": [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])], "score": float(s)}
            )
    if len(detections) != len(gt_boxes):
        raise ValueError(f"{len(detections)} detection entries for {len(gt_boxes)} images")
    cats = [{"id": c + 1, "name": str(c)} for c in range(num_classes)]
    nan = float("nan")
    if not anns:
        return {"map": nan, "ap50": nan, "ap75": nan, "n_images": len(images), "n_gt": 0, "n_det": len(dets)}
    if not dets:
        return {"map": 0.0, "ap50": 0.0, "ap75": 0.0, "n_images": len(images), "n_gt": len(anns), "n_det": 0}
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress chatter
        gt = COCO()
        gt.dataset = {"images": images, "annotations": anns, "categories": cats}
        gt.createIndex()
        dt = gt.loadRes(dets)
        ev = COCOeval(gt, dt, iouType="bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    stats = [float(s) if s >= 0 else nan for s in ev.stats[:3]]
    return {"map": stats[0], "ap50": stats[1], "ap75": stats[2], "n_images": len(images),
            "n_gt": len(anns), "n_det": len(dets), "coco_stats": [float(s) for s in ev.stats]}
