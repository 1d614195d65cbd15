"""Segmentation heads: they learn a separable toy task, upsample to the image size, and round-trip."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from explorer.eval.metrics import mean_iou
from explorer.heads import io
from explorer.heads.segmentation import (
    load_segmentation,
    logits,
    new_head,
    predict,
    predict_batch,
    save_segmentation,
    train_segmentation,
)

NAMES = ["background", "a", "b"]


def _toy(n: int = 12, grid: int = 4, d: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Patch features whose first 3 dims one-hot the class of the patch; labels at 4x the grid."""
    g = torch.Generator().manual_seed(seed)
    cls = torch.randint(0, 3, (n, grid, grid), generator=g)
    feats = torch.randn(n, grid, grid, d, generator=g) * 0.3
    feats[..., :3] += torch.nn.functional.one_hot(cls, 3).float() * 2
    masks = cls.repeat_interleave(4, 1).repeat_interleave(4, 2).to(torch.uint8)
    masks[:, :, 0] = 255  # a void column
    return feats, masks


@pytest.mark.parametrize("arch", ["linear", "conv"])
def test_head_learns_separable_task(arch: str) -> None:
    feats, masks = _toy()
    head = new_head(arch, feats.shape[-1], NAMES, hidden=16, layers=1)
    log = train_segmentation(head, feats, masks, epochs=30, batch_size=4, lr=5e-2 if arch == "linear" else 1e-2)
    assert log["history"][-1]["loss"] < log["history"][0]["loss"]
    preds = predict_batch(head, feats, tuple(masks.shape[-2:]))
    assert preds.dtype == np.uint8 and preds.shape == tuple(masks.shape)
    assert mean_iou(list(masks.numpy()), list(preds), 3)["miou"] > 0.9


def test_logits_are_bilinearly_upsampled_to_the_requested_size() -> None:
    head = new_head("linear", 8, NAMES)
    out = logits(head, torch.randn(2, 3, 5, 8), (48, 80))
    assert out.shape == (2, 3, 48, 80)
    # a constant grid gives constant logits: bilinear upsampling cannot invent structure
    flat = logits(head, torch.ones(1, 3, 5, 8), (12, 20))
    assert torch.allclose(flat, flat[..., :1, :1].expand_as(flat), atol=1e-5)


def test_predict_uses_the_original_image_size_of_features() -> None:
    head = new_head("linear", 8, NAMES)
    feats = SimpleNamespace(patches=torch.randn(3, 4, 8), image_size=(50, 70))
    out = predict(head, feats)
    assert out.shape == (50, 70) and out.dtype == np.uint8 and out.max() < 3


def test_best_validation_epoch_is_kept() -> None:
    feats, masks = _toy()
    head = new_head("linear", feats.shape[-1], NAMES)
    scores = iter([0.1, 0.9, 0.2])
    snapshots = []

    def on_epoch(epoch, loss, h):
        snapshots.append({k: v.clone() for k, v in h.module.state_dict().items()})
        return next(scores)

    log = train_segmentation(head, feats, masks, epochs=3, on_epoch=on_epoch)
    assert log["best_epoch"] == 2
    assert torch.equal(head.module.state_dict()["classifier.weight"], snapshots[1]["classifier.weight"])


@pytest.mark.parametrize("arch", ["linear", "conv"])
def test_round_trip_bit_identical_and_refusal(tmp_path, arch: str) -> None:
    feats, masks = _toy()
    head = new_head(arch, feats.shape[-1], NAMES, hidden=16, layers=2)
    train_segmentation(head, feats, masks, epochs=2, batch_size=4)
    bb = SimpleNamespace(model_id="m", fingerprint="f1", num_layers=2)
    head.card = io.make_card("segmentation", bb, NAMES, 64)
    save_segmentation(head, tmp_path)
    loaded = load_segmentation(tmp_path, bb)
    assert loaded.config == head.config and loaded.class_names == NAMES
    a = logits(head, feats, (16, 16))
    head.module.eval()
    with torch.inference_mode():
        assert torch.equal(logits(loaded, feats, (16, 16)), logits(head, feats, (16, 16)))
    assert a.shape[1] == 3
    with pytest.raises(io.HeadMismatchError):
        load_segmentation(tmp_path, SimpleNamespace(model_id="x", fingerprint="f2"))
