"""`Backbone`: one wrapper over transformers' DINOv3ViTModel and timm's DINOv3 copies.

It owns preprocessing, the token split and the feature cache, so the rest of the app never
touches a model directly and never runs a second forward for an image it has already seen.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

import torch
from PIL import Image

from explorer.backbone.cache import LRU, image_key
from explorer.backbone.features import Features
from explorer.backbone.preprocess import IMAGENET_MEAN, IMAGENET_STD, PIXELS_RECIPE, preprocess, preprocess_many

TokenSplit = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
# Config entries that say how a model was saved or loaded, not what it computes.
NON_ARCHITECTURE_KEYS = {"transformers_version", "dtype", "torch_dtype", "architectures", "name_or_path"}


def default_device() -> torch.device:
    """CUDA when present, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class Backbone:
    """A frozen DINOv3 ViT plus everything needed to turn an image into `Features`."""

    def __init__(
        self,
        model: torch.nn.Module,
        model_id: str,
        *,
        patch_size: int,
        num_registers: int,
        num_layers: int,
        hidden_size: int,
        config: dict,
        kind: str = "transformers",
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        device: torch.device | None = None,
        cache_entries: int = 32,
    ) -> None:
        self.device = device or default_device()
        self.model = model.eval().to(self.device)
        self.model_id = model_id
        self.patch_size = patch_size
        self.num_registers = num_registers
        self.num_layers = num_layers
        self.hidden_size = hidden_size
        self.kind = kind
        self.mean = tuple(mean)
        self.std = tuple(std)
        self.config = config
        self.cache: LRU[tuple, Features] = LRU(cache_entries, name="features")
        self._fingerprint: str | None = None
        for parameter in self.model.parameters():
            parameter.requires_grad_(False)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_model(
        cls,
        model: torch.nn.Module,
        model_id: str,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        device: torch.device | None = None,
    ) -> Backbone:
        """Wrap an in-memory transformers `DINOv3ViTModel` (tests, training, evaluation)."""
        config = model.config
        return cls(
            model,
            model_id,
            patch_size=int(config.patch_size),
            num_registers=int(getattr(config, "num_register_tokens", 0) or 0),
            num_layers=int(config.num_hidden_layers),
            hidden_size=int(config.hidden_size),
            config=config.to_dict(),
            mean=mean,
            std=std,
            device=device,
        )

    @classmethod
    def from_timm(cls, model: torch.nn.Module, model_id: str, device: torch.device | None = None) -> Backbone:
        """Wrap a timm DINOv3 (`Eva`) model; its prefix tokens are CLS + registers."""
        pretrained_cfg = getattr(model, "pretrained_cfg", {}) or {}
        patch = model.patch_embed.patch_size
        patch_size = int(patch[0] if isinstance(patch, (tuple, list)) else patch)
        config = {
            "timm_name": model_id,
            "embed_dim": int(model.embed_dim),
            "depth": len(model.blocks),
            "num_prefix_tokens": int(model.num_prefix_tokens),
            "patch_size": patch_size,
        }
        return cls(
            model,
            model_id,
            patch_size=patch_size,
            num_registers=int(model.num_prefix_tokens) - 1,
            num_layers=len(model.blocks),
            hidden_size=int(model.embed_dim),
            config=config,
            kind="timm",
            mean=pretrained_cfg.get("mean", IMAGENET_MEAN),
            std=pretrained_cfg.get("std", IMAGENET_STD),
            device=device,
        )

    # ------------------------------------------------------------------ identity
    @property
    def fingerprint(self) -> str:
        """Hash of the config AND the weights: heads and cached features belong to one exact backbone.

        The config alone is not enough: a random-init model and its pretrained twin share a config,
        and a head trained on one gives garbage on the other. Computed once (~0.1 s for ViT-S).
        """
        if self._fingerprint is None:
            keys = sorted(k for k in self.config if not k.startswith("_") and k not in NON_ARCHITECTURE_KEYS)
            digest = hashlib.sha256(json.dumps({k: self.config[k] for k in keys}, sort_keys=True, default=str).encode())
            for name, tensor in sorted(self.model.state_dict().items()):
                digest.update(name.encode())
                digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
            self._fingerprint = digest.hexdigest()[:16]
        return self._fingerprint

    def resolve_layer(self, layer: int | None) -> int:
        """1-based block index; None or out-of-range values are clamped, negatives count from the end."""
        if layer is None:
            return self.num_layers
        if layer < 0:
            layer = self.num_layers + 1 + layer
        return max(1, min(self.num_layers, int(layer)))

    # ------------------------------------------------------------------ forward
    def preprocess(self, image: Image.Image, size: int) -> torch.Tensor:
        """The one pixels path (see `explorer.backbone.preprocess`): (1, 3, H, W)."""
        return preprocess(image, size, self.patch_size, self.mean, self.std)

    def preprocess_many(self, images: Sequence[Image.Image], size: int) -> torch.Tensor:
        """`preprocess` for a batch of images of one aspect ratio: (B, 3, H, W)."""
        return preprocess_many(images, size, self.patch_size, self.mean, self.std)

    def pixel_spec(self, size: int) -> dict:
        """What a head card records so it is served on exactly the pixels it was trained on."""
        return {"recipe": PIXELS_RECIPE, "size": int(size), "patch_size": self.patch_size,
                "mean": list(self.mean), "std": list(self.std)}

    @torch.inference_mode()
    def forward_batch(self, pixel_values: torch.Tensor, layer: int | None = None) -> TokenSplit:
        """(B, 3, H, W) -> cls (B, d), registers (B, r, d), patches (B, h, w, d) on CPU, float32.

        Every layer gets the final LayerNorm, like DINOv2/3's `get_intermediate_layers(norm=True)`,
        so intermediate and last layers live on the same scale.
        """
        layer = self.resolve_layer(layer)
        pixel_values = pixel_values.to(self.device, torch.float32)
        batch, _, height, width = pixel_values.shape
        grid_h, grid_w = height // self.patch_size, width // self.patch_size
        if self.kind == "timm":
            (patch_tokens, prefix), = self.model.forward_intermediates(
                pixel_values, indices=[layer - 1], return_prefix_tokens=True, norm=True,
                output_fmt="NLC", intermediates_only=True,
            )
            cls_token, registers = prefix[:, 0], prefix[:, 1:]
        else:
            if layer == self.num_layers:
                tokens = self.model(pixel_values=pixel_values).last_hidden_state
            else:
                hidden = self.model(pixel_values=pixel_values, output_hidden_states=True).hidden_states
                tokens = self.model.norm(hidden[layer])
            start = 1 + self.num_registers
            cls_token, registers, patch_tokens = tokens[:, 0], tokens[:, 1:start], tokens[:, start:]
        patches = patch_tokens.reshape(batch, grid_h, grid_w, -1)
        return cls_token.float().cpu(), registers.float().cpu(), patches.float().cpu()

    def extract(self, image: Image.Image, size: int = 448, layer: int | None = None) -> Features:
        """Features of one image, from the cache when this (image, model, size, layer) was seen."""
        layer = self.resolve_layer(layer)
        key = (image_key(image), self.model_id, int(size), layer)

        def compute() -> Features:
            pixel_values = self.preprocess(image, size)
            cls_token, registers, patches = self.forward_batch(pixel_values, layer)
            return Features(
                cls=cls_token[0],
                registers=registers[0],
                patches=patches[0],
                layer=layer,
                input_size=(int(pixel_values.shape[2]), int(pixel_values.shape[3])),
                patch_size=self.patch_size,
                model_id=self.model_id,
                image_size=(image.height, image.width),
            )

        return self.cache.get_or_make(key, compute)
