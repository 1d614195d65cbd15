"""``python -m explorer train-head <task> --data DIR ...``: train a head on a frozen backbone.

A task is registered by ONE line in ``TRAINERS``: ``name -> "module:function"``, where the function
takes the remaining argv (``list[str]``) and returns an exit code. Trainers build their parser with
``explorer.cli.common.common_parser`` so every head accepts the same core flags, and use
``open_backbone`` / ``heads_out_dir`` so heads land in ``pretrained_heads/<backbone-slug>/`` by default.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from explorer.cli.common import (
    clean_metrics,
    common_parser,
    extraction_kwargs,
    heads_out_dir,
    open_backbone,
    split_or_none,
)

TRAINERS: dict[str, str] = {
    "probe": "explorer.cli.train_head:train_probe_main",
    "segmentation": "explorer.cli.train_head:train_segmentation_main",
    "detection": "explorer.cli.train_detection:train_detection_main",
}


# --------------------------------------------------------------------------- probe
def train_probe_main(argv: list[str]) -> int:
    from explorer.eval.datasets import guess_format, load_classification
    from explorer.eval.metrics import classification_metrics
    from explorer.heads import io
    from explorer.heads.features_cache import extract_features
    from explorer.heads.probe import FEATURES, predict_proba, probe_input, save_probe, train_probe

    p = common_parser("probe", "Linear probe (multinomial logistic regression) on the CLS token.")
    p.add_argument("--C", default="1.0",
                   help="inverse L2 strength; a comma list (e.g. 0.1,1,10) is searched on the val split")
    p.add_argument("--max-iter", type=int, default=1000)
    p.add_argument("--feature", choices=FEATURES, default="cls",
                   help="probe input: the CLS token (the report) or CLS + mean patch token (DINOv2 variant)")
    a = p.parse_args(argv)
    fmt = a.format or guess_format(a.data, "probe")
    backbone = open_backbone(a.model)
    train = load_classification(a.data, a.train_split, fmt)
    val = split_or_none(load_classification, a.data, a.val_split, fmt) if a.val_split else None
    kw = extraction_kwargs(a, patches=False)
    ftr = extract_features(backbone, train.paths, train.root, desc=f"{a.train_split} features", **kw)
    fval = extract_features(backbone, val.paths, val.root, desc=f"{a.val_split} features", **kw) if val else None
    xtr = probe_input(a.feature, ftr.cls, ftr.patch_mean)
    xval = probe_input(a.feature, fval.cls, fval.patch_mean) if fval is not None else None
    cs = [float(c) for c in str(a.C).split(",") if c.strip()]
    best, best_top1, search = None, -1.0, {}
    for c in cs:
        head = train_probe(xtr, train.labels, train.class_names, C=c, max_iter=a.max_iter, feature=a.feature)
        if fval is None:
            best = head
            break
        top1 = float((predict_proba(head, xval).argmax(1) == val.labels).mean())
        search[str(c)] = top1
        if top1 > best_top1:
            best, best_top1, best_c = head, top1, c
    assert best is not None
    chosen_c = best_c if fval is not None else cs[0]
    metrics: dict[str, Any] = {}
    if fval is not None:
        m = classification_metrics(val.labels, predict_proba(best, xval), best.class_names)
        m.pop("y_pred")
        metrics[a.val_split] = clean_metrics(m)
    train_acc = float((predict_proba(best, xtr).argmax(1) == train.labels).mean())
    recipe = {
        "method": "multinomial logistic regression on standardised CLS features (sklearn lbfgs, L2)",
        "C": chosen_c, "C_search": search or None, "max_iter": a.max_iter, "feature": a.feature,
        "train_split": a.train_split, "n_train": len(train.paths), "train_top1": train_acc,
        "data": str(Path(a.data)), "format": fmt, "resize": f"square {a.size}x{a.size} bicubic",
    }
    best.card = io.make_card("probe", backbone, best.class_names, a.size, recipe, metrics,
                             layer=backbone.resolve_layer(a.layer))
    out = heads_out_dir(a.out, backbone)
    path = save_probe(best, out, a.name)
    summary = {"head": str(path), "train_top1": train_acc, "C": chosen_c}
    if metrics:
        summary.update({f"{a.val_split}_top1": metrics[a.val_split]["top1"],
                        f"{a.val_split}_top5": metrics[a.val_split]["top5"]})
    print(json.dumps(summary))
    return 0


# --------------------------------------------------------------------------- segmentation
def train_segmentation_main(argv: list[str]) -> int:
    import torch

    from explorer.eval.datasets import load_segmentation
    from explorer.eval.metrics import iou_from_confusion, segmentation_confusion
    from explorer.eval.tasks import evaluate_segmentation
    from explorer.heads import io
    from explorer.heads.features_cache import extract_features, load_masks
    from explorer.heads.segmentation import new_head, predict_batch, save_segmentation, train_segmentation

    p = common_parser("segmentation", "Linear or light conv decoder on the frozen patch grid.")
    p.add_argument("--arch", choices=("linear", "conv"), default="conv")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--train-batch", type=int, default=8, help="head training batch size")
    p.add_argument("--hidden", type=int, default=128, help="conv decoder width")
    p.add_argument("--layers", type=int, default=2, help="conv decoder depth (3x3 conv+BN+GELU blocks)")
    p.add_argument("--label-scale", type=int, default=4,
                   help="the training loss compares logits and labels (nearest-resized) at this many times "
                        "the patch grid (4: 56 px labels for a 224 px input); evaluation is at full resolution")
    a = p.parse_args(argv)
    if a.format not in (None, "voc"):
        raise SystemExit("error: segmentation reads the VOC layout (SegmentationClass PNGs); use --format voc")
    torch.manual_seed(a.seed)
    backbone = open_backbone(a.model)
    label_size = a.label_scale * (a.size // backbone.patch_size)
    train = load_segmentation(a.data, a.train_split)
    val = split_or_none(load_segmentation, a.data, a.val_split) if a.val_split else None
    kw = extraction_kwargs(a, patches=True)
    ftr = extract_features(backbone, train.image_paths, train.root, desc=f"{a.train_split} features", **kw)
    masks = load_masks(train.mask_paths, label_size)
    k = len(train.class_names)
    masks = torch.where((masks < k) | (masks == 255), masks, torch.full_like(masks, 255))
    head = new_head(a.arch, backbone.hidden_size, train.class_names, a.hidden, a.layers)
    on_epoch = None
    if val is not None:
        fval = extract_features(backbone, val.image_paths, val.root, desc=f"{a.val_split} features", **kw)
        vmasks = load_masks(val.mask_paths, label_size).numpy()

        def on_epoch(epoch: int, loss: float, h: Any) -> float:
            cm = sum(segmentation_confusion(np.where(g < k, g, 255), pr, k)
                     for g, pr in zip(vmasks, predict_batch(h, fval.patches, (label_size, label_size)),
                                      strict=True))
            return iou_from_confusion(cm)[1]
    log = train_segmentation(head, ftr.patches, masks, epochs=a.epochs, batch_size=a.train_batch, lr=a.lr,
                             weight_decay=a.weight_decay, seed=a.seed, on_epoch=on_epoch,
                             progress=not a.no_progress)
    metrics: dict[str, Any] = {}
    head.card = {"layer": backbone.resolve_layer(a.layer), "input_size": a.size}  # for evaluate_segmentation
    if val is not None:
        m = evaluate_segmentation(backbone, head, val, a.size, a.cache_dir, progress=not a.no_progress)
        metrics[a.val_split] = clean_metrics(m)
    recipe = {
        "arch": a.arch, "epochs": a.epochs, "lr": a.lr, "weight_decay": a.weight_decay, "optimizer": "AdamW",
        "schedule": "cosine", "batch_size": a.train_batch, "loss": "cross-entropy, ignore_index 255",
        "label_size": label_size, "label_scale": a.label_scale, "upsampling": "bilinear", "train_split": a.train_split,
        "n_train": len(train.image_paths), "data": str(Path(a.data)), "format": "voc",
        "resize": f"square {a.size}x{a.size} bicubic", "best_epoch": log["best_epoch"],
        "selection": f"best {a.val_split} mIoU (at label size)" if val is not None else "last epoch",
        "final_train_loss": log["history"][-1]["loss"] if log["history"] else None,
    }
    head.card = io.make_card("segmentation", backbone, train.class_names, a.size, recipe, metrics,
                             layer=backbone.resolve_layer(a.layer))
    path = save_segmentation(head, heads_out_dir(a.out, backbone), a.name)
    summary: dict[str, Any] = {"head": str(path), "best_epoch": log["best_epoch"]}
    if metrics:
        summary[f"{a.val_split}_miou"] = metrics[a.val_split]["miou"]
    print(json.dumps(summary))
    return 0


# --------------------------------------------------------------------------- dispatch
def resolve(task: str) -> Any:
    module, func = TRAINERS[task].split(":")
    return getattr(importlib.import_module(module), func)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help"} or argv[0] not in TRAINERS:
        print("usage: python -m explorer train-head {" + ",".join(TRAINERS) + "} --data DIR [options]\n"
              "       python -m explorer train-head <task> --help")
        return 0 if argv and argv[0] in {"-h", "--help"} else 2
    return int(resolve(argv[0])(argv[1:]) or 0)
