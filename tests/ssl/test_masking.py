"""iBOT block masking: half the global crops masked, ratios spread over [0.1, 0.5], blocky."""

from __future__ import annotations

import numpy as np
import pytest

from explorer.ssl.config import MaskConfig
from explorer.ssl.masking import block_mask, sample_ibot_masks


def _neighbour_fraction(mask: np.ndarray) -> float:
    """Fraction of masked patches that have a masked 4-neighbour (1 for blocks, low for i.i.d.)."""
    near = np.zeros_like(mask)
    near[1:] |= mask[:-1]
    near[:-1] |= mask[1:]
    near[:, 1:] |= mask[:, :-1]
    near[:, :-1] |= mask[:, 1:]
    return float((mask & near).sum() / max(mask.sum(), 1))


@pytest.mark.parametrize("grid", [7, 14])
def test_half_masked_and_ratios_in_range(grid: int) -> None:
    cfg = MaskConfig()
    rng = np.random.default_rng(0)
    n_crops, n_patches = 32, grid * grid
    masks, ratios = sample_ibot_masks(n_crops, grid, grid, cfg, rng)
    assert masks.shape == (n_crops, n_patches)
    counts = masks.sum(dim=1).numpy()
    masked = counts > 0
    assert masked.sum() == n_crops // 2
    real = counts[masked] / n_patches
    assert np.all(real >= 0.1 - 1e-9) and np.all(real <= 0.5 + 1e-9)
    assert np.allclose(real, ratios.numpy()[masked])
    # spread: one ratio per bin of an even split of [0.1, 0.5] (up to rounding to whole patches)
    edges = np.linspace(0.1, 0.5, n_crops // 2 + 1)
    srt = np.sort(real)
    assert np.all(srt >= edges[:-1] - 1.0 / n_patches - 1e-9)
    assert np.all(srt <= edges[1:] + 1.0 / n_patches + 1e-9)


def test_block_masks_are_blocky_and_exact() -> None:
    rng = np.random.default_rng(1)
    fracs_block, fracs_iid = [], []
    for count in range(20, 98, 7):
        m = block_mask(14, 14, count, rng)
        assert m.sum() == count
        fracs_block.append(_neighbour_fraction(m))
        iid = np.zeros(196, dtype=bool)
        iid[rng.choice(196, count, replace=False)] = True
        fracs_iid.append(_neighbour_fraction(iid.reshape(14, 14)))
    assert np.mean(fracs_block) > 0.97
    assert np.mean(fracs_iid) < 0.8


def test_masks_are_deterministic_in_the_generator() -> None:
    cfg = MaskConfig()
    a, _ = sample_ibot_masks(8, 7, 7, cfg, np.random.default_rng(5))
    b, _ = sample_ibot_masks(8, 7, 7, cfg, np.random.default_rng(5))
    assert (a == b).all()
