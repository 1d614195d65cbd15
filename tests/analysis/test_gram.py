"""The Gram view and the one Gram loss (app and recipe), against hand-computed values."""

import numpy as np
import pytest
import torch

from explorer.analysis import gram_anchoring_loss, gram_loss, gram_matrix, gram_order, resample_grid


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


def test_resample_is_bicubic_without_antialias_as_dinov3() -> None:
    """Hand-computed bicubic (PyTorch's a = -0.75, borders clamped) for a 1x4 -> 1x2 row: output
    centres sit at input x = 0.5 and 2.5, weights (-3/32, 19/32, 19/32, -3/32) around them."""
    row = np.array([1.0, 2.0, 4.0, 8.0], np.float32).reshape(1, 4, 1)
    out = resample_grid(row, (1, 2))[0, :, 0]
    w = np.array([-3, 19, 19, -3]) / 32
    expected = [w @ [1, 1, 2, 4], w @ [2, 4, 8, 8]]  # index -1 clamps to 0, index 4 to 3
    np.testing.assert_allclose(out, expected, rtol=1e-6)
    big = np.random.default_rng(1).standard_normal((6, 8, 4)).astype(np.float32)
    np.testing.assert_array_equal(resample_grid(big, (6, 8)), big)


def test_loss_across_resolutions_by_hand() -> None:
    """``b`` (1x4) is resampled to ``a``'s 1x2 grid BEFORE normalising, so its norms matter: tokens
    2e1, 2e1, e2, e2 give u = (2*35/32) e1 - (3/32) e2 and v = -(2*3/32) e1 + (35/32) e2 (the bicubic
    weights of the test above, 35/32 = 16/32 + 19/32 at the clamped border); ``a`` = (e1, e2) has cosine 0, so the loss is 2 cos(u, v)^2 / 4."""
    a = np.array([[[1.0, 0.0], [0.0, 1.0]]])
    b = np.array([[[2.0, 0.0], [2.0, 0.0], [0.0, 1.0], [0.0, 1.0]]])
    u = np.array([70 / 32, -3 / 32])
    v = np.array([-6 / 32, 35 / 32])
    cos = u @ v / (np.linalg.norm(u) * np.linalg.norm(v))
    assert gram_loss(a, b) == pytest.approx(2 * cos**2 / 4, rel=1e-6)
    # normalising first (the other order) would see unit tokens e1, e1, e2, e2 and a symmetric cosine
    sym = np.array([35 / 32, -3 / 32])
    cos_other = 2 * sym[0] * sym[1] / (sym @ sym)
    assert abs(2 * cos_other**2 / 4 - gram_loss(a, b)) > 1e-3
    with pytest.raises(ValueError):
        gram_loss(a.reshape(2, 2), b.reshape(4, 2))


def test_rotation_invariance_survives_resampling() -> None:
    rng = np.random.default_rng(3)
    a = rng.standard_normal((3, 4, 8))
    big = rng.standard_normal((6, 8, 8))
    q, _ = np.linalg.qr(rng.standard_normal((8, 8)))
    assert gram_loss(a, big @ q) == pytest.approx(gram_loss(a, big), rel=1e-9)
    assert gram_loss(a @ q, big) == pytest.approx(gram_loss(a, big), rel=1e-9)


def test_recipe_and_app_compute_the_same_loss() -> None:
    """The recipe's batched loss on a high-resolution teacher equals the app's per-image loss, averaged."""
    from explorer.ssl.losses import gram_anchoring_loss as recipe_loss
    from explorer.ssl.losses import resample_patch_tokens

    g = torch.Generator().manual_seed(0)
    student = torch.randn(3, 4 * 4, 8, generator=g)
    teacher_hi = torch.randn(3, 8 * 8, 8, generator=g)
    recipe = recipe_loss(student, resample_patch_tokens(teacher_hi, (8, 8), (4, 4))).item()
    app = np.mean([gram_loss(student[i].reshape(4, 4, 8), teacher_hi[i].reshape(8, 8, 8)) for i in range(3)])
    assert recipe == pytest.approx(app, rel=1e-5)


def test_both_forms_of_the_loss_agree() -> None:
    """P <= D forms the Gram matrices, P > D uses the d x d identity: same value either way."""
    rng = np.random.default_rng(4)
    for p, d in ((6, 16), (40, 4)):
        a, b = rng.standard_normal((p, d)), rng.standard_normal((p, d))
        ua = a / np.linalg.norm(a, axis=1, keepdims=True)
        ub = b / np.linalg.norm(b, axis=1, keepdims=True)
        reference = np.mean((ua @ ua.T - ub @ ub.T) ** 2)  # float64, P x P on purpose
        assert gram_loss(a, b) == pytest.approx(reference, rel=1e-9)


def test_loss_stays_float32_under_bf16_autocast() -> None:
    g = torch.Generator().manual_seed(0)
    a = torch.randn(2, 49, 64, generator=g)
    b = a + 0.05 * torch.randn(2, 49, 64, generator=g)
    reference = gram_anchoring_loss(a, b)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under_autocast = gram_anchoring_loss(a, b)
    assert under_autocast.dtype == torch.float32
    assert under_autocast.item() == pytest.approx(reference.item(), rel=1e-5)


def test_loss_gradient_flows_to_the_student_only() -> None:
    g = torch.Generator().manual_seed(5)
    s = torch.randn(2, 9, 4, generator=g, requires_grad=True)
    t = torch.randn(2, 9, 4, generator=g, requires_grad=True)
    gram_anchoring_loss(s, t).backward()
    assert s.grad is not None and s.grad.abs().sum() > 0 and t.grad is None


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
