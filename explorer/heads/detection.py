"""Object detection on a frozen DINOv3 patch grid: train, predict, save, load.

Two heads share one API (``kind``):
- ``"dense"``: FCOS-style single-stage head (``detection_dense``) — converges in minutes on CPU;
- ``"detr"``: DETR-style set prediction with Hungarian matching (``detection_detr``).

Training runs on cached patch grids ``[N, h, w, d]`` (one backbone pass per image, done by the
caller or by :func:`extract_grids`, through ``Backbone.preprocess_many``: the pixels the app serves the
head on), so an epoch costs only the head. Boxes everywhere are xyxy in pixels of the image that was fed
to the backbone (``input_size``, (H, W)). Scoring (COCO mAP) lives in ``explorer.eval``; ``evaluate``
takes the metric as an argument so this layer never imports the one above it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from explorer.heads.base import CardFields
from explorer.heads.detection_dense import (
    DenseConfig,
    DenseDetector,
    decode_dense,
    dense_loss,
    dense_targets,
    flip_dense_targets,
)
from explorer.heads.detection_detr import DetrConfig, DetrHead, decode_detr, set_loss
from explorer.heads.detection_ops import box_xyxy_to_cxcywh

HEAD_NAME = "detection"
KINDS = ("dense", "detr")
# Per-kind training defaults. dense: 24 epochs at lr 1e-3 gave val mAP 0.35 on 4000 world scenes
# (+ mirrored copies) with a random-init backbone on an H100 (benchmarks/detection_heads.py).
# detr: DETR's usual long schedule and grad clip 0.1; 40 epochs were far from enough (val mAP 0.015).
DEFAULTS: dict[str, dict[str, float]] = {
    "dense": {"epochs": 24, "lr": 1e-3, "clip": 5.0},
    "detr": {"epochs": 150, "lr": 3e-4, "clip": 0.1},
}


@dataclass
class DetectionHead(CardFields):
    """A trained head plus what it needs to turn logits into boxes.

    ``arch`` is ``"dense"`` or ``"detr"``; ``kind`` (the head interface's) is always ``"detection"``.
    ``card`` is filled by :func:`save` / :func:`load_detection`; before that ``layer`` and ``size`` come from
    the training arguments.
    """

    arch: str
    model: nn.Module
    class_names: list[str]
    input_size: tuple[int, int]  # (H, W) of the training inputs
    recipe: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    trained_layer: int | None = None  # backbone block the grids came from (None = last)
    card: dict[str, Any] = field(default_factory=dict)
    default_kind = "detection"

    @property
    def config(self) -> DenseConfig | DetrConfig:
        return self.model.cfg  # type: ignore[return-value]

    @property
    def layer(self) -> int | None:
        return self.card.get("layer", self.trained_layer) if self.card else self.trained_layer

    @layer.setter
    def layer(self, value: int | None) -> None:  # set by the trainer once it knows the resolved block
        self.trained_layer = value
        if self.card:
            self.card["layer"] = value

    @property
    def size(self) -> int:
        return super().size if self.card else int(max(self.input_size))

    def predict(self, features: Any) -> dict[str, np.ndarray]:
        """Boxes (xyxy, pixels of ``features.input_size``), scores and labels of one image, low threshold
        (callers filter by score)."""
        return predict(self, features.patches, features.input_size, score_threshold=0.05)[0]


def build_model(kind: str, config: dict[str, Any]) -> nn.Module:
    """Module from a config dict (the card stores exactly this dict)."""
    if kind == "dense":
        return DenseDetector(DenseConfig(**config))
    if kind == "detr":
        return DetrHead(DetrConfig(**config))
    raise ValueError(f"unknown detection head kind {kind!r}; choose one of {KINDS}")


def _as_target_tensors(t: dict[str, Any], device: torch.device) -> dict[str, Tensor]:
    boxes = torch.as_tensor(np.asarray(t["boxes"], dtype=np.float32).reshape(-1, 4), device=device)
    labels = torch.as_tensor(np.asarray(t["labels"], dtype=np.int64).reshape(-1), device=device)
    return {"boxes": boxes, "labels": labels}


def _flip_targets(t: dict[str, Tensor], width: int) -> dict[str, Tensor]:
    b = t["boxes"].clone()
    b[:, 0], b[:, 2] = width - t["boxes"][:, 2], width - t["boxes"][:, 0]
    return {"boxes": b, "labels": t["labels"]}


class _Targets:
    """Training targets prepared once on the training device (they never change between epochs).

    dense: per-cell class and ltrb maps (the FCOS assignment); detr: normalised cxcywh boxes.
    """

    def __init__(self, model: nn.Module, kind: str, targets: Sequence[dict[str, Any]], grid: tuple[int, int],
                 input_size: tuple[int, int], device: torch.device) -> None:
        self.kind = kind
        tt = [_as_target_tensors(t, torch.device("cpu")) for t in targets]
        if kind == "dense":
            up = 2 if model.cfg.upsample else 1
            lab, ltrb = dense_targets(tt, grid[0] * up, grid[1] * up, model.stride, model.cfg.center_radius)
            self.labels, self.ltrb = lab.to(device), ltrb.to(device)
        else:
            H, W = input_size
            scale = torch.tensor([W, H, W, H], dtype=torch.float32)
            self.sets = [{"labels": t["labels"].to(device), "boxes_cxcywh": box_xyxy_to_cxcywh(t["boxes"] / scale).to(device)}
                         for t in tt]

    def loss(self, model: nn.Module, feats: Tensor, idx: Tensor, flip: Tensor | None) -> dict[str, Tensor]:
        out = model(feats)
        if self.kind == "dense":
            lab, ltrb = self.labels[idx], self.ltrb[idx]
            if flip is not None and flip.any():
                fl, fb = flip_dense_targets(lab[flip], ltrb[flip])
                lab, ltrb = lab.clone(), ltrb.clone()
                lab[flip], ltrb[flip] = fl, fb
            return dense_loss(model, out, lab, ltrb)  # type: ignore[arg-type]
        sets = [self.sets[int(i)] for i in idx]
        if flip is not None:
            sets = [_flip_set(t) if f else t for t, f in zip(sets, flip.tolist(), strict=True)]
        return set_loss(out, sets, model.cfg)  # type: ignore[arg-type]


def _flip_set(t: dict[str, Tensor]) -> dict[str, Tensor]:
    b = t["boxes_cxcywh"].clone()
    b[:, 0] = 1 - b[:, 0]
    return {"labels": t["labels"], "boxes_cxcywh": b}


def train_detection(
    features_train: Tensor,
    targets_train: Sequence[dict[str, Any]],
    num_classes: int | None = None,
    *,
    kind: str = "dense",
    class_names: Sequence[str] | None = None,
    input_size: tuple[int, int] = (224, 224),
    patch_size: int = 16,
    epochs: int | None = None,
    batch_size: int = 32,
    lr: float | None = None,
    weight_decay: float = 1e-4,
    config: dict[str, Any] | None = None,
    grid_flip: bool = False,
    seed: int = 0,
    device: torch.device | str | None = None,
    progress: bool = True,
    on_epoch: Callable[[int, float], None] | None = None,
) -> DetectionHead:
    """Train a detection head on cached patch grids.

    ``targets_train[i]`` has ``boxes`` (xyxy pixels of ``input_size``) and ``labels`` (0-based).
    ``grid_flip`` mirrors grid + boxes as augmentation (only approximately what the backbone would
    give for a mirrored image; extracting features of flipped images is the exact alternative).
    AdamW, linear warm-up then cosine decay, gradient clipping.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown detection head kind {kind!r}; choose one of {KINDS}")
    if len(features_train) != len(targets_train):
        raise ValueError(f"{len(features_train)} feature grids for {len(targets_train)} targets")
    if num_classes is None:
        num_classes = len(class_names) if class_names else 1 + max(
            (int(np.max(t["labels"])) for t in targets_train if len(t["labels"])), default=0)
    names = list(class_names) if class_names else [str(i) for i in range(num_classes)]
    defaults = DEFAULTS[kind]
    epochs = int(epochs if epochs is not None else defaults["epochs"])
    lr = float(lr if lr is not None else defaults["lr"])
    dev = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(seed)
    cfg = {"in_dim": int(features_train.shape[-1]), "num_classes": int(num_classes), "patch_size": patch_size,
           **(config or {})}
    model = build_model(kind, cfg).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    n = len(features_train)
    steps_per_epoch = max(1, math.ceil(n / batch_size))
    total = epochs * steps_per_epoch
    warm = max(1, min(total // 20, 200))

    def lr_at(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        p = (step - warm) / max(1, total - warm)
        return 0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * p))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    feats_all = features_train.to(dev) if dev.type == "cuda" else features_train
    prepared = _Targets(model, kind, targets_train, tuple(features_train.shape[1:3]), tuple(input_size), dev)
    gen = torch.Generator().manual_seed(seed)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc=f"train {kind} head", unit="step")
    t0 = time.time()
    history: list[float] = []
    model.train()
    for ep in range(epochs):
        perm = torch.randperm(n, generator=gen)
        run = 0.0
        for s in range(steps_per_epoch):
            idx = perm[s * batch_size:(s + 1) * batch_size].to(feats_all.device)
            feats = feats_all[idx].to(dev).float()
            flip = None
            if grid_flip:
                flip = (torch.rand(len(idx), generator=gen) < 0.5).to(dev)
                feats = torch.where(flip[:, None, None, None], feats.flip(2), feats)
            losses = prepared.loss(model, feats, idx.to(dev), flip)
            opt.zero_grad(set_to_none=True)
            losses["loss"].backward()
            nn.utils.clip_grad_norm_(model.parameters(), defaults["clip"])
            opt.step()
            sched.step()
            loss_value = float(losses["loss"].detach())
            run += loss_value
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{loss_value:.3f}", epoch=ep + 1)
        history.append(run / steps_per_epoch)
        if on_epoch is not None:
            on_epoch(ep, history[-1])
    if bar is not None:
        bar.close()
    model.eval().cpu()
    recipe = {
        "kind": kind, "epochs": epochs, "batch_size": batch_size, "lr": lr, "weight_decay": weight_decay,
        "optimizer": "AdamW, linear warm-up + cosine", "grad_clip": defaults["clip"], "grid_flip": grid_flip,
        "seed": seed, "num_train_images": n, "train_seconds": round(time.time() - t0, 1),
        "loss_history": [round(v, 4) for v in history],
        "classification": ("sigmoid focal (alpha 0.25, gamma 2)" if kind == "dense"
                           else f"softmax CE, no-object weight {model.cfg.eos_coef:.2g}"),
    }
    return DetectionHead(arch=kind, model=model, class_names=names, input_size=tuple(input_size), recipe=recipe)


@torch.no_grad()
def predict(
    head: DetectionHead,
    features_batch: Tensor,
    input_size: tuple[int, int] | None = None,
    score_threshold: float = 0.05,
    batch_size: int = 64,
) -> list[dict[str, np.ndarray]]:
    """Boxes (xyxy, input-image pixels, float32), scores and 0-based labels for each grid in the batch.

    ``features_batch`` may be one grid ``[h, w, d]`` or a batch ``[B, h, w, d]``.
    """
    if features_batch.dim() == 3:
        features_batch = features_batch[None]
    size = tuple(input_size) if input_size is not None else (
        features_batch.shape[1] * head.config.patch_size, features_batch.shape[2] * head.config.patch_size)
    model = head.model.eval()
    dev = next(model.parameters()).device
    res: list[dict[str, np.ndarray]] = []
    for i in range(0, len(features_batch), batch_size):
        feats = features_batch[i:i + batch_size].to(dev).float()
        out = model(feats)
        if head.arch == "dense":
            res += decode_dense(model, out, size, score_threshold=score_threshold)  # type: ignore[arg-type]
        else:
            res += decode_detr(out, size, score_threshold=score_threshold)
    return res


def evaluate(head: DetectionHead, features: Tensor, targets: Sequence[dict[str, Any]],
             input_size: tuple[int, int] | None = None, *, metric: Callable[..., dict[str, Any]]) -> dict[str, float]:
    """mAP@[.5:.95], AP50, AP75 of the head on cached grids; ``metric`` is
    ``explorer.eval.metrics.coco_detection_map`` (pycocotools), passed in by the caller."""
    preds = predict(head, features, input_size, score_threshold=0.001)
    m = metric([np.asarray(t["boxes"]) for t in targets], [np.asarray(t["labels"]) for t in targets],
               preds, num_classes=len(head.class_names))
    return {"map": float(m["map"]), "ap50": float(m["ap50"]), "ap75": float(m["ap75"])}


def detection_state(head: DetectionHead, backbone: Any, metrics: dict[str, Any] | None = None
                    ) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """(weights, card) of a head: the card records the pixel spec the grids were made with."""
    from explorer.heads.io import make_card

    card = make_card("detection", backbone, head.class_names, head.input_size, recipe=head.recipe,
                     metrics={**head.metrics, **(metrics or {})}, layer=head.layer, head_kind=head.arch,
                     head_config=head.config.to_dict())
    return head.model.state_dict(), card


def save(head: DetectionHead, directory: str | Path, backbone: Any, name: str = HEAD_NAME,
         metrics: dict[str, Any] | None = None) -> Path:
    """Safetensors weights + JSON card (``explorer.heads.io``), tied to ``backbone``'s fingerprint."""
    from explorer.heads.io import read_card, save_head

    state, card = detection_state(head, backbone, metrics)
    path = save_head(directory, name, state, card)
    head.card = read_card(directory, name)
    return path


def load_detection(directory: str | Path, backbone: Any, name: str = HEAD_NAME) -> DetectionHead:
    """Rebuild a saved head; refuses (``HeadMismatchError``) a head trained for another backbone."""
    from explorer.heads.io import read_head

    return detection_from_state(*read_head(directory, name, backbone))


def detection_from_state(state: dict[str, Tensor], card: dict[str, Any]) -> DetectionHead:
    """A detection head from its weights and card (from a folder or an uploaded one-file head)."""
    model = build_model(card["head_kind"], dict(card["head_config"]))
    model.load_state_dict(state)
    return DetectionHead(arch=card["head_kind"], model=model.eval(), class_names=list(card["class_names"]),
                         input_size=tuple(card["input_size"]), recipe=dict(card.get("recipe", {})),
                         metrics=dict(card.get("metrics", {})), trained_layer=card.get("layer"), card=card)


@torch.no_grad()
def extract_grids(backbone: Any, images: Sequence[np.ndarray], size: int = 224, batch_size: int = 32,
                  layer: int | None = None, progress: bool = False) -> Tensor:
    """Images -> float16 patch grids ``[N, h, w, d]`` through ``Backbone.preprocess_many`` (one pass each).

    Batches need one grid shape, so the images must share one aspect ratio (the world's square scenes
    do); boxes in image pixels are mapped to input pixels with :func:`scale_boxes`.
    """
    from PIL import Image

    out = []
    rng = range(0, len(images), batch_size)
    if progress:
        from tqdm.auto import tqdm

        rng = tqdm(rng, desc="backbone features", unit="batch")
    for i in rng:
        batch = [Image.fromarray(np.asarray(im)[..., :3]) for im in images[i:i + batch_size]]
        out.append(backbone.forward_batch(backbone.preprocess_many(batch, size), layer)[2].half())
    return torch.cat(out)


def scale_boxes(boxes: np.ndarray, image_hw: tuple[int, int], size: int | tuple[int, int]) -> np.ndarray:
    """Boxes in original image pixels -> pixels of the backbone input: ``size`` is the input's (H, W), or
    one int for a square ``size x size`` input."""
    h, w = image_hw
    ih, iw = (size, size) if isinstance(size, int) else size
    s = np.array([iw / w, ih / h, iw / w, ih / h], dtype=np.float32)
    return np.asarray(boxes, dtype=np.float32).reshape(-1, 4) * s
