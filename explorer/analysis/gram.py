"""Gram view: the P x P similarity structure of the patch features, and the Gram-anchoring loss.

The Gram matrix of L2-normalised patch features is what DINOv3's Gram anchoring preserves; showing
it reordered so blocks (parts, objects, background) appear, and measuring the loss between two
feature sets, lets a user see what anchoring protects. The loss is defined once, here
(``gram_anchoring_loss``): the pretraining recipe trains with it and the app's ``gram_loss`` reports
it, so a resolution comparison in the app is the quantity the recipe anchors.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

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


def resample_patch_tokens(tokens: torch.Tensor, grid_hw: tuple[int, int], out_hw: tuple[int, int]) -> torch.Tensor:
    """Resample patch tokens [B, h*w, D] laid out on ``grid_hw`` (H, W) to ``out_hw``: [B, h'*w', D].

    DINOv3's own resize of the Gram teacher's grid to the student's: ``F.interpolate`` bicubic,
    ``antialias=False``, ``align_corners=False`` (patch centres map to patch centres), on the raw
    features -- normalisation comes after, inside ``gram_anchoring_loss``.
    """
    if tuple(grid_hw) == tuple(out_hw):
        return tokens
    b, n, d = tokens.shape
    if n != grid_hw[0] * grid_hw[1]:
        raise ValueError(f"{n} tokens do not fill a {grid_hw[0]}x{grid_hw[1]} grid")
    x = tokens.transpose(1, 2).reshape(b, d, grid_hw[0], grid_hw[1])
    x = F.interpolate(x, size=tuple(out_hw), mode="bicubic", align_corners=False, antialias=False)
    return x.flatten(2).transpose(1, 2)


def resample_grid(patches: Any, size: tuple[int, int]) -> np.ndarray:
    """An (h, w, d) feature grid resampled to ``size`` (H, W) as (h2, w2, d) float32, by
    ``resample_patch_tokens`` (the one resize the Gram loss uses)."""
    grid = as_grid(patches)
    h, w, d = grid.shape
    tokens = torch.from_numpy(np.ascontiguousarray(grid)).reshape(1, h * w, d)
    out = resample_patch_tokens(tokens, (h, w), (int(size[0]), int(size[1])))
    return out[0].reshape(int(size[0]), int(size[1]), d).numpy().astype(np.float32, copy=True)


def gram_anchoring_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """The Gram loss, one definition for the recipe and the app (DINOv3 ``GramLoss``, image level):

        mean over images b of  mean_ij ( s_i . s_j  -  t_i . t_j )^2,   s, t = L2-normalised tokens

    ``student`` [B, P, D] and ``teacher`` [B, P, D'] hold the same P patches (resample the teacher
    first with ``resample_patch_tokens``; D and D' may differ, e.g. two models). Differentiable in
    ``student``; the teacher is detached. Computed in float32 (float64 stays float64) even under bf16
    autocast, whose 3 significant digits are the size of the differences being penalised. When P > D,
    the identity ||S Sᵀ - T Tᵀ||² = ||SᵀS||² + ||TᵀT||² - 2||SᵀT||² avoids the P x P matrices.
    """
    if student.shape[:2] != teacher.shape[:2]:
        raise ValueError(f"student {tuple(student.shape)} and teacher {tuple(teacher.shape)} differ in "
                         "images or patches; resample the teacher's grid first")
    dtype = torch.promote_types(student.dtype, torch.float32)
    with torch.autocast(device_type=student.device.type, enabled=False):
        s = F.normalize(student.to(dtype), dim=-1, eps=1e-6)
        t = F.normalize(teacher.detach().to(dtype), dim=-1, eps=1e-6)
        p = s.shape[1]
        if p <= max(s.shape[2], t.shape[2]):
            per_image = (s @ s.transpose(1, 2) - t @ t.transpose(1, 2)).pow(2).sum(dim=(1, 2))
        else:
            ss = (s.transpose(1, 2) @ s).pow(2).sum(dim=(1, 2))
            tt = (t.transpose(1, 2) @ t).pow(2).sum(dim=(1, 2))
            st = (s.transpose(1, 2) @ t).pow(2).sum(dim=(1, 2))
            per_image = (ss + tt - 2.0 * st).clamp_min(0.0)
        return (per_image / (p * p)).mean()


def gram_loss(a: Any, b: Any) -> float:
    """``gram_anchoring_loss`` between two feature sets of one image, as a float in [0, 4].

    ``a`` and ``b`` are (h, w, d) grids or (P, d) token rows (the feature dims may differ: two
    models). When both are grids of different size, ``b`` is resampled to ``a``'s grid first (as the
    recipe resamples its high-resolution Gram teacher to the student), then both are normalised.
    Computed in float64, through d x d products when P > d (no P x P matrix).
    """
    xa, grid_a = as_tokens(a, np.float64)
    xb, grid_b = as_tokens(b, np.float64)
    tb = torch.from_numpy(xb)[None]
    if grid_a is not None and grid_b is not None and grid_a != grid_b:
        tb = resample_patch_tokens(tb, grid_b, grid_a)
    if xa.shape[0] != tb.shape[1]:
        raise ValueError(
            f"different token counts {xa.shape[0]} vs {tb.shape[1]}; pass (h, w, d) grids to resample"
        )
    return float(gram_anchoring_loss(torch.from_numpy(xa)[None], tb))
