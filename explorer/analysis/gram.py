"""Gram view: the P x P similarity structure of the patch features, and the Gram-anchoring loss.

The Gram matrix of L2-normalised patch features is what DINOv3's Gram anchoring preserves (project
report §3.5); showing it reordered so blocks (parts, objects, background) appear, and measuring
the loss between two feature sets, lets a user see what anchoring protects.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from ._common import as_grid, as_tokens, l2_normalize
from .pca import pca_fit


def _unit_tokens(patches: Any) -> np.ndarray:
    """(P, d) float64 rows of unit norm, row-major over the grid."""
    x, _ = as_tokens(patches, np.float64)
    return l2_normalize(x)


def gram_matrix(patches: Any) -> np.ndarray:
    """(P, P) float32 Gram matrix X Xᵀ of L2-normalised features; P = h*w in row-major order."""
    x = _unit_tokens(patches)
    return (x @ x.T).astype(np.float32)


def gram_order(
    patches: Any, method: Literal["pca", "cluster"] = "pca", n_clusters: int = 8, seed: int = 0
) -> np.ndarray:
    """A permutation (int64, length P) that makes the Gram matrix's block structure visible.

    ``"pca"``: sort by the leading principal component of the unit features (sign-fixed as in
    ``pca_fit``). ``"cluster"``: k-means (fixed seed, deterministic) into ``n_clusters`` groups,
    groups ordered by their mean leading-PC score, patches within a group by that score.
    Ties keep row-major order (stable sort).
    """
    x = _unit_tokens(patches)
    p = x.shape[0]
    if p == 1:
        return np.zeros(1, dtype=np.int64)
    mean, comps = pca_fit(x, 1)
    score = (x - mean) @ comps[0]
    if method == "pca":
        return np.argsort(score, kind="stable").astype(np.int64)
    if method != "cluster":
        raise ValueError(f"method must be 'pca' or 'cluster', got {method!r}")
    from sklearn.cluster import KMeans  # heavy import, only when asked

    k = max(1, min(n_clusters, p))
    labels = KMeans(n_clusters=k, n_init=3, random_state=seed).fit_predict(x)
    centre_score = np.array([score[labels == c].mean() if np.any(labels == c) else 0.0 for c in range(k)])
    rank = np.argsort(np.argsort(centre_score, kind="stable"), kind="stable")
    return np.lexsort((score, rank[labels])).astype(np.int64)


def resample_grid(patches: Any, size: tuple[int, int]) -> np.ndarray:
    """Bilinearly resample an (h, w, d) feature grid to (h2, w2, d) float32.

    Uses ``torch.nn.functional.interpolate(mode="bilinear", align_corners=False)``: patch centres map
    to patch centres, so a 2x grid downsamples to 2x2 averages. Needed before comparing Gram matrices
    of two resolutions (as DINOv3 does for its high-resolution Gram teacher).
    """
    import torch
    import torch.nn.functional as F

    grid = as_grid(patches)
    h2, w2 = int(size[0]), int(size[1])
    if (h2, w2) == grid.shape[:2]:
        return grid.copy()
    t = torch.from_numpy(np.ascontiguousarray(grid)).permute(2, 0, 1)[None]
    out = F.interpolate(t, size=(h2, w2), mode="bilinear", align_corners=False)
    return out[0].permute(1, 2, 0).contiguous().numpy().astype(np.float32)


def gram_loss(a: Any, b: Any) -> float:
    """Gram-anchoring loss ||X_a X_aᵀ − X_b X_bᵀ||_F² / P² between two feature sets.

    Normalisation: divided by P², i.e. the mean squared difference of Gram entries, so values are
    comparable across resolutions (each entry is a cosine, so the loss lies in [0, 4]). ``a`` and ``b``
    are (h, w, d) grids or (P, d) token rows (the feature dims may differ: two models). When both are
    grids of different size, ``b`` is resampled to ``a``'s grid first (``resample_grid``) and then
    normalised. Computed through d x d products, ||XaᵀXa||² + ||XbᵀXb||² − 2||XaᵀXb||², so no
    P x P matrix is formed.
    """
    xa, grid_a = as_tokens(a, np.float64)
    xb, grid_b = as_tokens(b, np.float64)
    if grid_a is not None and grid_b is not None and grid_a != grid_b:
        xb = resample_grid(b, grid_a).reshape(grid_a[0] * grid_a[1], -1).astype(np.float64)
    if xa.shape[0] != xb.shape[0]:
        raise ValueError(
            f"different token counts {xa.shape[0]} vs {xb.shape[0]}; pass (h, w, d) grids to resample"
        )
    xa, xb = l2_normalize(xa), l2_normalize(xb)
    p = xa.shape[0]
    aa = np.sum((xa.T @ xa) ** 2)
    bb = np.sum((xb.T @ xb) ** 2)
    ab = np.sum((xa.T @ xb) ** 2)
    return float(max(aa + bb - 2.0 * ab, 0.0) / (p * p))
