"""Gram anchoring (DINOv3): keep the student's patch-to-patch similarity structure close
to that of an earlier, frozen teacher.

Why: in long training the dense (patch) features of large models degrade while the
global ones keep improving; matching Gram matrices constrains only the *relations*
between patches (invariant to any rotation of the feature space), so the features
themselves stay free to move.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def gram_matrix(patches: Tensor) -> Tensor:
    """[B, N, D] -> [B, N, N] cosine similarities of the patch features of each image (float32 even
    under bf16 autocast, whose 3 significant digits are the size of the differences being penalised)."""
    with torch.autocast(device_type=patches.device.type, enabled=False):
        x = F.normalize(patches.float(), dim=-1, eps=1e-6)
        return x @ x.transpose(1, 2)


def gram_loss(student_patches: Tensor, teacher_patches: Tensor) -> Tensor:
    """Mean squared difference between per-image Gram matrices; both inputs [B, N, D]."""
    return F.mse_loss(gram_matrix(student_patches), gram_matrix(teacher_patches.detach()))


def resample_patch_grid(patches: Tensor, grid: tuple[int, int], out_grid: tuple[int, int], renormalize: bool = True) -> Tensor:
    """Bilinearly resample patch features [B, h*w, D] on grid (h, w) to out_grid; [B, h'*w', D].

    Used to bring the Gram teacher's 2x-resolution patch grid onto the student's grid;
    re-normalising keeps them unit vectors after averaging.
    """
    b, _, d = patches.shape
    x = patches.float().transpose(1, 2).reshape(b, d, grid[0], grid[1])
    if renormalize:
        x = F.normalize(x, dim=1, eps=1e-6)
    x = F.interpolate(x, size=out_grid, mode="bilinear", align_corners=False)
    if renormalize:
        x = F.normalize(x, dim=1, eps=1e-6)
    return x.flatten(2).transpose(1, 2)
