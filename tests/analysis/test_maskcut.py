import numpy as np
import pytest
import scipy.linalg
from scipy import ndimage

from explorer.analysis.maskcut import MaskCutter, maskcut
from explorer.analysis.tokencut import TokenCutGraph
from tests.fixtures.synthetic_grids import synthetic_grid


def _reference_maskcut(patches: np.ndarray, tau: float, n: int, eps: float = 1e-5) -> list[np.ndarray]:
    """A straightforward MaskCut loop on dense matrices (CutLER's rules, the module's drop policy)."""
    h, w, d = patches.shape
    p = h * w
    feats = patches.reshape(p, d).astype(np.float32)
    feats = feats / np.maximum(np.linalg.norm(feats, axis=1, keepdims=True), 1e-12)
    taken = np.zeros(p, dtype=bool)
    kept: list[np.ndarray] = []
    objects = []
    for k in range(n):
        if (~taken).sum() <= 0.01 * p:
            break
        f = feats * (~taken)[:, None]  # zero the features of the patches already taken
        wmat = np.where(f @ f.T > tau, 1.0, eps)
        dmat = np.diag(wmat.sum(axis=1))
        _, vecs = scipy.linalg.eigh(dmat - wmat, dmat, subset_by_index=[1, 2])
        v = vecs[:, 0]
        part = v > v.sum() / p
        if not part[np.argmax(np.abs(v))]:  # the seed's side is the foreground ...
            v, part = -v, ~part
        if int(part[0]) + int(part[w - 1]) + int(part[p - w]) + int(part[p - 1]) >= 3:  # ... unless 3 corners
            v, part = -v, ~part
        labels, _ = ndimage.label(part.reshape(h, w))
        mask = (labels == labels.ravel()[np.argmax(v)]).ravel()
        if k > 0:
            ious = [(mask & m).sum() / (mask | m).sum() for m in kept]
            if mask.mean() <= 0.01 or max(ious) > 0.5 or not (mask & ~taken).any():
                break
        objects.append((mask & ~taken).reshape(h, w))
        kept.append(mask)
        taken |= mask
    return objects


def _planted(seed: int, h: int = 16, w: int = 18, d: int = 24, noise: float = 0.25) -> tuple[np.ndarray, list]:
    """Background plus three separated rectangles, each with its own feature direction."""
    rng = np.random.default_rng(seed)
    dirs = np.linalg.qr(rng.standard_normal((d, 4)))[0].T
    labels = np.zeros((h, w), dtype=int)
    boxes = [(1, 1, 6, 8), (9, 2, 14, 6), (6, 11, 13, 16)]
    for k, (r0, c0, r1, c1) in enumerate(boxes, start=1):
        labels[r0:r1, c0:c1] = k
    feats = dirs[labels] + noise * rng.standard_normal((h, w, d)) / np.sqrt(d)
    return feats.astype(np.float32), [labels == k for k in range(1, 4)]


@pytest.mark.parametrize("solver", ["dense", "fast"])
@pytest.mark.parametrize("seed,tau", [(0, 0.15), (1, 0.2), (2, 0.3), (3, 0.15)])
def test_same_masks_as_a_reference_loop(seed: int, tau: float, solver: str) -> None:
    g = synthetic_grid(seed, 12, 14, 16, n_objects=3)
    ref = _reference_maskcut(g.patches, tau, 5)
    got = maskcut(g.patches, tau=tau, n=5, solver=solver)
    assert len(got.objects) == len(ref)
    for obj, mask in zip(got.objects, ref, strict=True):
        np.testing.assert_array_equal(obj.mask, mask)
        rows, cols = np.nonzero(mask)
        assert obj.box == (rows.min(), cols.min(), rows.max() + 1, cols.max() + 1)


@pytest.mark.parametrize("seed", [0, 1])
def test_planted_objects_are_found(seed: int) -> None:
    feats, truth = _planted(seed)
    cutter = MaskCutter.from_patches(feats)
    one = cutter.run(0.3, 1)
    four = cutter.run(0.3, 4)
    assert len(one.objects) == 1
    found = [max(((o.mask & t).sum() / (o.mask | t).sum()) for o in four.objects) for t in truth]
    assert min(found) > 0.9, found  # every planted rectangle is one of the objects
    for o in four.objects:
        assert 0 <= o.ncut < 0.5 and o.area > 0.01
    np.testing.assert_array_equal(four.objects[0].mask, one.objects[0].mask)  # prefix property
    np.testing.assert_array_equal(
        four.objects[0].mask, _reference_maskcut(feats, 0.3, 1)[0]
    )


def test_rounds_are_cached_per_tau_prefix() -> None:
    feats, _ = _planted(0)
    cutter = MaskCutter.from_patches(feats)
    three = cutter.run(0.3, 3)
    calls = []
    original = cutter.graph.cut
    cutter.graph.cut = lambda *a, **k: calls.append(1) or original(*a, **k)  # type: ignore[method-assign]
    two = cutter.run(0.3, 2)
    assert calls == []  # a prefix of what was computed: no cut at all
    for a, b in zip(two.objects, three.objects[:2], strict=True):
        np.testing.assert_array_equal(a.mask, b.mask)
    cutter.run(0.3, 4)
    assert len(calls) <= 1  # one more round at most


def test_degenerate_later_rounds_end_cleanly() -> None:
    """One object on a uniform background: after it, the rest is a complete graph (λ2 = λ3)."""
    rng = np.random.default_rng(0)
    feats = np.zeros((12, 12, 8), np.float32)
    feats[...] = np.eye(8)[0]
    feats[3:7, 4:9] = np.eye(8)[1]
    feats += 0.01 * rng.standard_normal(feats.shape).astype(np.float32)
    res = maskcut(feats, tau=0.5, n=6)
    assert len(res.rounds) == 6
    assert len(res.objects) == len(_reference_maskcut(feats, 0.5, 6))
    for obj, mask in zip(res.objects, _reference_maskcut(feats, 0.5, 6), strict=True):
        np.testing.assert_array_equal(obj.mask, mask)
    dropped = [r for r in res.rounds if not r.kept]
    assert dropped and all(r.reason for r in dropped)
    union = np.zeros((12, 12), bool)
    for o in res.objects:  # objects never share a patch
        assert not (union & o.mask).any()
        union |= o.mask


def test_everything_taken_and_bad_n() -> None:
    res = maskcut(np.ones((9, 9, 4), np.float32), tau=0.2, n=3)  # one complete graph, no structure
    assert 1 <= len(res.objects) <= 3
    with pytest.raises(ValueError, match="between 1 and"):
        MaskCutter(TokenCutGraph.from_patches(np.ones((4, 4, 2), np.float32))).run(0.2, 0)
