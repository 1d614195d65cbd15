"""Input coercion shared by the analysis functions (torch or numpy in, numpy out)."""

from __future__ import annotations

from typing import Any

import numpy as np


def to_numpy(x: Any, dtype: type = np.float32) -> np.ndarray:
    """Turn a torch tensor / array-like into a numpy array without touching autograd state."""
    if hasattr(x, "detach"):  # torch.Tensor, without importing torch here
        x = x.detach().cpu().float().numpy() if dtype is np.float32 else x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=dtype)


def as_grid(patches: Any, dtype: type = np.float32) -> np.ndarray:
    """Validate a patch grid (h, w, d) and return it as a numpy array of ``dtype``."""
    arr = to_numpy(patches, dtype)
    if arr.ndim != 3:
        raise ValueError(f"expected a patch grid of shape (h, w, d), got shape {arr.shape}")
    if min(arr.shape) < 1:
        raise ValueError(f"empty patch grid: shape {arr.shape}")
    return arr


def as_tokens(patches: Any, dtype: type = np.float32) -> tuple[np.ndarray, tuple[int, int] | None]:
    """Accept (h, w, d) or (P, d); return (P, d) rows (row-major) and the grid if there was one."""
    arr = to_numpy(patches, dtype)
    if arr.ndim == 3:
        h, w, d = arr.shape
        return arr.reshape(h * w, d), (h, w)
    if arr.ndim == 2:
        return arr, None
    raise ValueError(f"expected (h, w, d) or (P, d) features, got shape {arr.shape}")


def l2_normalize(x: np.ndarray, axis: int = -1, eps: float = 1e-12) -> np.ndarray:
    """Unit-normalise along ``axis``; zero vectors stay zero (as torch.nn.functional.normalize)."""
    norm = np.linalg.norm(x, axis=axis, keepdims=True)
    return x / np.maximum(norm, eps)
