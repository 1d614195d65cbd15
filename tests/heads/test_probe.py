"""Linear probe: numpy inference equals sklearn's, and survives a save/load round trip bit for bit."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from explorer.heads import io
from explorer.heads.probe import load_probe, predict, predict_proba, save_probe, topk, train_probe


def _data(k: int, n: int = 90, d: int = 6, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % k
    centers = rng.normal(0, 2, (k, d))
    x = centers[y] + rng.normal(0, 1.5, (n, d)) + 10.0  # offset: standardisation matters
    return x.astype(np.float32), y


@pytest.mark.parametrize("k", [2, 4])
def test_numpy_probabilities_match_sklearn(k: int) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = _data(k)
    head = train_probe(x, y, [f"c{i}" for i in range(k)], C=0.5)
    ref = make_pipeline(StandardScaler(), LogisticRegression(C=0.5, max_iter=1000)).fit(x.astype(np.float64), y)
    np.testing.assert_allclose(predict_proba(head, x), ref.predict_proba(x.astype(np.float64)), atol=1e-5)
    assert (predict(head, x) == ref.predict(x.astype(np.float64))).mean() > 0.98


def test_class_absent_from_training_gets_zero_probability() -> None:
    x, y = _data(3)
    head = train_probe(x, y, ["a", "b", "c", "never"])
    p = predict_proba(head, x)
    assert p.shape == (len(x), 4)
    assert (p[:, 3] == 0).all()
    np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-12)


def test_topk_is_sorted_and_named() -> None:
    x, y = _data(4)
    head = train_probe(x, y, ["a", "b", "c", "d"])
    top = topk(head, x[0], k=3)
    assert len(top) == 3 and [n for n, _ in top][0] == head.class_names[int(predict(head, x[:1])[0])]
    assert top[0][1] >= top[1][1] >= top[2][1]


def test_save_load_round_trip_bit_identical_and_refusal(tmp_path) -> None:
    x, y = _data(3)
    head = train_probe(x, y, ["a", "b", "c"])
    bb = SimpleNamespace(model_id="m", fingerprint="f1", num_layers=2)
    head.card = io.make_card("probe", bb, head.class_names, 224)
    save_probe(head, tmp_path)
    loaded = load_probe(tmp_path, bb)
    assert np.array_equal(predict_proba(loaded, x), predict_proba(head, x))
    assert loaded.class_names == ["a", "b", "c"]
    with pytest.raises(io.HeadMismatchError):
        load_probe(tmp_path, SimpleNamespace(model_id="other", fingerprint="f2"))


def test_cls_avgpool_probe_reads_features_like_the_cache() -> None:
    import torch

    from explorer.heads.probe import features_vector, probe_input

    rng = np.random.default_rng(1)
    grids = torch.from_numpy(rng.normal(size=(30, 2, 3, 4)).astype(np.float32))
    cls = torch.from_numpy(rng.normal(size=(30, 4)).astype(np.float32))
    y = np.arange(30) % 3
    x = probe_input("cls+avgpool", cls, grids.mean(dim=(1, 2)))
    assert x.shape == (30, 8)
    head = train_probe(x, y, ["a", "b", "c"], feature="cls+avgpool")
    one = SimpleNamespace(cls=cls[4], patches=grids[4])
    np.testing.assert_allclose(features_vector(head, one)[0], x[4], rtol=1e-6)
    np.testing.assert_allclose(predict_proba(head, one)[0], predict_proba(head, x[4:5])[0], rtol=1e-6)
    assert topk(head, one, k=1)[0][0] == head.class_names[int(predict(head, x[4:5])[0])]
    with pytest.raises(ValueError):
        probe_input("cls+avgpool", cls)
