"""`Backbone`: one wrapper over every supported DINO family (see `explorer.backbone.families`).

It owns preprocessing, the token split (through the family's adapter), the precision of the forward
and the feature cache, so the rest of the app never touches a model directly and never runs a second
forward for an image it has already seen.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

import torch
from PIL import Image

from explorer.backbone.cache import LRU, image_key
from explorer.backbone.families import FAMILY_NAMES, Adapter, TokenSplit, adapt
from explorer.backbone.features import Features
from explorer.backbone.precision import resolve_precision
from explorer.backbone.preprocess import PIXELS_RECIPE, preprocess, preprocess_many

# Config entries that say how a model was saved or loaded, not what it computes.
NON_ARCHITECTURE_KEYS = {"transformers_version", "dtype", "torch_dtype", "architectures", "name_or_path"}


def default_device() -> torch.device:
    """CUDA when present, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class Backbone:
    """A frozen DINO backbone plus everything needed to turn an image into `Features`."""

    def __init__(
        self,
        adapter: Adapter,
        model_id: str,
        *,
        device: torch.device | None = None,
        precision: str | None = None,
        cache_entries: int = 32,
    ) -> None:
        self.device = device or default_device()
        self.adapter = adapter
        self.model = adapter.model.eval().to(self.device)
        self.model_id = model_id
        weights_dtype = next(self.model.parameters()).dtype
        # bf16 weights (loaded so to fit in memory) make every forward a bf16 one, whatever was asked.
        self.precision = "bf16" if weights_dtype == torch.bfloat16 else resolve_precision(precision, self.device)
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
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        device: torch.device | None = None,
        precision: str | None = None,
    ) -> Backbone:
        """Wrap an in-memory transformers or timm DINO model (tests, training, evaluation).

        Mean/std default to the weights' own (timm's pretrained config; SAT-493M's for a `sat493m` id;
        else ImageNet's).
        """
        return cls(adapt(model, model_id, mean, std), model_id, device=device, precision=precision)

    from_timm = from_model  # one constructor for both libraries; the adapter tells them apart

    # ------------------------------------------------------------------ description
    @property
    def family(self) -> str:
        """"dinov3-vit", "dinov3-convnext" or "dinov2"."""
        return self.adapter.family

    @property
    def family_name(self) -> str:
        return FAMILY_NAMES[self.adapter.family]

    @property
    def library(self) -> str:
        """"transformers" or "timm"."""
        return self.adapter.library

    kind = library

    @property
    def patch_size(self) -> int:
        """Input sides are multiples of this; the grid stride of the last layer (ConvNeXt: 32)."""
        return self.adapter.patch_size

    @property
    def num_registers(self) -> int:
        return self.adapter.num_registers

    @property
    def has_registers(self) -> bool:
        return self.adapter.has_registers

    @property
    def has_cls(self) -> bool:
        """True for every family; ConvNeXt's "CLS" is its pooled token."""
        return self.adapter.has_cls

    @property
    def num_layers(self) -> int:
        """ViT blocks, or ConvNeXt stages."""
        return self.adapter.num_layers

    @property
    def hidden_size(self) -> int:
        """Width of the last layer (ConvNeXt stages are narrower: see `dim`)."""
        return self.adapter.hidden_size

    def dim(self, layer: int | None = None) -> int:
        return self.adapter.dim(self.resolve_layer(layer))

    def stride(self, layer: int | None = None) -> int:
        """Pixels per grid cell at `layer` (ViT: the patch; ConvNeXt stage k: 4 * 2**(k-1))."""
        return self.adapter.stride(self.resolve_layer(layer))

    @property
    def mean(self) -> tuple[float, ...]:
        return self.adapter.mean

    @property
    def std(self) -> tuple[float, ...]:
        return self.adapter.std

    @property
    def config(self) -> dict:
        return self.adapter.config

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

    @property
    def feature_id(self) -> str:
        """Model id plus forward precision: the key part that keeps bf16 and fp32 features apart."""
        return f"{self.model_id}@{self.precision}"

    def resolve_layer(self, layer: int | None) -> int:
        """1-based layer; None = the last; -1 … -n count from the end. Anything else raises ValueError."""
        count = self.num_layers
        if layer is None:
            return count
        if isinstance(layer, bool) or int(layer) != layer:
            raise ValueError(f"layer must be a whole number, not {layer!r}")
        layer = int(layer)
        if 1 <= layer <= count:
            return layer
        if -count <= layer <= -1:
            return count + 1 + layer
        unit = "stages" if self.family == "dinov3-convnext" else "layers"
        raise ValueError(f"layer {layer} is out of range for {self.model_id} ({count} {unit}): "
                         f"use 1..{count}, -{count}..-1 from the end, or None for the last")

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

        bf16 precision runs the forward under autocast (the weights' own dtype when they were loaded
        in bf16 to fit in memory); the tokens always come back float32.
        """
        layer = self.resolve_layer(layer)
        pixel_values = pixel_values.to(self.device, next(self.model.parameters()).dtype)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            cls_token, registers, patches = self.adapter.tokens(pixel_values, layer)
        return cls_token.float().cpu(), registers.float().cpu(), patches.float().cpu()

    def extract(self, image: Image.Image, size: int = 448, layer: int | None = None) -> Features:
        """Features of one image, from the cache when this (image, model, precision, size, layer) was seen."""
        layer = self.resolve_layer(layer)
        key = (image_key(image), self.feature_id, int(size), layer)

        def compute() -> Features:
            pixel_values = self.preprocess(image, size)
            cls_token, registers, patches = self.forward_batch(pixel_values, layer)
            return Features(
                cls=cls_token[0],
                registers=registers[0],
                patches=patches[0],
                layer=layer,
                input_size=(int(pixel_values.shape[2]), int(pixel_values.shape[3])),
                patch_size=self.adapter.stride(layer),
                model_id=self.model_id,
                image_size=(image.height, image.width),
            )

        return self.cache.get_or_make(key, compute)
