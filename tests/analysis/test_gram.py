import numpy as np
import pytest
import torch

from explorer.analysis import gram_loss, gram_matrix, gram_order, resample_grid


def _direct_loss(a: np.ndarray, b: np.ndarray) -> float:
    ga, gb = gram_matrix(a).astype(np.float64), gram_matrix(b).astype(np.float64)
    return float(np.sum((ga - gb) ** 2) / ga.shape[0] ** 2)


def test_gram_matrix_hand_values() -> None:
    patches = np.array([[[2.0, 0.0], [1.0, 1.0]]])  # 1x2 grid
    g = gram_matrix(patches)
    c = 1 / np.sqrt(2)
    np.testing.assert_allclose(g, [[1.0, c], [c, 1.0]], atol=1e-6)
    assert g.dtype == np.float32


def test_loss_hand_computed_2x2() -> None:
    a = np.array([[[1.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [0.0, 1.0]]])
    b = np.array([[[1.0, 0.0], [1.0, 0.0]], [[1.0, 0.0], [1.0, 0.0]]])
    # G_a has 1 where both tokens share an axis (8 of 16 entries), G_b is all ones: 8 entries differ by 1.
    assert gram_loss(a, b) == pytest.approx(8 / 16)
    assert gram_loss(a.reshape(4, 2), b.reshape(4, 2)) == pytest.approx(0.5)


def test_loss_zero_identical_rotation_invariant_and_matches_direct() -> None:
    rng = np.random.default_rng(0)
    a = rng.standard_normal((4, 5, 16))
    b = rng.standard_normal((4, 5, 16))
    assert gram_loss(a, a) == pytest.approx(0.0, abs=1e-12)
    q, _ = np.linalg.qr(rng.standard_normal((16, 16)))
    assert gram_loss(a, a @ q) == pytest.approx(0.0, abs=1e-12)
    assert gram_loss(a @ q, b) == pytest.approx(gram_loss(a, b), rel=1e-9)
    assert gram_loss(torch.from_numpy(a), b) == pytest.approx(_direct_loss(a, b), rel=1e-5)
    # Two models: feature dims may differ.
    c = rng.standard_normal((4, 5, 8))
    assert gram_loss(a, c) == pytest.approx(_direct_loss(a, c), rel=1e-5)


def test_resample_and_loss_across_resolutions() -> None:
    rng = np.random.default_rng(1)
    big = rng.standard_normal((6, 8, 4)).astype(np.float32)
    small = resample_grid(big, (3, 4))
    # align_corners=False at an exact factor of 2 averages 2x2 blocks.
    np.testing.assert_allclose(small, big.reshape(3, 2, 4, 2, 4).mean(axis=(1, 3)), atol=1e-6)
    np.testing.assert_array_equal(resample_grid(big, (6, 8)), big)
    a = rng.standard_normal((3, 4, 4))
    assert gram_loss(a, big) == pytest.approx(_direct_loss(a, small), rel=1e-5)
    with pytest.raises(ValueError):
        gram_loss(a.reshape(12, 4), big.reshape(48, 4))


@pytest.mark.parametrize("method", ["pca", "cluster"])
def test_order_is_permutation_and_groups_blocks(method: str) -> None:
    rng = np.random.default_rng(2)
    dirs = np.eye(6)[:3]
    labels = rng.integers(0, 3, size=(5, 6))
    patches = dirs[labels] + 0.01 * rng.standard_normal((5, 6, 6))
    order = gram_order(patches, method=method, n_clusters=3)
    assert order.dtype == np.int64
    np.testing.assert_array_equal(np.sort(order), np.arange(30))
    # Reordered, each group is contiguous: the label sequence changes value exactly twice.
    seq = labels.ravel()[order]
    assert np.count_nonzero(np.diff(seq)) == 2


def test_pca_order_sorts_a_ramp() -> None:
    t = np.linspace(-1, 1, 12)
    patches = np.stack([np.cos(t), np.sin(t)], axis=-1).reshape(3, 4, 2)[::-1]  # reversed row order
    order = gram_order(patches, method="pca")
    angles = np.arctan2(patches[..., 1], patches[..., 0]).ravel()[order]
    assert np.all(np.diff(angles) > 0) or np.all(np.diff(angles) < 0)
