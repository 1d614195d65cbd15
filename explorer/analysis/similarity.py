"""Patch similarity: how much every patch looks like the clicked one."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._common import as_grid, l2_normalize


def patch_similarity(patches: Any, row: int, col: int) -> np.ndarray:
    """Cosine similarity (h, w) float32 of patch (row, col) to every patch, clipped to [-1, 1].

    Cosine rather than dot product because token norms vary a lot in ViTs (high-norm outlier tokens)
    and would otherwise dominate the map. A zero feature vector has similarity 0 to everything.
    """
    grid = as_grid(patches)
    h, w, _ = grid.shape
    if not (0 <= row < h and 0 <= col < w):
        raise IndexError(f"patch ({row}, {col}) is outside the {h}x{w} grid")
    unit = l2_normalize(grid.astype(np.float64))
    sim = unit @ unit[row, col]
    return np.clip(sim, -1.0, 1.0).astype(np.float32)
