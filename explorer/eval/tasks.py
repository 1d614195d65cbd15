"""One evaluation function per task: backbone + head + dataset split -> metrics dict.

Shared by ``python -m explorer eval`` and by the training CLI (which scores the validation split and
records the result in the head's card). Features come from the on-disk cache where the head works on
a fixed square input (probe, segmentation); detection and discovery run ``Backbone.extract`` per
image (aspect preserved, as in the app).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from explorer.eval import metrics as M
from explorer.eval.datasets import BoxData, ClassificationData, SegmentationData

DEFAULT_TAUS = tuple(round(0.1 * i, 1) for i in range(1, 10))


def evaluate_probe(
    backbone: Any,
    head: Any,
    data: ClassificationData,
    size: int | None = None,
    cache_dir: str | Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Top-1/top-5, balanced accuracy, macro/weighted P/R/F1, worst classes, confusion matrix."""
    from explorer.heads.features_cache import extract_features
    from explorer.heads.probe import predict_proba, probe_input

    size = int(size or head.card.get("input_size", 224))
    layer = head.card.get("layer")
    feats = extract_features(backbone, data.paths, data.root, size, layer, patches=False, cache_dir=cache_dir,
                             progress=progress, desc="probe features")
    if list(data.class_names) != list(head.class_names):
        raise ValueError(
            f"the dataset's {len(data.class_names)} classes differ from the probe's {len(head.class_names)} "
            f"(dataset starts {data.class_names[:3]}, probe starts {head.class_names[:3]})"
        )
    probs = predict_proba(head, probe_input(head.feature, feats.cls, feats.patch_mean))
    out = M.classification_metrics(data.labels, probs, head.class_names)
    y_pred = out.pop("y_pred")
    out["confusion"] = M.confusion_matrix(data.labels, y_pred, len(head.class_names))
    out["input_size"] = size
    return out


def evaluate_segmentation(
    backbone: Any,
    head: Any,
    data: SegmentationData,
    size: int | None = None,
    cache_dir: str | Path | None = None,
    progress: bool = True,
    batch_size: int = 16,
) -> dict[str, Any]:
    """mIoU and per-class IoU at each image's ORIGINAL resolution (logits upsampled bilinearly)."""
    import torch

    from explorer.data.formats.voc import load_voc_seg
    from explorer.heads.features_cache import extract_features
    from explorer.heads.segmentation import logits

    size = int(size or head.card.get("input_size", 224))
    feats = extract_features(backbone, data.image_paths, data.root, size, head.card.get("layer"), patches=True,
                             cache_dir=cache_dir, progress=progress, desc="segmentation features")
    k = len(head.class_names)
    cm = np.zeros((k, k), np.int64)
    head.module.eval()
    with torch.inference_mode():
        for i, mpath in enumerate(data.mask_paths):
            gt = load_voc_seg(mpath)
            pred = logits(head, feats.patches[i], gt.shape)[0].argmax(0).to(torch.uint8).numpy()
            gt = np.where((gt < k) | (gt == M.IGNORE_INDEX), gt, M.IGNORE_INDEX)  # unknown ids -> void
            cm += M.segmentation_confusion(gt, pred, k)
    iou, miou = M.iou_from_confusion(cm)
    return {
        "miou": miou,
        "per_class_iou": {name: (None if np.isnan(v) else float(v)) for name, v in zip(head.class_names, iou, strict=True)},
        "pixel_accuracy": float(np.diag(cm).sum() / max(cm.sum(), 1)),
        "n": len(data.mask_paths),
        "input_size": size,
    }


def _open_rgb(path: Path) -> Image.Image:
    with Image.open(path) as im:
        return im.convert("RGB")


def image_size(path: Path) -> tuple[int, int]:
    """(H, W) from the file header, without decoding the pixels."""
    with Image.open(path) as im:
        return im.height, im.width


def evaluate_detection(
    backbone: Any,
    head: Any,
    data: BoxData,
    predict_fn: Any,
    size: int | None = None,
    batch_size: int = 32,
    cache_dir: str | Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """COCO mAP@[.5:.95], AP50, AP75 (pycocotools) at each image's ORIGINAL resolution.

    Detection heads are trained on square ``size x size`` inputs (``explorer.heads.detection``), so
    grids come from the same square-resize feature cache; ``predict_fn(head, grids[B, h, w, d],
    (size, size))`` returns per image ``boxes_xyxy`` in input pixels, ``scores`` and 0-based
    ``labels``; boxes are scaled back to the original image here.
    """
    from explorer.heads.features_cache import extract_features

    card = getattr(head, "card", {}) or {}
    head_size = getattr(head, "input_size", None) or card.get("input_size", 224)
    size = int(size or (max(head_size) if isinstance(head_size, (list, tuple)) else head_size))
    layer = getattr(head, "layer", None) or card.get("layer") or (getattr(head, "recipe", {}) or {}).get("layer")
    feats = extract_features(backbone, data.image_paths, data.root, size, layer, patches=True,
                             batch_size=batch_size, cache_dir=cache_dir, progress=progress, desc="detection features")
    sizes = [image_size(p) for p in data.image_paths]
    dets: list[dict] = []
    for i in range(0, len(sizes), batch_size):
        for j, d in enumerate(predict_fn(head, feats.patches[i : i + batch_size], (size, size))):
            h, w = sizes[i + j]
            scale = np.array([w / size, h / size, w / size, h / size], np.float64)
            boxes = np.asarray(d["boxes_xyxy"], np.float64).reshape(-1, 4) * scale
            dets.append({"boxes_xyxy": boxes, "scores": np.asarray(d["scores"]), "labels": np.asarray(d["labels"])})
    out = M.coco_detection_map(data.boxes, data.labels, dets, num_classes=len(data.class_names),
                               image_sizes=sizes, gt_iscrowd=data.difficult)
    out["input_size"] = size
    return out


def discovery_features(
    backbone: Any, data: BoxData, size: int, layer: int | None, progress: bool = True
) -> list[Any]:
    """``Features`` of every image (aspect-preserving, as TokenCut's reference and the app)."""
    from tqdm.auto import tqdm

    out = []
    for p in tqdm(data.image_paths, desc="discovery features", disable=not progress):
        out.append(backbone.extract(_open_rgb(p), size=size, layer=layer))
    return out


def discovery_sweep(
    features: Sequence[Any], gt_boxes: Sequence[np.ndarray], taus: Sequence[float] = DEFAULT_TAUS,
    solver: str = "fast",
) -> dict[float, dict[str, Any]]:
    """CorLoc and mean IoU at every τ; TokenCut's affinity is computed once per image."""
    from explorer.analysis.tokencut import box_to_pixels, tokencut_sweep

    boxes: dict[float, list] = {float(t): [] for t in taus}
    for f, _g in zip(features, gt_boxes, strict=True):
        results = tokencut_sweep(f.patches, list(taus), solver=solver)
        for t, r in zip(taus, results, strict=True):
            box = box_to_pixels(tuple(r.box), f.patch_size, f.input_size, f.image_size)
            boxes[float(t)].append(np.asarray(box, np.float64))
    out = {}
    for t in boxes:
        res = M.corloc(boxes[t], gt_boxes)
        res["pred_boxes"] = boxes[t]
        out[t] = res
    return out


def best_tau(sweep: dict[float, dict[str, Any]]) -> float:
    """Highest CorLoc; ties -> higher mean IoU, then smaller τ."""
    return max(sweep, key=lambda t: (sweep[t]["corloc"], sweep[t]["mean_iou"], -t))
