"""The pretrained-vs-random report: k-NN on CLS and the random-init twin."""

from __future__ import annotations

import numpy as np
import torch

from explorer.backbone import Backbone
from explorer.eval.backbone_report import Split, knn_top1, random_twin
from tests.conftest import make_tiny_model


class _Scene:
    def __init__(self, label: int) -> None:
        self.label = label


def _split(labels: list[int], centres: torch.Tensor, noise: float, seed: int) -> Split:
    g = torch.Generator().manual_seed(seed)
    cls = centres[labels] + noise * torch.randn(len(labels), centres.shape[1], generator=g)
    return Split([_Scene(label) for label in labels], cls, torch.zeros(len(labels), 1, 1, 1))


def test_knn_separates_clustered_classes_and_fails_on_shuffled_labels() -> None:
    centres = torch.eye(8) * 5
    labels = [i % 8 for i in range(80)]
    train, test = _split(labels, centres, 0.3, 0), _split(labels[:40], centres, 0.3, 1)
    assert knn_top1(train, test, k=5) == 1.0
    shuffled = Split([_Scene(label) for label in np.random.default_rng(0).permutation(labels)], train.cls, train.patches)
    assert knn_top1(shuffled, test, k=5) < 0.5


def test_random_twin_has_the_architecture_but_not_the_weights() -> None:
    trained = Backbone.from_model(make_tiny_model(seed=5), "trained")
    twin = random_twin(trained)
    assert twin.num_registers == 4 and twin.num_layers == 2 and twin.hidden_size == 32
    assert twin.fingerprint != trained.fingerprint


def test_report_features_are_the_apps() -> None:
    """The report embeds world scenes through the one pixels path: its CLS tokens and patch grids equal
    `Backbone.extract` on the same image (the app's features), here with a resize (64 -> 32 px)."""
    from PIL import Image

    from explorer.eval.backbone_report import extract

    backbone = Backbone.from_model(make_tiny_model(seed=2), "tiny-report")
    rng = np.random.default_rng(0)
    scenes = [type("S", (), {"image": rng.integers(0, 256, (64, 64, 3), dtype=np.uint8), "label": 0})()
              for _ in range(3)]
    split = extract(backbone, scenes, 32, batch_size=2)
    for i, s in enumerate(scenes):
        f = backbone.extract(Image.fromarray(s.image), size=32)
        torch.testing.assert_close(split.cls[i], f.cls, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(split.patches[i].float(), f.patches, atol=2e-3, rtol=2e-3)  # stored fp16
