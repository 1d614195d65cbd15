"""Synthetic patch grids with real spatial structure, for tests and benchmarks.

I.i.d. noise makes a useless TokenCut benchmark: its affinity graph is (nearly) empty and every
eigenvector is degenerate. These grids instead mimic what a ViT produces: a segmentation-like
label map (ellipses and blobs over a background), one feature direction per region, a shared
"anisotropy" direction that every token carries, a smooth background gradient between two
directions, and spatially smooth plus per-token noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage


@dataclass(frozen=True)
class SyntheticGrid:
    """A feature grid and the label map it was drawn from (0 = background, k = object k)."""

    patches: np.ndarray  # float32 (h, w, d)
    labels: np.ndarray  # int64 (h, w)


def _random_shape(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """An ellipse, or a smooth random blob, somewhere in the grid."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    cy, cx = rng.uniform(0.2, 0.8) * h, rng.uniform(0.2, 0.8) * w
    ry, rx = rng.uniform(0.08, 0.3) * h, rng.uniform(0.08, 0.3) * w
    if rng.random() < 0.6:
        theta = rng.uniform(0, np.pi)
        dy, dx = yy - cy, xx - cx
        u = (dx * np.cos(theta) + dy * np.sin(theta)) / rx
        v = (-dx * np.sin(theta) + dy * np.cos(theta)) / ry
        return u * u + v * v <= 1.0
    field = ndimage.gaussian_filter(rng.standard_normal((h, w)), sigma=max(h, w) / 12)
    field /= field.std() + 1e-12
    dist = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2
    return dist + 0.6 * field <= 1.0


def synthetic_grid(
    seed: int,
    h: int = 28,
    w: int = 28,
    d: int = 64,
    n_objects: int | None = None,
    noise: float | None = None,
) -> SyntheticGrid:
    """Draw one structured feature grid; everything is a pure function of ``seed``."""
    rng = np.random.default_rng(seed)
    if n_objects is None:
        n_objects = int(rng.integers(1, 4))
    if noise is None:
        noise = float(rng.uniform(0.15, 0.45))
    labels = np.zeros((h, w), dtype=np.int64)
    for k in range(1, n_objects + 1):
        shape = _random_shape(rng, h, w)
        if shape.sum() < 2:  # guarantee a visible object
            shape[h // 2, w // 2 : w // 2 + 2] = True
        labels[shape] = k

    dirs = rng.standard_normal((n_objects + 3, d))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    shared, bg_a, bg_b, objs = dirs[0], dirs[1], dirs[2], dirs[3:]
    shared_w = rng.uniform(0.1, 0.4)

    # Background: a smooth blend between two directions along a random axis.
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    ang = rng.uniform(0, 2 * np.pi)
    t = np.cos(ang) * xx / max(w - 1, 1) + np.sin(ang) * yy / max(h - 1, 1)
    t = (t - t.min()) / (np.ptp(t) + 1e-12)
    base = (1 - t)[..., None] * bg_a + t[..., None] * bg_b
    for k in range(1, n_objects + 1):
        base[labels == k] = objs[k - 1]
    base = base + shared_w * shared

    smooth = ndimage.gaussian_filter(rng.standard_normal((h, w, d)), sigma=(2.0, 2.0, 0))
    smooth /= smooth.std() + 1e-12
    iid = rng.standard_normal((h, w, d))
    feats = base + noise * (0.7 * smooth + 0.3 * iid) / np.sqrt(d) * 4.0
    feats *= rng.uniform(0.5, 2.0, size=(h, w, 1))  # token norms vary; cosine ignores them
    return SyntheticGrid(patches=feats.astype(np.float32), labels=labels)
