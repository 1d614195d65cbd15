"""The k-NN monitor: the pixels it embeds are the app's, and its vote is DINO's weighted k-NN."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from explorer.backbone import Backbone
from explorer.ssl.knn import embed_cls, knn_top1
from tests.conftest import make_tiny_model


def test_embeddings_are_the_apps_cls_tokens() -> None:
    """`embed_cls` on a uint8 pool equals the CLS token `Backbone.extract` gives the same image at the
    same size (the app's path: PIL bicubic, aspect kept, ImageNet mean/std), normalised."""
    model = make_tiny_model(seed=3)
    images = np.random.default_rng(0).integers(0, 256, (3, 48, 48, 3), dtype=np.uint8)
    got = embed_cls(model, torch.from_numpy(images), 32, torch.device("cpu"), batch=2)
    backbone = Backbone.from_model(model, "tiny-knn")
    want = torch.stack([backbone.extract(Image.fromarray(im), size=32).cls for im in images])
    torch.testing.assert_close(got, F.normalize(want, dim=-1), atol=1e-5, rtol=1e-5)
    assert model.training is False  # the monitor restores the mode it found (eval here)


def test_knn_votes_by_weighted_neighbours() -> None:
    bank = F.normalize(torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]]), dim=-1)
    labels = torch.tensor([0, 0, 1])
    query = F.normalize(torch.tensor([[1.0, 0.05], [0.1, 1.0]]), dim=-1)
    assert knn_top1(bank, labels, query, torch.tensor([0, 1]), k=2) == 1.0
    # k = 3 with a sharp temperature still follows the nearest neighbours, not the majority
    assert knn_top1(bank, labels, query, torch.tensor([0, 1]), k=3, temperature=0.01) == 1.0
    assert knn_top1(bank, labels, query, torch.tensor([1, 0]), k=2) == pytest.approx(0.0)
