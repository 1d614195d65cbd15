import numpy as np
import pytest
import torch

from explorer.analysis import patch_similarity


def test_hand_computed_2x2() -> None:
    patches = np.array([[[1.0, 0.0], [0.0, 2.0]], [[3.0, 3.0], [-1.0, 0.0]]], dtype=np.float32)
    sim = patch_similarity(patches, 0, 0)
    expected = np.array([[1.0, 0.0], [1 / np.sqrt(2), -1.0]], dtype=np.float32)
    assert sim.dtype == np.float32 and sim.shape == (2, 2)
    np.testing.assert_allclose(sim, expected, atol=1e-6)


def test_one_at_clicked_patch_and_torch_input() -> None:
    rng = np.random.default_rng(0)
    patches = rng.standard_normal((5, 7, 16)).astype(np.float32)
    for r, c in [(0, 0), (4, 6), (2, 3)]:
        sim = patch_similarity(torch.from_numpy(patches), r, c)
        assert sim[r, c] == pytest.approx(1.0, abs=1e-6)
        assert sim.max() <= 1.0 and sim.min() >= -1.0
        # Cosine ignores norms: scaling one token changes nothing.
        scaled = patches.copy()
        scaled[1, 1] *= 7.0
        np.testing.assert_allclose(patch_similarity(scaled, r, c), sim, atol=1e-6)


def test_out_of_grid_click_raises() -> None:
    with pytest.raises(IndexError):
        patch_similarity(np.ones((2, 2, 3)), 2, 0)
