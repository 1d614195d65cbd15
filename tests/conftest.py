"""Shared fixtures: a tiny random DINOv3 ViT saved the way real checkpoints are (save_pretrained).

Any test may use `tiny_model_dir` (a Hugging Face folder: config.json + model.safetensors) or
`tiny_backbone` (the same model wrapped as `explorer.backbone.Backbone`). Both are session-scoped:
built once, a few hundred kB, no network.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")

TINY_CONFIG = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=64,
    patch_size=16,
    num_register_tokens=4,
    layerscale_value=1e-5,
    image_size=64,
)


def make_tiny_model(seed: int = 0, **overrides):
    """A random-init DINOv3ViTModel, small enough for CPU tests (hidden 32, 2 layers, 4 registers)."""
    import torch
    from transformers import DINOv3ViTConfig, DINOv3ViTModel

    torch.manual_seed(seed)
    config = DINOv3ViTConfig(**{**TINY_CONFIG, **overrides})
    return DINOv3ViTModel(config).eval()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder holding a tiny random DINOv3 ViT in Hugging Face format (save_pretrained, safetensors)."""
    folder = tmp_path_factory.mktemp("tiny-dinov3")
    make_tiny_model().save_pretrained(folder, safe_serialization=True)
    return folder


@pytest.fixture(scope="session")
def tiny_backbone(tiny_model_dir: Path):
    """The tiny model loaded through the real folder loader, as an `explorer.backbone.Backbone`."""
    from explorer.backbone import load_source

    return load_source(str(tiny_model_dir))
