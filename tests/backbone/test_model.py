"""`Backbone`: the layer index, the cache, the fingerprint and the forward precision."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from explorer.backbone import Backbone, load_source
from tests.conftest import make_tiny, make_tiny_model


def random_image(height: int, width: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


@pytest.mark.parametrize(("asked", "resolved"), [(None, 2), (1, 1), (2, 2), (-1, 2), (-2, 1)])
def test_resolve_layer_is_one_based_and_counts_back_from_the_end(tiny_backbone, asked, resolved) -> None:
    assert tiny_backbone.resolve_layer(asked) == resolved


@pytest.mark.parametrize("asked", [0, 3, 99, -3, 1.5, True])
def test_resolve_layer_refuses_what_is_not_a_layer(tiny_backbone, asked) -> None:
    with pytest.raises(ValueError, match=r"1\.\.2|whole number") as info:
        tiny_backbone.resolve_layer(asked)
    if not isinstance(asked, float | bool):
        assert tiny_backbone.model_id in str(info.value)
        with pytest.raises(ValueError):
            tiny_backbone.extract(random_image(32, 32), size=64, layer=asked)


def test_convnext_layers_are_its_four_stages(tiny_dir) -> None:
    backbone = load_source(str(tiny_dir("dinov3-convnext")))
    with pytest.raises(ValueError, match="4 stages"):
        backbone.resolve_layer(5)
    assert [backbone.stride(k) for k in (1, 2, 3, 4)] == [4, 8, 16, 32]
    assert [backbone.dim(k) for k in (1, 2, 3, 4)] == list(backbone.model.config.hidden_sizes)


def test_cache_runs_the_backbone_once_per_key(tiny_backbone) -> None:
    calls = []
    handle = tiny_backbone.model.register_forward_pre_hook(lambda *args: calls.append(1))
    image = random_image(80, 80, seed=11)
    first = tiny_backbone.extract(image, size=224)
    same_pixels = Image.fromarray(np.asarray(image).copy())
    assert tiny_backbone.extract(same_pixels, size=224) is first
    assert len(calls) == 1
    tiny_backbone.extract(image, size=256)  # another size is another key
    tiny_backbone.extract(image, size=224, layer=1)  # and another layer
    handle.remove()
    assert len(calls) == 3


def test_cache_is_bounded(tiny_model_dir: Path) -> None:
    backbone = load_source(str(tiny_model_dir))
    backbone.cache.max_entries = 3
    for seed in range(5):
        backbone.extract(random_image(32, 32, seed), size=64)
    assert len(backbone.cache) == 3


def test_half_precision_folder_loads_as_float32(tmp_path: Path) -> None:
    folder = tmp_path / "half"
    make_tiny_model().half().save_pretrained(folder)
    backbone = load_source(str(folder))
    assert next(backbone.model.parameters()).dtype == torch.float32
    assert backbone.extract(random_image(48, 48), size=64).patches.dtype == torch.float32


def test_fingerprint_tells_weights_apart_not_just_configs(tmp_path: Path) -> None:
    first = Backbone.from_model(make_tiny_model(seed=0), "a")
    twin = Backbone.from_model(make_tiny_model(seed=123), "a")  # same config, other weights
    first.model.save_pretrained(tmp_path / "first")
    assert first.fingerprint != twin.fingerprint
    assert load_source(str(tmp_path / "first")).fingerprint == first.fingerprint


def test_description_says_what_a_family_has(tiny_dir) -> None:
    vit = load_source(str(tiny_dir("dinov3-vit")))
    convnext = load_source(str(tiny_dir("timm-dinov3-convnext")))
    dinov2 = Backbone.from_model(make_tiny("dinov2"), "tiny-dinov2")
    assert (vit.family, vit.has_cls, vit.has_registers, vit.num_registers) == ("dinov3-vit", True, True, 4)
    assert (convnext.family, convnext.has_cls, convnext.has_registers) == ("dinov3-convnext", True, False)
    assert (dinov2.family, dinov2.patch_size, dinov2.has_registers) == ("dinov2", 14, False)


def test_unsupported_model_is_refused() -> None:
    from transformers import ViTConfig, ViTModel

    from explorer.backbone import UnsupportedModel

    with pytest.raises(UnsupportedModel, match="'vit'"):
        Backbone.from_model(ViTModel(ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                               intermediate_size=32)), "plain-vit")


# ------------------------------------------------------------------ precision
def test_fp32_is_bit_identical_to_the_plain_forward(tiny_model_dir: Path) -> None:
    backbone = load_source(str(tiny_model_dir), precision="fp32")
    image = random_image(64, 96, seed=3)
    pixels = backbone.preprocess(image, 96)
    with torch.no_grad():
        out = backbone.model(pixel_values=pixels).last_hidden_state[0]
    features = backbone.extract(image, size=96)
    assert torch.equal(features.cls, out[0])
    assert torch.equal(features.patches.reshape(-1, features.dim), out[5:])


def test_bf16_features_are_close_float32_and_cached_apart(tiny_model_dir: Path) -> None:
    fp32 = load_source(str(tiny_model_dir), precision="fp32")
    bf16 = load_source(str(tiny_model_dir), precision="bf16")
    assert bf16.precision == "bf16" and bf16.feature_id != fp32.feature_id and bf16.model_id == fp32.model_id
    image = random_image(64, 96, seed=4)
    a, b = fp32.extract(image, size=96), bf16.extract(image, size=96)
    assert b.patches.dtype == torch.float32
    assert not torch.equal(a.patches, b.patches)  # bf16 really ran
    cosine = torch.nn.functional.cosine_similarity(a.flat(), b.flat(), dim=-1)
    assert float(cosine.min()) >= 0.99


def test_bf16_weights_load_and_return_float32(tiny_model_dir: Path) -> None:
    """A model loaded in bf16 to fit in memory still gives float32 tokens close to the fp32 ones."""
    fp32 = load_source(str(tiny_model_dir), precision="fp32")
    weights_bf16 = Backbone.from_model(load_source(str(tiny_model_dir)).model.to(torch.bfloat16), "bf16-weights",
                                       precision="fp32")
    image = random_image(64, 96, seed=5)
    assert weights_bf16.precision == "bf16"  # so its features are cached apart from fp32 ones
    a, b = fp32.extract(image, size=96), weights_bf16.extract(image, size=96)
    assert b.patches.dtype == torch.float32
    assert float(torch.nn.functional.cosine_similarity(a.flat(), b.flat(), dim=-1).min()) >= 0.99
