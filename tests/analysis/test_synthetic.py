import numpy as np

from explorer.analysis.synthetic import synthetic_grid


def test_deterministic_shapes_and_structure() -> None:
    a, b = synthetic_grid(3, 12, 9, 16), synthetic_grid(3, 12, 9, 16)
    np.testing.assert_array_equal(a.patches, b.patches)
    assert a.patches.shape == (12, 9, 16) and a.patches.dtype == np.float32
    assert a.labels.shape == (12, 9) and a.labels.max() >= 1 and (a.labels == 0).any()
    # Real structure: same-region tokens are more alike than tokens of different regions.
    f = a.patches.reshape(-1, 16) / np.linalg.norm(a.patches.reshape(-1, 16), axis=1, keepdims=True)
    lab = a.labels.ravel()
    cos = f @ f.T
    same = lab[:, None] == lab[None, :]
    assert cos[same].mean() > cos[~same].mean() + 0.3
    assert not np.array_equal(synthetic_grid(4, 12, 9, 16).patches, a.patches)
