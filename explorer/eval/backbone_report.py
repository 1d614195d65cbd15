"""Frozen-feature quality of a backbone against the same architecture at random initialisation.

One `{"pretrained": x, "random": y}` pair per key (probe_top1, knn_top1, seg_miou, corloc), written
to `pretrained/<name>/metrics.json`. Both backbones see exactly the same scenes, pixels and
protocols, so the difference is what self-supervised pretraining bought. Scenes come straight from
the offline world generator with seeds that pretraining never used.

    python -m explorer report --model pretrained/dinov3-explorer-tiny --json metrics.json
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from explorer.backbone import Backbone
from explorer.data.classes import CLASS_NAMES
from explorer.data.world import Scene, scenes_for
from explorer.eval import metrics as M

EVAL_SEED = 7_001  # pretraining uses other seeds; see configs/*.json
TAUS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


@dataclass
class Split:
    scenes: list[Scene]
    cls: torch.Tensor  # (N, d)
    patches: torch.Tensor  # (N, h, w, d)


def extract(backbone: Backbone, scenes: list[Scene], size: int, batch_size: int = 32) -> Split:
    """One batched forward per chunk, on the pixels the app makes (`Backbone.preprocess_many`)."""
    cls_parts, patch_parts = [], []
    for start in range(0, len(scenes), batch_size):
        images = [Image.fromarray(s.image) for s in scenes[start : start + batch_size]]
        cls_token, _, patches = backbone.forward_batch(backbone.preprocess_many(images, size))
        cls_parts.append(cls_token)
        patch_parts.append(patches.half())
    return Split(scenes, torch.cat(cls_parts), torch.cat(patch_parts))


def knn_top1(train: Split, test: Split, k: int = 20, temperature: float = 0.07) -> float:
    """Weighted k-NN on cosine similarity of CLS tokens (DINO's protocol)."""
    a = torch.nn.functional.normalize(train.cls, dim=1)
    b = torch.nn.functional.normalize(test.cls, dim=1)
    labels = torch.tensor([s.label for s in train.scenes])
    sims, idx = (b @ a.T).topk(k, dim=1)
    votes = torch.zeros(len(test.scenes), len(CLASS_NAMES))
    votes.scatter_add_(1, labels[idx], (sims / temperature).exp())
    truth = torch.tensor([s.label for s in test.scenes])
    return float((votes.argmax(1) == truth).float().mean())


def probe_top1(train: Split, test: Split) -> float:
    from explorer.heads.probe import predict, train_probe

    head = train_probe(train.cls.numpy(), np.array([s.label for s in train.scenes]), CLASS_NAMES)
    pred = predict(head, test.cls.numpy())
    return float(np.mean(pred == np.array([s.label for s in test.scenes])))


def seg_miou(train: Split, test: Split, epochs: int = 15) -> float:
    from explorer.heads.segmentation import new_head, predict_batch, train_segmentation

    names = ["background", *CLASS_NAMES]
    head = new_head("linear", train.patches.shape[-1], names)
    masks = torch.from_numpy(np.stack([s.seg for s in train.scenes]))
    # train against labels at 4x the patch grid (nearest), as `train-head segmentation` does: the loss
    # at full resolution costs 16x more and a linear head cannot use the extra detail anyway
    label_size = 4 * train.patches.shape[1]
    masks = torch.nn.functional.interpolate(masks[:, None].float(), size=(label_size, label_size), mode="nearest")
    train_segmentation(head, train.patches.float(), masks[:, 0].to(torch.uint8), epochs=epochs, batch_size=32, lr=1e-3)
    size = tuple(test.scenes[0].seg.shape)
    preds = [p for i in range(0, len(test.scenes), 64)
             for p in predict_batch(head, test.patches[i : i + 64].float(), size)]
    return float(M.mean_iou([s.seg for s in test.scenes], preds, len(names))["miou"])


def corloc_sweep(split: Split, patch_size: int) -> dict[float, float]:
    from explorer.analysis.tokencut import box_to_pixels, tokencut_sweep

    hits = {t: [] for t in TAUS}
    gts = [np.array([inst.box_xyxy for inst in s.instances], np.float64) for s in split.scenes]
    for patches, scene in zip(split.patches, split.scenes, strict=True):
        image_hw = scene.image.shape[:2]
        input_hw = (patches.shape[0] * patch_size, patches.shape[1] * patch_size)
        for tau, result in zip(TAUS, tokencut_sweep(patches.float().numpy(), TAUS), strict=True):
            hits[tau].append(np.asarray(box_to_pixels(result.box, patch_size, input_hw, image_hw)))
    return {t: float(M.corloc(hits[t], gts)["corloc"]) for t in TAUS}


def evaluate(backbone: Backbone, n_train: int, n_val: int, n_test: int, size: int) -> dict[str, Any]:
    scenes = scenes_for(EVAL_SEED, range(n_train + n_val + n_test), size=224)
    train = extract(backbone, scenes[:n_train], size)
    val = extract(backbone, scenes[n_train : n_train + n_val], size)
    test = extract(backbone, scenes[n_train + n_val :], size)
    val_sweep = corloc_sweep(val, backbone.patch_size)
    best = max(val_sweep, key=lambda t: (val_sweep[t], -t))
    test_sweep = corloc_sweep(test, backbone.patch_size)
    return {
        "probe_top1": probe_top1(train, test),
        "knn_top1": knn_top1(train, test),
        "seg_miou": seg_miou(train, test),
        "corloc": test_sweep[best],
        "corloc_best_tau": best,
        "corloc_test_sweep": test_sweep,
    }


def random_twin(backbone: Backbone, seed: int = 0) -> Backbone:
    """The same architecture, freshly initialised: the floor every metric must clear."""
    from transformers import DINOv3ViTConfig, DINOv3ViTModel

    torch.manual_seed(seed)
    config = DINOv3ViTConfig(**{k: v for k, v in backbone.config.items() if not k.startswith("_")})
    return Backbone.from_model(DINOv3ViTModel(config), "random-init", mean=backbone.mean, std=backbone.std)
