"""The pretrained-vs-random report: k-NN on CLS and the random-init twin."""

from __future__ import annotations

import numpy as np
import torch
from transformers import DINOv3ViTConfig, DINOv3ViTModel

from explorer.backbone import Backbone
from explorer.eval.backbone_report import Split, knn_top1, random_twin


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
    config = DINOv3ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                             num_register_tokens=4, layerscale_value=1e-5)
    torch.manual_seed(5)
    trained = Backbone.from_model(DINOv3ViTModel(config), "trained")
    twin = random_twin(trained)
    assert twin.num_registers == 4 and twin.num_layers == 2 and twin.hidden_size == 32
    assert twin.fingerprint != trained.fingerprint
