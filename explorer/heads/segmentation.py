"""Semantic segmentation heads on the frozen patch grid, as in the report (section 4.3, Table 9).

Two heads, both resolution-agnostic (so a head trained at 224 px runs on any aspect ratio the app
feeds it):
- ``linear``: BatchNorm + 1x1 conv per patch (the DINOv2/3 linear segmentation protocol);
- ``conv``: a light decoder, 1x1 projection then a few 3x3 conv + BatchNorm + GELU layers and a
  1x1 classifier.
Logits live on the patch grid and are upsampled bilinearly to the label size. Loss: cross-entropy
with ``ignore_index=255`` (VOC void). Optimiser: AdamW. Class 0 is background.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from explorer.heads import io
from explorer.heads.base import CardFields

NAME = "segmentation"
IGNORE_INDEX = 255


class LinearSegHead(nn.Module):
    """Per-patch linear classifier; BatchNorm makes it insensitive to the feature scale of each layer."""

    def __init__(self, in_dim: int, num_classes: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(in_dim)
        self.classifier = nn.Conv2d(in_dim, num_classes, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, d, h, w) -> (B, K, h, w)
        return self.classifier(self.norm(x))


class ConvDecoderHead(nn.Module):
    """Light conv decoder: a 1x1 projection to ``hidden`` channels, then ``layers`` x (3x3 conv,
    BatchNorm, GELU) for spatial context, then a 1x1 classifier. Projecting first keeps the 3x3
    convolutions cheap whatever the backbone width (CPU training in minutes)."""

    def __init__(self, in_dim: int, num_classes: int, hidden: int = 128, layers: int = 2) -> None:
        super().__init__()
        blocks: list[nn.Module] = [nn.BatchNorm2d(in_dim), nn.Conv2d(in_dim, hidden, 1, bias=False),
                                   nn.BatchNorm2d(hidden), nn.GELU()]
        for _ in range(layers):
            blocks += [nn.Conv2d(hidden, hidden, 3, padding=1, bias=False), nn.BatchNorm2d(hidden), nn.GELU()]
        self.body = nn.Sequential(*blocks)
        self.classifier = nn.Conv2d(hidden, num_classes, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.body(x))


def build_module(config: dict[str, Any]) -> nn.Module:
    """Recreate a head module from its card's ``config`` (arch, in_dim, num_classes, hidden, layers)."""
    arch = config["arch"]
    if arch == "linear":
        return LinearSegHead(int(config["in_dim"]), int(config["num_classes"]))
    if arch == "conv":
        return ConvDecoderHead(
            int(config["in_dim"]), int(config["num_classes"]), int(config.get("hidden", 128)),
            int(config.get("layers", 2)),
        )
    raise ValueError(f"unknown segmentation arch {arch!r} (expected 'linear' or 'conv')")


@dataclass
class SegHead(CardFields):
    """A segmentation head plus what is needed to use it: classes (0 = background) and its card."""

    module: nn.Module
    config: dict[str, Any]
    class_names: list[str]  # index i <-> label value i; class_names[0] == "background"
    card: dict[str, Any] = field(default_factory=dict)
    default_kind = "segmentation"

    def predict(self, features: Any) -> np.ndarray:
        """Class map ``uint8[H, W]`` at the image's original ``features.image_size``."""
        return predict(self, features)


def new_head(arch: str, in_dim: int, class_names: Sequence[str], hidden: int = 128, layers: int = 2) -> SegHead:
    config = {"arch": arch, "in_dim": int(in_dim), "num_classes": len(class_names)}
    if arch == "conv":
        config.update(hidden=int(hidden), layers=int(layers))
    return SegHead(build_module(config), config, list(class_names))


def _grid_to_nchw(patches: torch.Tensor) -> torch.Tensor:
    """(h, w, d) or (B, h, w, d) -> (B, d, h, w) float32."""
    x = patches if patches.ndim == 4 else patches.unsqueeze(0)
    return x.permute(0, 3, 1, 2).float().contiguous()


def logits(head: SegHead, patches: torch.Tensor, out_size: tuple[int, int]) -> torch.Tensor:
    """Logits ``(B, K, H, W)`` bilinearly upsampled from the patch grid to ``out_size``."""
    x = _grid_to_nchw(torch.as_tensor(patches))
    device = next(head.module.parameters()).device
    y = head.module(x.to(device))
    return F.interpolate(y, size=tuple(int(s) for s in out_size), mode="bilinear", align_corners=False)


@torch.inference_mode()
def predict(head: SegHead, features: Any, out_size: tuple[int, int] | None = None) -> np.ndarray:
    """Class map ``uint8[H, W]`` (0 = background) for one image.

    ``features`` is a ``Features`` (output size defaults to the original ``image_size``) or a
    patch grid ``(h, w, d)`` with an explicit ``out_size``.
    """
    patches = features.patches if hasattr(features, "patches") else features
    if out_size is None:
        if not hasattr(features, "image_size"):
            raise ValueError("out_size is required when passing a bare patch grid")
        out_size = features.image_size
    was_training = head.module.training
    head.module.eval()
    try:
        out = logits(head, patches, out_size)[0].argmax(0)
    finally:
        head.module.train(was_training)
    return out.to(torch.uint8).cpu().numpy()


@torch.inference_mode()
def predict_batch(head: SegHead, patches: torch.Tensor, out_size: tuple[int, int], chunk: int = 16) -> np.ndarray:
    """Class maps ``uint8[B, H, W]`` for same-size grids ``(B, h, w, d)``, ``chunk`` grids at a time
    (full-size logits of a whole split would not fit in memory: B x K x H x W floats)."""
    head.module.eval()
    parts = [logits(head, patches[i : i + chunk], out_size).argmax(1).to(torch.uint8).cpu().numpy()
             for i in range(0, len(patches), chunk)]
    return np.concatenate(parts) if parts else np.zeros((0, *out_size), np.uint8)


def train_segmentation(
    head: SegHead,
    patches: torch.Tensor,
    masks: torch.Tensor,
    epochs: int = 20,
    batch_size: int = 8,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    seed: int = 0,
    on_epoch: Callable[[int, float, SegHead], float | None] | None = None,
    progress: bool = False,
    device: torch.device | str | None = None,
) -> dict[str, Any]:
    """Train ``head`` on cached patch grids ``(N, h, w, d)`` against masks ``(N, H, W)`` (uint8/long).

    ``on_epoch(epoch, mean_loss, head)`` may return a validation score; the weights with the best
    score are kept (the report selects the checkpoint with the best validation mIoU). Returns a log.
    Trains on ``device`` (default: CUDA when present; the cached patches stay in host memory and go over
    one batch at a time) and hands the head back on the CPU, where the app and ``save_segmentation`` use it.
    """
    from tqdm.auto import tqdm

    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    module = head.module
    dev = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    module.to(dev)
    opt = torch.optim.AdamW(module.parameters(), lr=lr, weight_decay=weight_decay)
    n = patches.shape[0]
    steps = epochs * max(1, (n + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, steps))
    masks = masks.long()
    out_size = tuple(masks.shape[-2:])
    best_score, best_state, best_epoch = -float("inf"), None, -1
    history: list[dict[str, float]] = []
    for epoch in tqdm(range(epochs), desc="segmentation", disable=not progress):
        module.train()
        order = torch.randperm(n, generator=gen)
        total, count = 0.0, 0
        for i in range(0, n, batch_size):
            idx = order[i : i + batch_size]
            if len(idx) < 2 and n >= 2:  # BatchNorm needs more than one sample per batch
                continue
            out = logits(head, patches[idx], out_size)
            loss = F.cross_entropy(out, masks[idx].to(out.device), ignore_index=IGNORE_INDEX)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
            count += len(idx)
        mean_loss = total / max(count, 1)
        row = {"epoch": epoch + 1, "loss": mean_loss}
        if on_epoch is not None:
            score = on_epoch(epoch, mean_loss, head)
            if score is not None:
                row["val"] = float(score)
                if score > best_score:
                    best_score, best_epoch = float(score), epoch + 1
                    best_state = {k: v.detach().clone() for k, v in module.state_dict().items()}
        history.append(row)
    if best_state is not None:
        module.load_state_dict(best_state)
    module.to("cpu").eval()
    return {"history": history, "best_epoch": best_epoch, "best_val": best_score if best_state else None}


def save_segmentation(head: SegHead, directory: str | Path, name: str = NAME) -> Path:
    if not head.card:
        raise ValueError("segmentation head has no card; build one with explorer.heads.io.make_card")
    card = dict(head.card)
    card["class_names"] = list(head.class_names)
    card["config"] = dict(head.config)
    state = {k: v for k, v in head.module.state_dict().items() if not k.endswith("num_batches_tracked")}
    return io.save_head(directory, name, state, card)


def load_segmentation(directory: str | Path, backbone: Any, name: str = NAME) -> SegHead:
    """Load a saved head; raises ``HeadMismatchError`` for a head trained on another backbone."""
    return segmentation_from_state(*io.read_head(directory, name, backbone))


def segmentation_from_state(state: dict[str, Any], card: dict[str, Any]) -> SegHead:
    """A segmentation head from its weights and card (from a folder or an uploaded one-file head)."""
    module = build_module(card["config"])
    missing, unexpected = module.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise ValueError(f"segmentation weights do not match their card: missing {missing}, unexpected {unexpected}")
    module.eval()
    return SegHead(module, dict(card["config"]), list(card["class_names"]), card)
