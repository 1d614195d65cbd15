"""Every family's token split, checked against the library's own outputs (its Backbone classes, its
norm applied by the library's own module, forward hooks on its blocks), never by re-slicing the way
the adapter does. Tiny random models saved in their real format (tests/conftest.py), non-square inputs.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import transformers as tf
from PIL import Image

from explorer.backbone import SAT_MEAN, SAT_STD, Backbone, load_source

TRANSFORMERS_VITS = ["dinov3-vit", "dinov3-vit-gated", "dinov2", "dinov2-registers"]
TIMM_VITS = ["timm-dinov3-vit", "timm-dinov3-vit-qkvb", "timm-dinov2"]
BACKBONE_CLASS = {"dinov3_vit": tf.DINOv3ViTBackbone, "dinov2": tf.Dinov2Backbone,
                  "dinov2_with_registers": tf.Dinov2WithRegistersBackbone}
SIZE = 128


def photo(height: int = 100, width: int = 170, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def capture(module: torch.nn.Module) -> tuple[list, torch.utils.hooks.RemovableHandle]:
    """A forward hook recording the module's output (the first element when it returns a tuple)."""
    seen: list = []
    handle = module.register_forward_hook(
        lambda _m, _a, out: seen.append((out[0] if isinstance(out, tuple) else out).detach().clone()))
    return seen, handle


def calls(modules) -> list[int]:
    """Count how often each module starts a forward (a pre-hook: it runs even when the forward is cut short)."""
    counts = [0] * len(modules)
    for i, module in enumerate(modules):
        module.register_forward_pre_hook(lambda *_a, i=i: counts.__setitem__(i, counts[i] + 1))
    return counts


@pytest.mark.parametrize("family", TRANSFORMERS_VITS)
@pytest.mark.parametrize("layer", [1, 2])
def test_transformers_vit_split_matches_the_library(tiny_dir, family: str, layer: int) -> None:
    folder = tiny_dir(family)
    backbone = load_source(str(folder))
    image = photo()
    features = backbone.extract(image, size=SIZE, layer=layer)
    pixels = backbone.preprocess(image, SIZE)
    grid_h, grid_w = features.grid
    assert grid_h != grid_w and (grid_h, grid_w) == (pixels.shape[2] // backbone.patch_size,
                                                     pixels.shape[3] // backbone.patch_size)

    model = backbone.model
    config = model.config
    blocks = model.model.layer if config.model_type == "dinov3_vit" else model.encoder.layer
    norm = model.norm if config.model_type == "dinov3_vit" else model.layernorm
    seen, handle = capture(blocks[layer - 1])
    with torch.no_grad():
        out = model(pixel_values=pixels)
        block_tokens = norm(seen[0])[0]
    handle.remove()
    registers = int(getattr(config, "num_register_tokens", 0) or 0)
    assert block_tokens.shape[0] == 1 + registers + grid_h * grid_w
    torch.testing.assert_close(features.cls, block_tokens[0])
    torch.testing.assert_close(features.registers, block_tokens[1:1 + registers])
    if layer == config.num_hidden_layers:
        torch.testing.assert_close(features.cls, out.pooler_output[0])

    # Patches: the library's own Backbone class (prefix dropped, NCHW reshape, final norm) on the same weights.
    reference = BACKBONE_CLASS[config.model_type].from_pretrained(folder, out_indices=[layer]).eval()
    with torch.no_grad():
        feature_map = reference(pixels).feature_maps[0][0]  # (d, h, w)
    torch.testing.assert_close(features.patches, feature_map.permute(1, 2, 0))


@pytest.mark.parametrize("family", TIMM_VITS)
@pytest.mark.parametrize("layer", [1, 2])
def test_timm_vit_split_matches_the_library(tiny_dir, family: str, layer: int) -> None:
    backbone = load_source(str(tiny_dir(family)))
    assert backbone.library == "timm"
    image = photo(seed=1)
    features = backbone.extract(image, size=SIZE, layer=layer)
    pixels = backbone.preprocess(image, SIZE)
    model = backbone.model
    seen, handle = capture(model.blocks[layer - 1])
    with torch.no_grad():
        full = model.forward_features(pixels)[0]  # the library's own [prefix, patches] after its final norm
        block_tokens = model.norm(seen[0])[0]
        feature_map, = model.forward_intermediates(pixels, indices=[layer - 1], norm=True, output_fmt="NCHW",
                                                   intermediates_only=True)
    handle.remove()
    prefix = model.num_prefix_tokens
    assert block_tokens.shape[0] == prefix + features.grid[0] * features.grid[1]
    assert features.registers.shape[0] == prefix - 1 == backbone.num_registers
    torch.testing.assert_close(features.cls, block_tokens[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(features.registers, block_tokens[1:prefix], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(features.patches, feature_map[0].permute(1, 2, 0), atol=1e-5, rtol=1e-5)
    if layer == len(model.blocks):
        torch.testing.assert_close(features.cls, full[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("stage", [1, 2, 3, 4])
def test_transformers_convnext_stage_is_the_grid(tiny_dir, stage: int) -> None:
    folder = tiny_dir("dinov3-convnext")
    backbone = load_source(str(folder))
    assert (backbone.family, backbone.num_layers, backbone.num_registers, backbone.patch_size) == (
        "dinov3-convnext", 4, 0, 32)
    image = photo(seed=2)
    features = backbone.extract(image, size=SIZE, layer=stage)
    pixels = backbone.preprocess(image, SIZE)
    stride = 4 * 2 ** (stage - 1)
    assert features.patch_size == stride and features.registers.shape == (0, features.dim)
    assert features.grid == (pixels.shape[2] // stride, pixels.shape[3] // stride)
    reference = tf.DINOv3ConvNextBackbone.from_pretrained(folder, out_indices=[stage]).eval()
    with torch.no_grad():
        feature_map = reference(pixels).feature_maps[0][0].permute(1, 2, 0)  # (h, w, C), un-normalised
        out = backbone.model(pixel_values=pixels)
    if stage < 4:
        torch.testing.assert_close(features.patches, feature_map)
        torch.testing.assert_close(features.cls, feature_map.mean(dim=(0, 1)))
    else:  # the model's own output: final LayerNorm per token, pooled token = pooler_output
        torch.testing.assert_close(features.patches, backbone.model.layer_norm(feature_map))
        torch.testing.assert_close(features.cls, out.pooler_output[0])


@pytest.mark.parametrize("stage", [2, 4])
def test_timm_convnext_stage_is_the_grid(tiny_dir, stage: int) -> None:
    backbone = load_source(str(tiny_dir("timm-dinov3-convnext")))
    assert (backbone.family, backbone.library, backbone.has_registers) == ("dinov3-convnext", "timm", False)
    image = photo(seed=3)
    features = backbone.extract(image, size=SIZE, layer=stage)
    pixels = backbone.preprocess(image, SIZE)
    model = backbone.model
    seen, handle = capture(model.stages[stage - 1])
    with torch.no_grad():
        model.forward_features(pixels)
        stage_map = seen[0][0].permute(1, 2, 0)
        pooled = model.forward_head(model.forward_features(pixels), pre_logits=True)[0]
    handle.remove()
    if stage < 4:
        torch.testing.assert_close(features.patches, stage_map)
    else:
        torch.testing.assert_close(features.cls, pooled, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(features.patches, model.head.norm(seen[0])[0].permute(1, 2, 0),
                                   atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("family", ["dinov3-vit", "dinov2-registers", "dinov3-convnext", "timm-dinov3-vit",
                                    "timm-dinov3-convnext"])
def test_an_intermediate_layer_stops_after_its_block(tiny_dir, family: str) -> None:
    backbone = load_source(str(tiny_dir(family)))
    model = backbone.model
    if backbone.library == "timm":
        blocks = model.stages if backbone.family == "dinov3-convnext" else model.blocks
    elif backbone.family == "dinov3-convnext":
        blocks = model.model.stages
    else:
        blocks = model.model.layer if backbone.family == "dinov3-vit" else model.encoder.layer
    counts = calls(blocks)
    backbone.extract(photo(seed=4), size=SIZE, layer=1)
    assert counts == [1] + [0] * (len(blocks) - 1)
    backbone.extract(photo(seed=4), size=SIZE, layer=-1)
    assert counts == [2] + [1] * (len(blocks) - 1)


def test_stop_hooks_do_not_leak_across_threads(tiny_dir) -> None:
    """A layer-1 request in one thread must not cut short a last-layer forward in another."""
    from concurrent.futures import ThreadPoolExecutor

    backbone = load_source(str(tiny_dir("dinov3-vit")))
    pixels = backbone.preprocess(photo(seed=5), SIZE)
    expected_last = backbone.forward_batch(pixels, 2)[2]
    expected_first = backbone.forward_batch(pixels, 1)[2]
    with ThreadPoolExecutor(4) as pool:
        jobs = [pool.submit(backbone.forward_batch, pixels, 1 + i % 2) for i in range(16)]
        results = [job.result()[2] for job in jobs]
    for i, patches in enumerate(results):
        torch.testing.assert_close(patches, expected_last if i % 2 else expected_first)


def sat_pixels(colour: tuple[int, int, int], shape: tuple[int, int]) -> torch.Tensor:
    """A constant image normalised by hand with the SAT-493M statistics."""
    values = [(c / 255 - m) / s for c, m, s in zip(colour, SAT_MEAN, SAT_STD, strict=True)]
    return torch.tensor(values, dtype=torch.float32).view(1, 3, 1, 1).expand(1, 3, *shape).contiguous()


@pytest.mark.parametrize("family", ["dinov3-vit", "timm-dinov3-vit-sat"])
def test_sat_models_use_their_own_normalisation(tiny_dir, family: str) -> None:
    if family == "dinov3-vit":  # the SAT statistics follow from the id
        backbone = Backbone.from_model(load_source(str(tiny_dir(family))).model,
                                       "facebook/dinov3-vitl16-pretrain-sat493m")
    else:  # ... or from timm's pretrained config, saved with the model
        backbone = load_source(str(tiny_dir(family)))
    assert backbone.mean == pytest.approx(SAT_MEAN) and backbone.std == pytest.approx(SAT_STD)
    colour = (200, 120, 40)
    image = Image.new("RGB", (96, 64), colour)
    expected = sat_pixels(colour, (64, 96))
    torch.testing.assert_close(backbone.preprocess(image, 96), expected)
    features = backbone.extract(image, size=96)
    torch.testing.assert_close(features.patches, backbone.forward_batch(expected)[2][0])


def test_an_imagenet_model_is_not_given_sat_statistics(tiny_backbone) -> None:
    assert tiny_backbone.mean == pytest.approx((0.485, 0.456, 0.406))
