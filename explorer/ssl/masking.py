"""iBOT block masking (BEiT / DINOv2 `MaskingGenerator` style).

Why blocks and not i.i.d. patches: neighbouring patches are highly redundant, so
masking isolated patches lets the student copy from neighbours; rectangular blocks
force it to predict from context. DINOv2/v3 mask half of the global crops, with
target ratios spread evenly over [0.1, 0.5] across the batch.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from explorer.ssl.config import MaskConfig


def block_mask(
    grid_h: int,
    grid_w: int,
    num_masked: int,
    rng: np.random.Generator,
    min_block: int = 4,
    aspect: float = 0.3,
    attempts: int = 10,
) -> np.ndarray:
    """A bool [grid_h, grid_w] mask with exactly `num_masked` patches, built from random rectangles.

    Blocks are placed until no new block fits the remaining budget; the few patches
    still missing (block packing rarely lands exactly) are taken next to masked ones,
    so the requested ratio is exact.
    """
    mask = np.zeros((grid_h, grid_w), dtype=bool)
    log_aspect = (math.log(aspect), math.log(1 / aspect))
    count = 0
    while count < num_masked:
        budget = num_masked - count
        delta = 0
        for _ in range(attempts):
            area = rng.uniform(min(min_block, budget), max(min_block, budget))
            ar = math.exp(rng.uniform(*log_aspect))
            h = int(round(math.sqrt(area * ar)))
            w = int(round(math.sqrt(area / ar)))
            if 0 < h <= grid_h and 0 < w <= grid_w:
                top = int(rng.integers(0, grid_h - h + 1))
                left = int(rng.integers(0, grid_w - w + 1))
                new = h * w - int(mask[top : top + h, left : left + w].sum())
                if 0 < new <= budget:
                    mask[top : top + h, left : left + w] = True
                    delta = new
                    break
        if delta == 0:
            break
        count += delta
    if count < num_masked:
        _top_up(mask, num_masked - count, rng)
    return mask


def _top_up(mask: np.ndarray, missing: int, rng: np.random.Generator) -> None:
    """Mask `missing` more patches, preferring unmasked neighbours of masked ones."""
    for _ in range(missing):
        free = ~mask
        near = np.zeros_like(mask)
        near[1:] |= mask[:-1]
        near[:-1] |= mask[1:]
        near[:, 1:] |= mask[:, :-1]
        near[:, :-1] |= mask[:, 1:]
        cand = np.flatnonzero(free & near) if (free & near).any() else np.flatnonzero(free)
        mask.flat[cand[int(rng.integers(0, len(cand)))]] = True


def sample_ibot_masks(
    num_crops: int, grid_h: int, grid_w: int, cfg: MaskConfig, rng: np.random.Generator
) -> tuple[Tensor, Tensor]:
    """Masks for `num_crops` global crops: bool [num_crops, grid_h*grid_w] and target ratios [num_crops].

    Exactly int(num_crops * mask_probability) crops are masked; their ratios are drawn one
    per bin of an even split of [ratio_min, ratio_max] (DINOv2 collate), then shuffled.
    Unmasked crops have ratio 0.
    """
    n_patches = grid_h * grid_w
    n_masked = int(num_crops * cfg.mask_probability)
    edges = np.linspace(cfg.ratio_min, cfg.ratio_max, n_masked + 1)
    lo_count = math.ceil(cfg.ratio_min * n_patches - 1e-9)
    hi_count = math.floor(cfg.ratio_max * n_patches + 1e-9)
    masks = np.zeros((num_crops, n_patches), dtype=bool)
    ratios = np.zeros(num_crops)
    for i in range(n_masked):
        r = rng.uniform(edges[i], edges[i + 1])
        count = int(np.clip(round(r * n_patches), lo_count, hi_count))
        masks[i] = block_mask(
            grid_h, grid_w, count, rng, cfg.min_block_patches, cfg.block_aspect, cfg.max_block_attempts
        ).reshape(-1)
        ratios[i] = count / n_patches
    order = rng.permutation(num_crops)
    return torch.from_numpy(masks[order]), torch.from_numpy(ratios[order])
