"""Shared fixtures and THE tiny-model factory: one tiny random model per backbone family and library,
saved the way real checkpoints are.

- transformers models: `save_pretrained` (config.json + model.safetensors), loaded by the folder loader.
- timm models: `timm.models.save_for_hf` (config.json with `architecture`, `model_args`, `pretrained_cfg`
  + model.safetensors), the folder layout timm reads itself with `local-dir:`; `put_in_hub_cache` lays a
  file out as huggingface_hub's cache does (models--org--name/refs/main + snapshots/<commit>/), which is
  where `timm:<name>` sources are read from.

`tiny_model_dir` / `tiny_backbone` (a tiny DINOv3 ViT) are session-scoped; `tiny_dir(family)` saves any
family once per session. Everything is hidden 32 or less, 2 layers (ConvNeXt: 4 one-block stages).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")
# Tests compare tokens with plain float32 forwards; the bf16 path has its own tests.
os.environ.setdefault("DINOV3_PRECISION", "fp32")

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
TINY_VIT = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
TINY_TIMM_VIT = dict(embed_dim=32, depth=2, num_heads=2)
TINY_CONVNEXT_DIMS, TINY_CONVNEXT_DEPTHS = [8, 16, 24, 32], [1, 1, 1, 1]

# family key -> what it stands for
TINY_FAMILIES = {
    "dinov3-vit": "transformers DINOv3ViTModel, 4 registers",
    "dinov3-vit-gated": "transformers DINOv3ViTModel, gated MLP (S+/H+/7B)",
    "dinov3-convnext": "transformers DINOv3ConvNextModel",
    "dinov2": "transformers Dinov2Model, patch 14",
    "dinov2-registers": "transformers Dinov2WithRegistersModel, patch 14, 4 registers",
    "timm-dinov3-vit": "timm Eva (vit_small_patch16_dinov3)",
    "timm-dinov3-vit-qkvb": "timm Eva with zero QKV bias (vit_small_patch16_dinov3_qkvb)",
    "timm-dinov3-vit-sat": "timm Eva with SAT-493M pretrained config (vit_large_patch16_dinov3.sat493m)",
    "timm-dinov3-convnext": "timm ConvNeXt (convnext_tiny.dinov3_lvd1689m)",
    "timm-dinov2": "timm VisionTransformer (vit_small_patch14_dinov2)",
}
TIMM_TINY = {  # timm name -> architecture overrides (also written to config.json as model_args)
    "timm-dinov3-vit": ("vit_small_patch16_dinov3.lvd1689m", TINY_TIMM_VIT),
    "timm-dinov3-vit-qkvb": ("vit_small_patch16_dinov3_qkvb.lvd1689m", TINY_TIMM_VIT),
    "timm-dinov3-vit-sat": ("vit_large_patch16_dinov3.sat493m", TINY_TIMM_VIT),
    "timm-dinov3-convnext": ("convnext_tiny.dinov3_lvd1689m", dict(dims=TINY_CONVNEXT_DIMS,
                                                                   depths=TINY_CONVNEXT_DEPTHS)),
    "timm-dinov2": ("vit_small_patch14_dinov2.lvd142m", dict(**TINY_TIMM_VIT, img_size=56, dynamic_img_size=True)),
}


def make_tiny_model(seed: int = 0, **overrides):
    """A random-init DINOv3ViTModel, small enough for CPU tests (hidden 32, 2 layers, 4 registers)."""
    import torch
    from transformers import DINOv3ViTConfig, DINOv3ViTModel

    torch.manual_seed(seed)
    config = DINOv3ViTConfig(**{**TINY_CONFIG, **overrides})
    return DINOv3ViTModel(config).eval()


def make_tiny(family: str, seed: int = 0):
    """A tiny random model of `family` (a key of TINY_FAMILIES), in eval mode."""
    import torch

    torch.manual_seed(seed)
    if family in TIMM_TINY:
        import timm

        name, args = TIMM_TINY[family]
        return timm.create_model(name, pretrained=False, num_classes=0, **args).eval()
    import transformers as tf

    if family == "dinov3-vit":
        return make_tiny_model(seed)
    if family == "dinov3-vit-gated":
        return make_tiny_model(seed, use_gated_mlp=True, hidden_act="silu")
    if family == "dinov3-convnext":
        config = tf.DINOv3ConvNextConfig(hidden_sizes=TINY_CONVNEXT_DIMS, depths=TINY_CONVNEXT_DEPTHS)
        return tf.DINOv3ConvNextModel(config).eval()
    if family == "dinov2":
        return tf.Dinov2Model(tf.Dinov2Config(**TINY_VIT, patch_size=14, image_size=56)).eval()
    if family == "dinov2-registers":
        config = tf.Dinov2WithRegistersConfig(**TINY_VIT, patch_size=14, image_size=56, num_register_tokens=4)
        return tf.Dinov2WithRegistersModel(config).eval()
    raise KeyError(family)


def save_tiny(family: str, folder: Path, seed: int = 0) -> Path:
    """`make_tiny(family)` saved in its library's own folder format (safetensors)."""
    model = make_tiny(family, seed)
    if family in TIMM_TINY:
        import timm

        timm.models.save_for_hf(model, str(folder), model_args=TIMM_TINY[family][1], safe_serialization=True)
    else:
        model.save_pretrained(folder, safe_serialization=True)
    return folder


def put_in_hub_cache(cache_dir: Path, repo_id: str, files: dict[str, Path], commit: str = "0" * 40) -> Path:
    """Lay files out as huggingface_hub's cache does, so `local_files_only` lookups find them."""
    repo = cache_dir / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True, exist_ok=True)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    for name, source in files.items():
        (snapshot / name).write_bytes(Path(source).read_bytes())
    return snapshot


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """`tiny_dir(family)`: the folder of that family's tiny model, saved once per session."""
    saved: dict[str, Path] = {}

    def get(family: str) -> Path:
        if family not in saved:
            saved[family] = save_tiny(family, tmp_path_factory.mktemp(f"tiny-{family}"))
        return saved[family]

    return get


@pytest.fixture(scope="session")
def tiny_model_dir(tiny_dir: Callable[[str], Path]) -> Path:
    """Folder holding a tiny random DINOv3 ViT in Hugging Face format (save_pretrained, safetensors)."""
    return tiny_dir("dinov3-vit")


@pytest.fixture(scope="session")
def tiny_backbone(tiny_model_dir: Path):
    """The tiny model loaded through the real folder loader, as an `explorer.backbone.Backbone`."""
    from explorer.backbone import load_source

    return load_source(str(tiny_model_dir))
