"""`Features`: the one value that crosses layers (backbone -> analysis -> viz -> UI)."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Features:
    """Tokens of one image at one layer, already split by role.

    Token layout of a DINO ViT is `[CLS, registers..., patches...]`; the split is done once, by the
    family's adapter, so no caller can slice wrongly. A ConvNeXt's CLS is its pooled token, it has no
    registers, and `patch_size` is the stride of the chosen stage.
    The constructor checks the fields agree, so a wrong split fails here and not in a view.
    """

    cls: torch.Tensor  # (d,)
    registers: torch.Tensor  # (r, d); r may be 0
    patches: torch.Tensor  # (h, w, d)
    layer: int  # 1-based block (ConvNeXt: stage) index; == num_layers for the last
    input_size: tuple[int, int]  # (H, W) pixels fed to the model
    patch_size: int  # pixels per grid cell
    model_id: str
    image_size: tuple[int, int]  # (H, W) of the original image

    def __post_init__(self) -> None:
        problems = []
        if self.patches.dim() != 3:
            problems.append(f"patches must be (h, w, d), got shape {tuple(self.patches.shape)}")
        else:
            dim = self.patches.shape[-1]
            if tuple(self.cls.shape) != (dim,):
                problems.append(f"cls must be ({dim},) like the patches, got {tuple(self.cls.shape)}")
            if self.registers.dim() != 2 or self.registers.shape[1] != dim:
                problems.append(f"registers must be (r, {dim}), got {tuple(self.registers.shape)}")
            for name in ("cls", "registers", "patches"):
                dtype = getattr(self, name).dtype
                if dtype != torch.float32:
                    problems.append(f"{name} must be float32, got {dtype}")
            if len(self.input_size) == 2 and self.patch_size > 0:
                expected = (self.input_size[0] // self.patch_size, self.input_size[1] // self.patch_size)
                if tuple(self.patches.shape[:2]) != expected:
                    problems.append(f"a {self.input_size[0]}x{self.input_size[1]} input at patch {self.patch_size} "
                                    f"gives a {expected[0]}x{expected[1]} grid, "
                                    f"not {self.patches.shape[0]}x{self.patches.shape[1]}")
        if len(self.input_size) != 2 or len(self.image_size) != 2:
            problems.append(f"input_size and image_size are (H, W) pairs, got {self.input_size}, {self.image_size}")
        if self.patch_size <= 0:
            problems.append(f"patch_size must be positive, got {self.patch_size}")
        if self.layer < 1:
            problems.append(f"layer is 1-based, got {self.layer}")
        if problems:
            raise ValueError("Features: " + "; ".join(problems))

    @classmethod
    def from_grid(cls, patches: torch.Tensor, *, cls_token: torch.Tensor | None = None,
                  input_size: tuple[int, int] | None = None, layer: int = 1, model_id: str = "grid",
                  image_size: tuple[int, int] | None = None) -> Features:
        """Features of a patch grid (h, w, d) that did not come from one `Backbone.extract` call: rows of a
        dataset's cached grids, planted test grids. No registers; the CLS is zeros unless given; the input
        is 16 px per cell unless `input_size` (H, W) says otherwise; `image_size` defaults to the input."""
        h, w, d = (int(n) for n in patches.shape)
        input_size = tuple(input_size) if input_size is not None else (16 * h, 16 * w)
        return cls(cls=(cls_token if cls_token is not None else torch.zeros(d)).float(),
                   registers=torch.zeros(0, d), patches=patches.float(), layer=layer,
                   input_size=input_size, patch_size=max(1, input_size[0] // h), model_id=model_id,
                   image_size=tuple(image_size) if image_size is not None else input_size)

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
