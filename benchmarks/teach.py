"""Taught heads: speed of fit / predict and quality from a few examples; prints ONE JSON object.

    python benchmarks/teach.py [--world worlds/test] [--size 224] [--eval 200]

- ``fit_ms``: ``SegmentationTeacher.fit`` on 20 images of marks with ViT-S/16 shapes at 448 px (384-d, 28x28
  = 784 patches per image; 100 marked patches per image, two classes). Random features: the fit's cost
  depends on shapes only, so it is measured once, not per backbone.
- ``predict_ms``: median of ``patch_proba`` + bilinear upsampling + blend + legend for one 784-patch image
  at 640x640 display size (what a click or a new upload costs once the features are cached).
- Quality, for the bundled backbone AND its random-init twin (same config, random weights), on an offline
  world no head saw (``python -m explorer data make --out worlds/test --n 2000 --seed 12``; the shipped
  heads were trained on seed 11):
  ``seg_miou_{1,3,10}``: two-class (object / background) taught segmentation from 1, 3, 10 "painted"
  train-split scenes — painting simulated by sampling 20 patches entirely inside the ground-truth
  foreground and 20 entirely outside it per scene — scored as pixel mIoU (mean of the two IoUs) on the test
  split; ``cls_top1_{1,5,10}``: taught classification (CLS) with 1, 5, 10 train-split examples per class,
  top-1 on the test split (every scene has one dominant class); ``cls_avgpool_top1_*`` the same on CLS + mean
  patch token.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # sibling benchmark: MaskCut recall

from maskcut import cluttered_scenes, maskcut_recall  # noqa: E402

from explorer import viz  # noqa: E402
from explorer.backbone import Backbone, Features, load_backbone  # noqa: E402
from explorer.eval.datasets import guess_format, load_classification, load_segmentation  # noqa: E402
from explorer.heads.features_cache import extract_features, load_masks  # noqa: E402
from explorer.heads.taught import (  # noqa: E402
    ClassificationTeacher,
    SegmentationTeacher,
    TaughtSegmentationHead,
    fit_patch_classifier,
    upsample,
)


def Grid(patches: torch.Tensor, size: int, cls: torch.Tensor | None = None) -> Features:  # noqa: N802
    """`Features` of one cached (h, w, d) dataset grid at a square input of `size` px."""
    return Features.from_grid(patches, cls_token=cls, input_size=(size, size))


def speed(repeats: int = 20) -> dict[str, float]:
    rng = np.random.default_rng(0)
    d, hw = 384, 28
    x = rng.normal(size=(20 * 100, d)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    y = (np.arange(len(x)) % 100 < 40).astype(np.int64)  # 40 object + 60 background marks per image
    x[y == 1, 0] += 0.5
    fit = []
    for _ in range(3):
        t0 = time.perf_counter()
        coef, intercept = fit_patch_classifier(x, y, 2)
        fit.append((time.perf_counter() - t0) * 1e3)
    head = TaughtSegmentationHead(coef, intercept, ["object", "background"], {})
    feats = Grid(torch.tensor(rng.normal(size=(hw, hw, d)), dtype=torch.float32), 448)
    base = rng.integers(0, 255, (640, 640, 3), dtype=np.uint8)
    pal = np.asarray(viz.class_palette(3)[1:])
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        classes, _ = upsample(head.patch_proba(feats), (640, 640))
        viz.blend_classes(base, classes, pal, 0.55, skip=1)
        viz.class_legend_html(head.class_names, classes, pal, background=1)
        times.append((time.perf_counter() - t0) * 1e3)
    return {"fit_ms": round(statistics.median(fit), 1), "predict_ms": round(statistics.median(times), 2),
            "fit_rows": int(len(x))}


class Stub:
    model_id, fingerprint = "bench", "bench"

    def pixel_spec(self, size: int) -> dict:
        return {"size": size}


def seg_quality(backbone: Backbone, world: str, size: int, n_eval: int, rng_seed: int = 0) -> dict[str, float]:
    train, test = load_segmentation(world, "train"), load_segmentation(world, "test")
    n_paint = 10
    ftr = extract_features(backbone, train.image_paths[:n_paint], train.root, size, None, patches=True, progress=False)
    fte = extract_features(backbone, test.image_paths[:n_eval], test.root, size, None, patches=True, progress=False)
    hw = size // backbone.patch_size
    cover = load_masks(train.mask_paths[:n_paint], size).numpy()
    gts = load_masks(test.mask_paths[:n_eval], size).numpy()
    rng = np.random.default_rng(rng_seed)
    out = {}
    for n in (1, 3, 10):
        t = SegmentationTeacher()
        for i in range(n):
            fg = ((cover[i] > 0) & (cover[i] != 255)).astype(np.float32)
            frac = fg.reshape(hw, size // hw, hw, size // hw).mean(axis=(1, 3)).ravel()
            for cls_name, pool in (("object", np.flatnonzero(frac > 0.99)), ("background", np.flatnonzero(frac < 0.01))):
                if pool.size:
                    t.add_mark(f"s{i}", Grid(ftr.patches[i], size), rng.choice(pool, min(20, pool.size), replace=False),
                               cls_name)
        try:
            head = t.fit(Stub())
        except Exception:  # noqa: BLE001 - a scene with no clean object patch: report no score
            out[f"seg_miou_{n}"] = None
            continue
        inter, union = np.zeros(2), np.zeros(2)
        for i in range(len(gts)):
            pred = head.predict(Grid(fte.patches[i], size))  # 0 = object, 1 = background
            gt = gts[i]
            valid = gt != 255
            gfg, pfg = (gt > 0) & valid, (pred == 0) & valid
            for k, (g, p) in enumerate(((gfg, pfg), (~gfg & valid, ~pfg & valid))):
                inter[k] += (g & p).sum()
                union[k] += (g | p).sum()
        out[f"seg_miou_{n}"] = round(float(np.mean(inter / np.maximum(union, 1))), 4)
    return out


def cls_quality(backbone: Backbone, world: str, size: int, rng_seed: int = 0) -> dict[str, float]:
    fmt = guess_format(world, "probe")
    train, test = load_classification(world, "train", fmt), load_classification(world, "test", fmt)
    rng = np.random.default_rng(rng_seed)
    by_class = {k: np.flatnonzero(train.labels == k) for k in range(len(train.class_names))}
    pick = {k: rng.permutation(v)[:10] for k, v in by_class.items() if len(v)}
    used = sorted({int(i) for v in pick.values() for i in v})
    ftr = extract_features(backbone, [train.paths[i] for i in used], train.root, size, None, patches=False,
                           progress=False)
    row = {i: j for j, i in enumerate(used)}
    fte = extract_features(backbone, test.paths, test.root, size, None, patches=False, progress=False)
    out = {}
    for feature, prefix in (("cls", "cls_top1"), ("cls+avgpool", "cls_avgpool_top1")):
        for n in (1, 5, 10):
            t = ClassificationTeacher(feature=feature)
            for k, idx in pick.items():
                for i in idx[:n]:
                    j = row[int(i)]
                    t.add(f"tr{i}", Grid(ftr.patch_mean[j].reshape(1, 1, -1), size, ftr.cls[j]), train.class_names[k])
            head = t.fit(Stub())
            right = 0
            for i in range(len(test.paths)):
                p = head.predict(Grid(fte.patch_mean[i].reshape(1, 1, -1), size, fte.cls[i]))
                right += int(head.class_names[int(np.argmax(p))] == test.class_names[int(test.labels[i])])
            out[f"{prefix}_{n}"] = round(right / len(test.paths), 4)
    out["cls_classes"] = len(pick)
    return out


def random_twin(bundled: Backbone) -> Backbone:
    from transformers import DINOv3ViTModel

    torch.manual_seed(0)
    return Backbone.from_model(DINOv3ViTModel(bundled.model.config).eval(), "random-init-twin")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--world", default="worlds/test")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--eval", type=int, default=200, help="test-split scenes scored for segmentation")
    p.add_argument("--maskcut-scenes", type=int, default=40, help="cluttered scenes (world seed 12) for MaskCut recall")
    a = p.parse_args(argv)
    torch.set_num_threads(2)
    result: dict[str, object] = {"world": a.world, "size": a.size, **speed()}
    bundled = load_backbone("bundled").backbone
    scenes = cluttered_scenes(12, a.maskcut_scenes, 224)
    for name, bb in (("bundled", bundled), ("random_init", random_twin(bundled))):
        result[name] = {**seg_quality(bb, a.world, a.size, a.eval), **cls_quality(bb, a.world, a.size)}
        for n in (1, 3, 6):  # MaskCut instance recall at IoU >= 0.5 (N = 1 is TokenCut)
            result[name][f"maskcut_recall_{n}"] = round(maskcut_recall(bb, scenes, n, 0.15, 224), 4)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
