"""One adapter per backbone family: what `Backbone` needs to know about a model, and nothing else.

An adapter answers the same questions for every family — the stride of its patch grid, how many
prefix tokens it has (CLS, registers), how many layers, the width of each layer, the normalisation
its weights were trained with — and turns pixels into `(cls, registers, patches)` for one layer.

Families and libraries:

- DINOv3 ViT (S, S+, B, L, H+, 7B; LVD-1689M and SAT-493M): transformers `DINOv3ViTModel`, timm `Eva`.
- DINOv3 ConvNeXt (T, S, B, L): transformers `DINOv3ConvNextModel`, timm `ConvNeXt`. A "layer" is a
  stage (1..4); the stage's feature map is the patch grid (stride 4, 8, 16, 32) and its global
  average is the CLS token; there are no registers. Only stage 4 gets the final LayerNorm (it is
  sized for stage 4's channels) — exactly the model's own output; stages 1-3 come un-normalised.
- DINOv2 (S, B, L, g, with or without registers, patch 14): transformers `Dinov2Model`,
  `Dinov2WithRegistersModel`, timm `VisionTransformer`.

ViT layers stop after the block asked for (timm's `stop_early`; for transformers, a forward hook
that ends the forward), and every layer gets the model's final LayerNorm, like DINOv2/3's
`get_intermediate_layers(norm=True)`, so intermediate and last layers live on one scale.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from explorer.backbone.preprocess import IMAGENET_MEAN, IMAGENET_STD

TokenSplit = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
SAT_MEAN = (0.430, 0.411, 0.296)
SAT_STD = (0.213, 0.156, 0.143)
DINOV3_VIT, DINOV3_CONVNEXT, DINOV2 = "dinov3-vit", "dinov3-convnext", "dinov2"
FAMILY_NAMES = {DINOV3_VIT: "DINOv3 ViT", DINOV3_CONVNEXT: "DINOv3 ConvNeXt", DINOV2: "DINOv2"}
TRANSFORMERS_TYPES = {"dinov3_vit": DINOV3_VIT, "dinov3_convnext": DINOV3_CONVNEXT,
                      "dinov2": DINOV2, "dinov2_with_registers": DINOV2}


class UnsupportedModel(ValueError):
    """A model none of the adapters understands (another architecture, another model type)."""


def norm_stats(model_id: str, mean: Sequence[float] | None = None,
               std: Sequence[float] | None = None) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The normalisation the weights were trained with: given stats, else SAT-493M's for a satellite id, else ImageNet."""
    if mean is not None and std is not None:
        return tuple(float(v) for v in mean), tuple(float(v) for v in std)
    if "sat493m" in model_id.lower():
        return SAT_MEAN, SAT_STD
    return IMAGENET_MEAN, IMAGENET_STD


@dataclass
class Adapter:
    """The questions `Backbone` asks of a model. Subclasses implement `_tokens` for one family and library."""

    model: nn.Module
    family: str
    library: str  # "transformers" or "timm"
    patch_size: int  # input sides are made multiples of this (ConvNeXt: the stride of its last stage)
    num_layers: int  # ViT blocks, or ConvNeXt stages
    hidden_size: int  # width of the last layer
    num_registers: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    config: dict  # architecture description, hashed into the fingerprint
    has_cls: bool = True

    @property
    def has_registers(self) -> bool:
        return self.num_registers > 0

    def stride(self, layer: int) -> int:
        """Pixels per patch-grid cell at `layer` (1-based)."""
        return self.patch_size

    def dim(self, layer: int) -> int:
        """Channels of `layer`'s tokens."""
        return self.hidden_size

    def tokens(self, pixel_values: torch.Tensor, layer: int) -> TokenSplit:
        """(B, 3, H, W) -> cls (B, d), registers (B, r, d), patches (B, h, w, d) of 1-based `layer`."""
        return self._tokens(pixel_values, layer)

    def _tokens(self, pixel_values: torch.Tensor, layer: int) -> TokenSplit:
        raise NotImplementedError


class _Stop(Exception):  # noqa: N818 - a control-flow signal, not an error
    """Raised by a block's forward hook to end the forward once the asked-for block has run."""

    def __init__(self, output: torch.Tensor) -> None:
        super().__init__()
        self.output = output


@dataclass
class _StopAfter:
    """Forward hooks, one per block, that end the forward after the block asked for in this thread.

    Thread-local because one model serves several sessions at once: a hook set for one request must
    not end another thread's forward.
    """

    blocks: Sequence[nn.Module]
    local: threading.local = field(default_factory=threading.local)

    def __post_init__(self) -> None:
        for index, block in enumerate(self.blocks, start=1):
            block.register_forward_hook(self._hook(index))

    def _hook(self, index: int):
        def hook(_module: nn.Module, _args: tuple, output: torch.Tensor | tuple) -> None:
            if getattr(self.local, "layer", None) == index:
                raise _Stop(output[0] if isinstance(output, tuple) else output)
        return hook

    def run(self, forward, layer: int) -> torch.Tensor:
        """Output of block `layer` (1-based) of `forward()`; the blocks after it never run."""
        self.local.layer = layer
        try:
            forward()
        except _Stop as stop:
            return stop.output
        finally:
            self.local.layer = None
        raise RuntimeError(f"block {layer} never ran")


def _split_sequence(tokens: torch.Tensor, registers: int, grid: tuple[int, int]) -> TokenSplit:
    """`[CLS, registers..., patches...]` (B, 1 + r + h*w, d) -> cls, registers, patches (B, h, w, d)."""
    start = 1 + registers
    batch = tokens.shape[0]
    return tokens[:, 0], tokens[:, 1:start], tokens[:, start:].reshape(batch, grid[0], grid[1], -1)


def _grid(pixel_values: torch.Tensor, stride: int) -> tuple[int, int]:
    return int(pixel_values.shape[2]) // stride, int(pixel_values.shape[3]) // stride


@dataclass
class TransformersViT(Adapter):
    """`DINOv3ViTModel`, `Dinov2Model`, `Dinov2WithRegistersModel`: one sequence `[CLS, registers, patches]`."""

    blocks: Sequence[nn.Module] = ()
    norm: nn.Module | None = None

    def __post_init__(self) -> None:
        self._stop = _StopAfter(self.blocks)

    def _tokens(self, pixel_values: torch.Tensor, layer: int) -> TokenSplit:
        hidden = self._stop.run(lambda: self.model(pixel_values=pixel_values), layer)
        return _split_sequence(self.norm(hidden), self.num_registers, _grid(pixel_values, self.patch_size))


@dataclass
class TransformersConvNeXt(Adapter):
    """`DINOv3ConvNextModel`: stage k's NCHW map is the grid; stage 4 is the model's own normalised output."""

    stages: Sequence[nn.Module] = ()
    stage_dims: Sequence[int] = ()

    def __post_init__(self) -> None:
        self._stop = _StopAfter(self.stages)

    def stride(self, layer: int) -> int:
        return 4 * 2 ** (layer - 1)

    def dim(self, layer: int) -> int:
        return int(self.stage_dims[layer - 1])

    def _tokens(self, pixel_values: torch.Tensor, layer: int) -> TokenSplit:
        if layer == self.num_layers:
            tokens = self.model(pixel_values=pixel_values).last_hidden_state  # [pooled, h*w tokens], normalised
            return _split_sequence(tokens, 0, _grid(pixel_values, self.stride(layer)))
        feature_map = self._stop.run(lambda: self.model(pixel_values=pixel_values), layer)
        return _split_map(feature_map)


def _split_map(feature_map: torch.Tensor) -> TokenSplit:
    """An un-normalised NCHW stage map -> its global average as CLS, no registers, the map as (B, h, w, C)."""
    patches = feature_map.permute(0, 2, 3, 1)
    cls_token = feature_map.mean(dim=(2, 3))
    return cls_token, patches[:, :0, 0], patches


@dataclass
class TimmViT(Adapter):
    """timm `Eva` (DINOv3) and `VisionTransformer` (DINOv2), through `forward_intermediates(stop_early=True)`."""

    def _tokens(self, pixel_values: torch.Tensor, layer: int) -> TokenSplit:
        (patch_tokens, prefix), = self.model.forward_intermediates(
            pixel_values, indices=[layer - 1], return_prefix_tokens=True, norm=True,
            output_fmt="NLC", intermediates_only=True, stop_early=True,
        )
        grid = _grid(pixel_values, self.patch_size)
        return prefix[:, 0], prefix[:, 1:], patch_tokens.reshape(patch_tokens.shape[0], grid[0], grid[1], -1)


@dataclass
class TimmConvNeXt(Adapter):
    """timm `ConvNeXt` (DINOv3 copies): its head's LayerNorm is the final norm, applied per token at stage 4."""

    stage_dims: Sequence[int] = ()

    def stride(self, layer: int) -> int:
        return 4 * 2 ** (layer - 1)

    def dim(self, layer: int) -> int:
        return int(self.stage_dims[layer - 1])

    def _tokens(self, pixel_values: torch.Tensor, layer: int) -> TokenSplit:
        feature_map, = self.model.forward_intermediates(
            pixel_values, indices=[layer - 1], stop_early=True, intermediates_only=True,
        )
        if layer < self.num_layers:
            return _split_map(feature_map)
        pooled = self.model.forward_head(feature_map, pre_logits=True)  # pool -> LayerNorm, the DINOv3 CLS
        patches = self.model.head.norm(feature_map).permute(0, 2, 3, 1)
        return pooled, patches[:, :0, 0], patches


def _transformers_adapter(model: nn.Module, model_id: str, mean, std) -> Adapter:
    config = model.config
    model_type = getattr(config, "model_type", None)
    family = TRANSFORMERS_TYPES.get(model_type)
    if family is None:
        raise UnsupportedModel(
            f"holds a '{model_type}' model; the explorer reads DINOv3 ViT/ConvNeXt and DINOv2 models only"
        )
    mean, std = norm_stats(model_id, mean, std)
    common = dict(model=model, family=family, library="transformers", mean=mean, std=std,
                  config=config.to_dict())
    if family == DINOV3_CONVNEXT:
        dims = [int(d) for d in config.hidden_sizes]
        return TransformersConvNeXt(**common, patch_size=4 * 2 ** (len(dims) - 1), num_layers=len(dims),
                                    hidden_size=dims[-1], num_registers=0, stages=model.model.stages,
                                    stage_dims=dims)
    if family == DINOV3_VIT:
        blocks, norm = model.model.layer, model.norm
    else:
        blocks, norm = model.encoder.layer, model.layernorm
    return TransformersViT(**common, patch_size=int(config.patch_size), num_layers=len(blocks),
                           hidden_size=int(config.hidden_size),
                           num_registers=int(getattr(config, "num_register_tokens", 0) or 0),
                           blocks=blocks, norm=norm)


def timm_family(name: str) -> str | None:
    """The family of a timm name (`architecture.tag`), or None when it is not a DINOv2/DINOv3 model.

    ConvNeXt weights say "dinov3" only in their tag (`convnext_tiny.dinov3_lvd1689m`).
    """
    if "dinov3" in name:
        return DINOV3_CONVNEXT if name.startswith("convnext") else DINOV3_VIT
    if "dinov2" in name:
        return DINOV2
    return None


def _timm_adapter(model: nn.Module, model_id: str, mean, std) -> Adapter:
    pretrained_cfg = getattr(model, "pretrained_cfg", None) or {}
    architecture = str(pretrained_cfg.get("architecture") or "")
    tag = pretrained_cfg.get("tag")
    family = timm_family(f"{architecture}.{tag}" if tag else architecture)
    if family is None:
        raise UnsupportedModel(f"is timm '{architecture or type(model).__name__}', not a DINOv2/DINOv3 model")
    if mean is None and "mean" in pretrained_cfg:
        mean, std = pretrained_cfg["mean"], pretrained_cfg["std"]
    mean, std = norm_stats(model_id, mean, std)
    config = {"timm_architecture": architecture, "class": type(model).__name__,
              "pretrained_tag": tag, **_timm_shape(model)}
    common = dict(model=model, family=family, library="timm", mean=mean, std=std, config=config)
    if family == DINOV3_CONVNEXT:
        dims = [int(info["num_chs"]) for info in model.feature_info]
        return TimmConvNeXt(**common, patch_size=int(model.feature_info[-1]["reduction"]),
                            num_layers=len(dims), hidden_size=dims[-1], num_registers=0, stage_dims=dims)
    patch = model.patch_embed.patch_size
    has_cls = getattr(model, "cls_token", None) is not None
    if not has_cls:
        raise UnsupportedModel(f"is timm '{architecture}' without a class token")
    return TimmViT(**common, patch_size=int(patch[0] if isinstance(patch, (tuple, list)) else patch),
                   num_layers=len(model.blocks), hidden_size=int(model.embed_dim),
                   num_registers=int(model.num_prefix_tokens) - 1)


def _timm_shape(model: nn.Module) -> dict:
    """The width/depth that tell two timm models of one architecture name apart (tests build tiny ones)."""
    if hasattr(model, "blocks"):
        return {"embed_dim": int(model.embed_dim), "depth": len(model.blocks),
                "num_prefix_tokens": int(model.num_prefix_tokens)}
    return {"dims": [int(info["num_chs"]) for info in model.feature_info],
            "depths": [len(stage.blocks) for stage in model.stages]}


def adapt(model: nn.Module, model_id: str, mean: Sequence[float] | None = None,
          std: Sequence[float] | None = None) -> Adapter:
    """The adapter for a transformers or timm DINO model; `UnsupportedModel` for anything else."""
    if hasattr(model, "config") and hasattr(model.config, "model_type"):
        return _transformers_adapter(model, model_id, mean, std)
    if hasattr(model, "pretrained_cfg") and hasattr(model, "forward_intermediates"):
        return _timm_adapter(model, model_id, mean, std)
    raise UnsupportedModel(f"is a {type(model).__name__}, neither a transformers nor a timm DINO model")
