"""`Features`: the one value that crosses layers (backbone -> analysis -> viz -> UI)."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Features:
    """Tokens of one image at one layer, already split by role.

    Token layout of a DINOv3 ViT is `[CLS, registers..., patches...]`; the split is done once,
    here, with the register count read from the model config, so no caller can slice wrongly.
    """

    cls: torch.Tensor  # (d,)
    registers: torch.Tensor  # (r, d); r may be 0
    patches: torch.Tensor  # (h, w, d)
    layer: int  # 1-based block index; == num_layers for the last block
    input_size: tuple[int, int]  # (H, W) pixels fed to the model
    patch_size: int
    model_id: str
    image_size: tuple[int, int]  # (H, W) of the original image

    @property
    def grid(self) -> tuple[int, int]:
        """Patch grid (h, w)."""
        return int(self.patches.shape[0]), int(self.patches.shape[1])

    @property
    def dim(self) -> int:
        return int(self.patches.shape[-1])

    def flat(self) -> torch.Tensor:
        """Patch tokens as (h*w, d), row-major — the order of the model's own token sequence."""
        return self.patches.reshape(-1, self.dim)
