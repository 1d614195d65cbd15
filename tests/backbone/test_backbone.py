"""Backbone loading, token split and caching, on tiny random DINOv3 models saved to disk."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AutoModel, DINOv3ViTConfig, DINOv3ViTModel

from explorer.backbone import Backbone, load_backbone, load_source, target_size
from explorer.backbone import sources as sources_module
from explorer.backbone.sources import SourceUnavailable


def tiny_config(registers: int) -> DINOv3ViTConfig:
    return DINOv3ViTConfig(
        hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=64,
        num_register_tokens=registers, layerscale_value=1e-5, patch_size=16,
    )


def save_tiny(tmp_path: Path, registers: int) -> Path:
    torch.manual_seed(registers)
    folder = tmp_path / f"tiny-r{registers}"
    DINOv3ViTModel(tiny_config(registers)).save_pretrained(folder)
    return folder


def random_image(height: int, width: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


@pytest.mark.parametrize("registers", [0, 4])
def test_token_split_matches_model_sequence(tmp_path: Path, registers: int) -> None:
    folder = save_tiny(tmp_path, registers)
    backbone = load_source(str(folder))
    assert backbone.num_registers == registers
    image = random_image(200, 330)  # non-square
    features = backbone.extract(image, size=224)
    height, width = features.input_size
    assert (height, width) == target_size(330, 200, 224, 16)
    grid_h, grid_w = features.grid
    assert (grid_h, grid_w) == (height // 16, width // 16) and grid_h != grid_w

    # Reference: the raw sequence from transformers, sliced by hand with the config's register count.
    model = AutoModel.from_pretrained(folder)
    with torch.no_grad():
        tokens = model(pixel_values=backbone.preprocess(image, 224)).last_hidden_state[0]
    assert tokens.shape[0] == 1 + registers + grid_h * grid_w
    torch.testing.assert_close(features.cls, tokens[0])
    torch.testing.assert_close(features.registers, tokens[1 : 1 + registers])
    # row-major: patch (i, j) is token 1 + r + i * w + j
    i, j = grid_h - 1, 2
    torch.testing.assert_close(features.patches[i, j], tokens[1 + registers + i * grid_w + j])
    torch.testing.assert_close(features.flat(), tokens[1 + registers :])


def test_intermediate_layer_gets_final_norm(tmp_path: Path) -> None:
    backbone = load_source(str(save_tiny(tmp_path, 4)))
    image = random_image(64, 96)
    features = backbone.extract(image, size=224, layer=1)
    assert features.layer == 1
    with torch.no_grad():
        hidden = backbone.model(pixel_values=backbone.preprocess(image, 224), output_hidden_states=True).hidden_states
        expected = backbone.model.norm(hidden[1])[0, 0]
    torch.testing.assert_close(features.cls, expected)
    assert not torch.allclose(features.cls, backbone.extract(image, size=224).cls)


def test_cache_runs_the_backbone_once_per_key(tmp_path: Path) -> None:
    backbone = load_source(str(save_tiny(tmp_path, 4)))
    calls = []
    backbone.model.register_forward_hook(lambda *args: calls.append(1))
    image = random_image(80, 80)
    first = backbone.extract(image, size=224)
    same_pixels = Image.fromarray(np.asarray(image).copy())
    assert backbone.extract(same_pixels, size=224) is first
    assert len(calls) == 1
    backbone.extract(image, size=256)  # another size is another key
    assert len(calls) == 2


def test_cache_is_bounded(tmp_path: Path) -> None:
    backbone = load_source(str(save_tiny(tmp_path, 0)))
    backbone.cache.max_entries = 3
    for seed in range(5):
        backbone.extract(random_image(32, 32, seed), size=224)
    assert len(backbone.cache) == 3


@pytest.mark.parametrize(("width", "height"), [(640, 480), (480, 640), (1000, 17), (16, 16)])
def test_target_size_keeps_aspect_and_patch_multiple(width: int, height: int) -> None:
    out_h, out_w = target_size(width, height, 448, 16)
    assert out_h % 16 == 0 and out_w % 16 == 0 and max(out_h, out_w) == 448
    assert abs(out_w / out_h - width / height) <= (width / height) * 16 / min(out_h, out_w) + 1e-9 or min(out_h, out_w) == 16


def test_missing_requested_source_falls_back_to_bundled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bundled = save_tiny(tmp_path, 4)
    monkeypatch.setattr(sources_module, "BUNDLED_DIR", bundled)
    result = load_backbone(str(tmp_path / "does-not-exist"))
    assert result.backbone is not None and result.fell_back
    assert "Fell back" in result.message and result.backbone.model_id.startswith("bundled/")


def test_offline_hub_id_fails_fast_with_a_clear_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setattr(sources_module, "BUNDLED_DIR", tmp_path / "no-bundled-model")
    start = time.monotonic()
    result = load_backbone("facebook/dinov3-vits16-pretrain-lvd1689m")
    assert time.monotonic() - start < 10
    assert result.backbone is None
    assert "offline" in result.message and "bundled model is missing" in result.message


def test_non_dinov3_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SourceUnavailable, match="config.json"):
        load_source(str(tmp_path))


def test_timm_dinov3_split(monkeypatch: pytest.MonkeyPatch) -> None:
    timm = pytest.importorskip("timm")
    model = timm.create_model("vit_small_patch16_dinov3", pretrained=False, num_classes=0, dynamic_img_size=True)
    backbone = Backbone.from_timm(model, "timm:vit_small_patch16_dinov3")
    assert backbone.num_registers == 4
    image = random_image(120, 200)
    features = backbone.extract(image, size=224)
    with torch.no_grad():
        tokens = model.forward_features(backbone.preprocess(image, 224))[0]
    grid_h, grid_w = features.grid
    assert tokens.shape[0] == 5 + grid_h * grid_w
    torch.testing.assert_close(features.cls, tokens[0], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(features.flat(), tokens[5:], atol=1e-4, rtol=1e-4)


def test_half_precision_folder_loads_as_float32(tmp_path: Path) -> None:
    folder = tmp_path / "half"
    DINOv3ViTModel(tiny_config(4)).half().save_pretrained(folder)
    backbone = load_source(str(folder))
    assert next(backbone.model.parameters()).dtype == torch.float32
    assert backbone.extract(random_image(48, 48), size=224).patches.dtype == torch.float32


def test_fingerprint_tells_weights_apart_not_just_configs(tmp_path: Path) -> None:
    first = Backbone.from_model(DINOv3ViTModel(tiny_config(4)), "a")
    torch.manual_seed(123)
    twin = Backbone.from_model(DINOv3ViTModel(tiny_config(4)), "a")  # same config, other weights
    reloaded_dir = tmp_path / "first"
    first.model.save_pretrained(reloaded_dir)
    assert first.fingerprint != twin.fingerprint
    assert load_source(str(reloaded_dir)).fingerprint == first.fingerprint
