"""PCA-RGB: the first principal components of the patch features shown as colours."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import scipy.linalg

from ._common import as_grid


def pca_fit(x: np.ndarray, n_components: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean (d,) and sign-fixed components (n, d) of the rows of ``x`` (float64).

    Sign convention (deterministic, so colours don't flip between calls): each component is oriented
    so that the fitted sample with the largest |score| has a positive score (scikit-learn's svd_flip
    on U). Components without variance (beyond the rank of ``x``) come back as zero rows.
    With more rows than dims (the usual case: P patches > d) the d x d scatter matrix is diagonalised
    instead of running an SVD of the P x d data, which is several times faster.
    """
    x = np.asarray(x, dtype=np.float64)
    mean = x.mean(axis=0)
    centred = x - mean
    p, d = centred.shape
    k = min(n_components, p, d)
    if p >= d:
        lam, vecs = scipy.linalg.eigh(centred.T @ centred, subset_by_index=[d - k, d - 1])
        var, basis = lam[::-1], vecs[:, ::-1].T  # descending
    else:
        _, s, vt = np.linalg.svd(centred, full_matrices=False)
        var, basis = s[:k] ** 2, vt[:k]
    comps = np.zeros((n_components, d))
    top = max(float(var[0]), 0.0) if k else 0.0
    for i in range(k):
        if var[i] <= 1e-10 * top or top == 0.0:
            continue  # no variance left: leave a zero component instead of noise
        scores = centred @ basis[i]
        comps[i] = basis[i] if scores[np.argmax(np.abs(scores))] >= 0 else -basis[i]
    return mean, comps


def pca_rgb(
    patches: Any,
    mask: np.ndarray | None = None,
    n_components: int = 3,
    background: Literal["black", "dim"] = "black",
    percentiles: tuple[float, float] = (1.0, 99.0),
) -> np.ndarray:
    """(h, w, 3) float32 colours in [0, 1] from the first ``n_components`` (1-3) principal components.

    With ``mask`` (e.g. the TokenCut mask) the PCA is fitted on foreground patches only, so the
    colours spend their range on the object's parts instead of on object-vs-background; background
    patches are painted black, or with ``background="dim"`` shown at a quarter of their colour.
    A mask with fewer than two foreground patches is ignored (nothing to fit). Each channel is scaled
    by the ``percentiles`` of the fitted scores and clipped, so a few outlier tokens don't wash out
    the image. One component gives grey; with two, blue is 0.
    """
    if not 1 <= n_components <= 3:
        raise ValueError(f"n_components must be 1, 2 or 3, got {n_components}")
    grid = as_grid(patches, np.float64)
    h, w, d = grid.shape
    x = grid.reshape(h * w, d)
    fg = None
    if mask is not None:
        fg = np.asarray(mask, dtype=bool)
        if fg.shape != (h, w):
            raise ValueError(f"mask shape {fg.shape} does not match the grid {(h, w)}")
        fg = fg.reshape(-1)
        if fg.sum() < 2:
            fg = None
    fit_rows = x if fg is None else x[fg]
    mean, comps = pca_fit(fit_rows, n_components)
    scores = (x - mean) @ comps.T  # (P, n)
    fit_scores = scores if fg is None else scores[fg]
    lo = np.percentile(fit_scores, percentiles[0], axis=0)
    hi = np.percentile(fit_scores, percentiles[1], axis=0)
    span = hi - lo
    flat = np.where(span > 1e-12, (scores - lo) / np.where(span > 1e-12, span, 1.0), 0.5)
    flat = np.clip(flat, 0.0, 1.0)
    rgb = np.zeros((h * w, 3))
    if n_components == 1:
        rgb[:] = flat[:, :1]
    else:
        rgb[:, :n_components] = flat
    if fg is not None:
        rgb[~fg] *= 0.0 if background == "black" else 0.25
    return rgb.reshape(h, w, 3).astype(np.float32)
