import numpy as np
import pytest
import torch

from explorer.analysis import pca_rgb


def _reference(x: np.ndarray, fit: np.ndarray, k: int = 3) -> np.ndarray:
    """Scores of ``x`` on the top-k right singular vectors of centred ``fit``, min-max scaled on fit."""
    mean = fit.mean(0)
    u, _, vt = np.linalg.svd(fit - mean, full_matrices=False)
    scores = (x - mean) @ vt[:k].T
    fit_scores = (fit - mean) @ vt[:k].T
    for i in range(k):  # sign: the fitted row with the largest |u| gets a positive score
        if u[np.argmax(np.abs(u[:, i])), i] < 0:
            scores[:, i] *= -1
            fit_scores[:, i] *= -1
    lo, hi = fit_scores.min(0), fit_scores.max(0)
    return np.clip((scores - lo) / (hi - lo), 0, 1)


@pytest.mark.parametrize("dim", [6, 40])  # fewer dims than patches (scatter-matrix path) and more (SVD path)
def test_matches_svd_by_hand(dim: int) -> None:
    rng = np.random.default_rng(1)
    patches = rng.standard_normal((3, 4, dim))
    rgb = pca_rgb(patches, percentiles=(0, 100))
    x = patches.reshape(12, dim)
    assert rgb.shape == (3, 4, 3) and rgb.dtype == np.float32
    np.testing.assert_allclose(rgb.reshape(12, 3), _reference(x, x), atol=1e-5)
    assert rgb.min() == 0.0 and rgb.max() == 1.0


def test_mask_fits_foreground_only_and_blacks_background() -> None:
    rng = np.random.default_rng(2)
    patches = rng.standard_normal((4, 4, 5))
    mask = np.zeros((4, 4), dtype=bool)
    mask[1:3, 0:3] = True
    rgb = pca_rgb(torch.from_numpy(patches).float(), mask=mask, percentiles=(0, 100))
    x = patches.reshape(16, 5)
    ref = _reference(x, x[mask.ravel()])
    np.testing.assert_allclose(rgb[mask], ref[mask.ravel()], atol=1e-5)
    assert np.all(rgb[~mask] == 0)
    dim = pca_rgb(patches, mask=mask, background="dim", percentiles=(0, 100))
    np.testing.assert_allclose(dim[~mask], 0.25 * ref[~mask.ravel()], atol=1e-5)


def test_sign_convention_is_stable() -> None:
    """Negating every feature negates the centred data; the sign rule must give the same colours."""
    rng = np.random.default_rng(3)
    patches = rng.standard_normal((5, 5, 8)).astype(np.float32)
    a = pca_rgb(patches)
    np.testing.assert_allclose(pca_rgb(-patches), a, atol=1e-5)
    np.testing.assert_array_equal(pca_rgb(patches), a)


def test_low_rank_and_constant_inputs() -> None:
    const = np.ones((3, 3, 4), dtype=np.float32)
    rgb = pca_rgb(const)
    assert np.all(np.isfinite(rgb)) and np.all(rgb == 0.5)  # no variance: mid-grey, not NaN
    grey = pca_rgb(np.random.default_rng(4).standard_normal((3, 3, 4)), n_components=1)
    np.testing.assert_array_equal(grey[..., 0], grey[..., 2])
