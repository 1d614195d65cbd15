"""Every number of the small-scale DINOv3 recipe, in one JSON-backed dataclass.

Why one place: the recipe has ~50 knobs (crop scales, temperatures, schedules,
Gram phase). Scattering them through the code makes runs irreproducible; the
config file written next to each run is the full description of that run.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class ModelConfig:
    """Backbone shape (transformers `DINOv3ViTConfig` fields)."""

    patch_size: int = 16
    hidden_size: int = 192
    num_hidden_layers: int = 12
    num_attention_heads: int = 3
    mlp_ratio: float = 4.0
    num_register_tokens: int = 4
    layerscale_value: float = 1e-5
    drop_path_rate: float = 0.0
    pos_embed_rescale: float | None = 2.0
    max_params: int = 6_000_000


@dataclass
class CropConfig:
    """Multi-crop geometry and photometric augmentation (DINOv2/v3 defaults)."""

    global_size: int = 112
    local_size: int = 48
    num_local: int = 6
    global_scale: tuple[float, float] = (0.32, 1.0)
    local_scale: tuple[float, float] = (0.05, 0.32)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_p: float = 0.5
    jitter_p: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.2
    hue: float = 0.1
    grayscale_p: float = 0.2
    # blur probability per crop type: first global, second global, locals
    blur_p: tuple[float, float, float] = (1.0, 0.1, 0.5)
    blur_sigma: tuple[float, float] = (0.1, 2.0)  # in pixels of a 224-px crop; scaled with crop size
    solarize_p: tuple[float, float, float] = (0.0, 0.2, 0.0)
    solarize_threshold: float = 0.5


@dataclass
class MaskConfig:
    """iBOT block masking."""

    mask_probability: float = 0.5  # fraction of global crops that get a mask
    ratio_min: float = 0.1
    ratio_max: float = 0.5
    min_block_patches: int = 4
    block_aspect: float = 0.3
    max_block_attempts: int = 10


@dataclass
class HeadConfig:
    """DINO / iBOT projection heads."""

    hidden_dim: int = 1024
    bottleneck_dim: int = 256
    num_prototypes: int = 8192
    num_layers: int = 3
    ibot_separate_head: bool = True
    ibot_num_prototypes: int = 8192
    batch_norm: bool = False  # BatchNorm in the head MLPs (batch statistics in student and teacher)


@dataclass
class LossConfig:
    """Loss weights and temperatures."""

    dino_weight: float = 1.0
    ibot_weight: float = 1.0
    koleo_weight: float = 0.1
    student_temp: float = 0.1
    teacher_temp_start: float = 0.04
    teacher_temp_end: float = 0.07
    teacher_temp_warmup_steps: int = 300
    sinkhorn_iterations: int = 3


@dataclass
class GramConfig:
    """Gram anchoring phase."""

    enabled: bool = True
    start_step: int = 1800
    refresh_every: int = 200
    weight: float = 1.0
    # the Gram teacher sees the global crops at this many times their size; its patch grid is
    # resampled to the student's before the loss (explorer.analysis.gram.resample_patch_tokens)
    resolution_factor: float = 2.0


@dataclass
class OptimConfig:
    """AdamW and its schedules."""

    lr: float = 1e-3
    min_lr: float = 1e-6
    warmup_steps: int = 200
    weight_decay_start: float = 0.04
    weight_decay_end: float = 0.2
    betas: tuple[float, float] = (0.9, 0.999)
    clip_grad: float = 3.0
    freeze_prototypes_steps: int = 100
    momentum_start: float = 0.992
    momentum_end: float = 1.0


@dataclass
class RecipeConfig:
    """The whole recipe: model, crops, masking, heads, losses, Gram, optimisation, run length."""

    name: str = "tiny_cpu"
    seed: int = 0
    batch_size: int = 32  # images per process per step
    steps: int = 2000
    pool_size: int = 160  # resolution at which the image pool is stored
    checkpoint_every: int = 250
    log_every: int = 1
    knn_every: int = 250
    knn_k: int = 20
    knn_temperature: float = 0.07
    knn_train: int = 400
    knn_test: int = 200
    knn_size: int = 112
    amp_bf16: bool = True  # student + teacher under bf16 autocast on CUDA
    cpu_amp_bf16: bool = False  # the same on CPU, only where the CPU has native bf16 (avx512_bf16 / amx)
    teacher_bf16: bool = True  # teacher forwards (no grad) in bf16 wherever bf16 is native
    compile: bool = False
    # torch.compile backend of the transformer blocks: "inductor" (fast kernels, minutes to build on a
    # CPU) or "eager" (dynamo's graph capture only: the compiled path, cheap enough for tests)
    compile_backend: str = "inductor"
    model: ModelConfig = field(default_factory=ModelConfig)
    crops: CropConfig = field(default_factory=CropConfig)
    mask: MaskConfig = field(default_factory=MaskConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    gram: GramConfig = field(default_factory=GramConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RecipeConfig:
        return _build(cls, data)

    @classmethod
    def load(cls, path: str | Path) -> RecipeConfig:
        """Read a recipe JSON; unknown keys are an error (typos must not silently fall back)."""
        return cls.from_dict(json.loads(Path(path).read_text()))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2))


def _build(cls: type, data: dict[str, Any]) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(data) - set(fields)
    if unknown:
        raise ValueError(f"unknown keys for {cls.__name__}: {sorted(unknown)}")
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        default = getattr(cls(), name)
        if dataclasses.is_dataclass(default):
            kwargs[name] = _build(type(default), value)
        elif isinstance(default, tuple):
            kwargs[name] = tuple(value)
        else:
            kwargs[name] = value
    return cls(**kwargs)
