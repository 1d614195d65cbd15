"""``python -m explorer train-head detection --data DIR [--format coco|voc] [--kind dense|detr] ...``.

Reads boxes through ``explorer.eval.datasets.load_boxes`` (VOC XML or COCO JSON, real or offline
world), extracts patch grids once (disk-cached by ``features_cache``), trains the head on the cached
grids, scores the val split exactly as ``python -m explorer eval detection`` does (pycocotools, boxes
at each image's original resolution) and writes safetensors + card.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from explorer.cli.common import (
    common_parser,
    detection_predictor,
    extraction_kwargs,
    heads_out_dir,
    open_backbone,
    split_or_none,
)


def _image_hw(path: Path) -> tuple[int, int]:
    from PIL import Image

    with Image.open(path) as im:  # reads the header only
        return im.height, im.width


def _targets(data: Any, size: int) -> list[dict[str, np.ndarray]]:
    """Boxes scaled from each image's own size to the square backbone input."""
    from explorer.heads.detection import scale_boxes

    return [{"boxes": scale_boxes(b, _image_hw(p), size), "labels": np.asarray(lab, np.int64)}
            for p, b, lab in zip(data.image_paths, data.boxes, data.labels, strict=True)]


def train_detection_main(argv: list[str]) -> int:
    from explorer.eval.datasets import guess_format, load_boxes
    from explorer.eval.tasks import evaluate_detection
    from explorer.heads.detection import DEFAULTS, KINDS, save, train_detection
    from explorer.heads.features_cache import extract_features

    p = common_parser("detection", "Detection head (dense FCOS-style or DETR-style) on the frozen patch grid.")
    p.add_argument("--kind", choices=KINDS, default="dense",
                   help="dense: per-cell focal/GIoU/centerness head (fast, the shipped winner); "
                        "detr: set prediction with Hungarian matching")
    p.add_argument("--epochs", type=int, default=None,
                   help=f"default {int(DEFAULTS['dense']['epochs'])} (dense) / {int(DEFAULTS['detr']['epochs'])} (detr)")
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--train-batch", type=int, default=32, help="head training batch size")
    p.add_argument("--grid-flip", action="store_true", help="mirror feature grids + boxes as augmentation")
    p.add_argument("--config", default="{}", help="JSON overrides of DenseConfig / DetrConfig (e.g. '{\"hidden\": 192}')")
    a = p.parse_args(argv)
    fmt = a.format or guess_format(a.data, "detection")
    if fmt not in ("voc", "coco"):
        raise SystemExit(f"error: detection reads VOC or COCO boxes, not {fmt!r}; use --format voc|coco")
    backbone = open_backbone(a.model)
    train = load_boxes(a.data, a.train_split, fmt)
    val = split_or_none(load_boxes, a.data, a.val_split, fmt) if a.val_split else None
    kw = extraction_kwargs(a, patches=True)
    ftr = extract_features(backbone, train.image_paths, train.root, desc=f"{a.train_split} features", **kw)
    head = train_detection(ftr.patches, _targets(train, a.size), len(train.class_names), kind=a.kind,
                           class_names=train.class_names, input_size=(a.size, a.size),
                           patch_size=backbone.patch_size, epochs=a.epochs, batch_size=a.train_batch, lr=a.lr,
                           config=json.loads(a.config), grid_flip=a.grid_flip, seed=a.seed,
                           progress=not a.no_progress)
    head.layer = backbone.resolve_layer(a.layer)
    head.recipe.update({"train_split": a.train_split, "data": str(Path(a.data)), "format": fmt,
                        "resize": f"square {a.size}x{a.size} bicubic", "layer": head.layer})
    metrics: dict[str, Any] = {}
    if val is not None:  # the protocol of `python -m explorer eval detection`, on the cached grids
        m = evaluate_detection(backbone, head, val, detection_predictor(), a.size, batch_size=a.batch_size,
                               cache_dir=a.cache_dir, progress=not a.no_progress)
        metrics[a.val_split] = {**{k: m[k] for k in ("map", "ap50", "ap75")}, "n_images": len(val.image_paths),
                                "note": "COCO mAP at each image's original resolution (pycocotools)"}
    path = save(head, heads_out_dir(a.out, backbone), backbone, name=a.name, metrics=metrics)
    summary: dict[str, Any] = {"head": str(path), "kind": a.kind, "train_seconds": head.recipe["train_seconds"]}
    if metrics:
        summary.update({f"{a.val_split}_{k}": v for k, v in metrics[a.val_split].items() if k in ("map", "ap50", "ap75")})
    print(json.dumps(summary))
    return 0
