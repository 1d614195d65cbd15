import numpy as np
import pytest
import scipy.linalg
import torch
from scipy import ndimage

from explorer.analysis import TokenCutGraph, box_to_pixels, tokencut, tokencut_sweep
from explorer.analysis.tokencut import BinaryGraph, _cut, _Spectrum
from tests.fixtures.synthetic_grids import synthetic_grid


def _reference(patches: np.ndarray, tau: float, eps: float = 1e-5) -> tuple[np.ndarray, np.ndarray, int]:
    """Straight transcription of TokenCut's object_discovery.ncut (mask, oriented eigvec, seed)."""
    h, w, d = patches.shape
    f = patches.reshape(h * w, d).astype(np.float32)
    f = f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)
    a = f @ f.T
    a = a > tau
    a = np.where(a.astype(float) == 0, eps, a)
    dm = np.diag(np.sum(a, axis=1))
    _, vecs = scipy.linalg.eigh(dm - a, dm, subset_by_index=[1, 2])
    vec = vecs[:, 0]
    part = vec > np.sum(vec) / len(vec)
    seed = int(np.argmax(np.abs(vec)))
    if part[seed] != 1:
        vec = -vec
        part = np.logical_not(part)
    objects, _ = ndimage.label(part.reshape(h, w).astype(float))
    mask = objects == objects[np.unravel_index(seed, (h, w))]
    return mask, vec.reshape(h, w), seed


def _two_cliques(h: int, w: int, block: tuple[slice, slice]) -> np.ndarray:
    patches = np.zeros((h, w, 2), dtype=np.float32)
    patches[..., 1] = 1.0
    patches[block] = [1.0, 0.0]
    return patches


@pytest.mark.parametrize("solver", ["fast", "dense"])
@pytest.mark.parametrize("shape", [(3, 4), (8, 10)])  # 12 patches: dense path; 80: fast path
def test_two_cliques_hand_computed(solver: str, shape: tuple[int, int]) -> None:
    h, w = shape
    patches = _two_cliques(h, w, (slice(0, 2), slice(1, 3)))
    eps = 1e-5
    res = tokencut(patches, tau=0.2, eps=eps, solver=solver)
    n1, n2 = 4, h * w - 4
    vol1, vol2 = n1 * (n1 + eps * n2), n2 * (n2 + eps * n1)
    cut = eps * n1 * n2
    # Block-constant vectors are exact eigenvectors: λ2 = Ncut(blocks); every zero-sum in-block vector has λ = 1.
    assert res.eigenvalues[0] == pytest.approx(cut / vol1 + cut / vol2, rel=1e-6)
    assert res.eigenvalues[1] == pytest.approx(1.0, rel=1e-6)
    assert res.ncut == pytest.approx(cut / vol1 + cut / vol2, rel=1e-6)
    expected = np.zeros((h, w), dtype=bool)
    expected[0:2, 1:3] = True
    np.testing.assert_array_equal(res.mask, expected)
    np.testing.assert_array_equal(res.bipartition, expected)
    assert res.box == (0, 1, 2, 3)
    assert res.mask[res.seed]
    assert np.all(res.eigenvector[expected] > 0) and np.all(res.eigenvector[~expected] < 0)
    assert res.confident and res.message == ""
    assert res.solver == ("dense" if h * w < 64 else solver)


def test_reverse_rule_makes_result_sign_invariant() -> None:
    g = synthetic_grid(5, 12, 12, 16)
    graph = TokenCutGraph.from_patches(g.patches)
    b = BinaryGraph(graph.binary(0.2), 0.2)
    deg = b.degrees(1e-5)
    x = np.random.default_rng(0).standard_normal(b.size)
    r1 = _cut(_Spectrum(0.1, 0.2, x, None, "dense"), b, deg, 1e-5, (12, 12), 4, False)
    r2 = _cut(_Spectrum(0.1, 0.2, -x, None, "dense"), b, deg, 1e-5, (12, 12), 4, False)
    np.testing.assert_array_equal(r1.mask, r2.mask)
    np.testing.assert_allclose(r1.eigenvector, r2.eigenvector)
    assert r1.bipartition[r1.seed] and r1.seed == (
        int(np.argmax(np.abs(x))) // 12,
        int(np.argmax(np.abs(x))) % 12,
    )


@pytest.mark.parametrize("connectivity", [4, 8])
def test_seed_component_only(connectivity: int) -> None:
    """Two diagonal-touching blobs of one feature: 4-connectivity keeps the seed's blob, 8 keeps both."""
    patches = np.zeros((8, 8, 2), dtype=np.float32)
    patches[..., 1] = 1.0
    patches[1:3, 1:3] = [1.0, 0.0]
    patches[3:5, 3:5] = [1.0, 0.0]
    res = tokencut(patches, solver="dense", connectivity=connectivity)
    assert res.bipartition.sum() == 8
    if connectivity == 8:
        np.testing.assert_array_equal(res.mask, res.bipartition)
        assert res.box == (1, 1, 5, 5)
    else:
        assert res.mask.sum() == 4 and res.mask[res.seed]
        assert res.box in [(1, 1, 3, 3), (3, 3, 5, 5)]


def _check_same(fast, dense) -> None:
    np.testing.assert_array_equal(fast.mask, dense.mask)
    np.testing.assert_array_equal(fast.bipartition, dense.bipartition)
    assert fast.box == dense.box
    # argmax |x| may pick another patch when two entries tie to ~1e-12; it must still be an object patch.
    assert fast.seed == dense.seed or (dense.mask[fast.seed] and fast.mask[dense.seed])
    scale = np.abs(dense.eigenvector).max()
    np.testing.assert_allclose(fast.eigenvector, dense.eigenvector, atol=1e-6 * scale)
    np.testing.assert_allclose(fast.eigenvalues, dense.eigenvalues, rtol=1e-6, atol=1e-10)
    assert fast.ncut == pytest.approx(dense.ncut, rel=1e-9, abs=1e-12)


def _assert_same_seed_or_twin_tie(
    graph: TokenCutGraph, tau: float, seed: tuple[int, int], ref_seed: int, ref_vec: np.ndarray
) -> None:
    """Our seed is the reference's, or both are twins the reference told apart by rounding only."""
    w = graph.grid[1]
    ours = seed[0] * w + seed[1]
    if ours == ref_seed:
        return
    assert ours < ref_seed  # the first of the tied twins
    assert BinaryGraph(graph.binary(tau), tau).twins(np.array([ours, ref_seed]))
    flat = np.abs(ref_vec.ravel())
    assert abs(flat[ours] - flat[ref_seed]) <= 1e-12 * flat[ref_seed]


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("tau", [0.1, 0.2, 0.4])
def test_fast_equals_dense_and_reference_on_structured_grids(seed: int, tau: float) -> None:
    h, w = [(16, 16), (12, 20), (20, 14)][seed % 3]
    g = synthetic_grid(seed, h, w, 32)
    graph = TokenCutGraph.from_patches(torch.from_numpy(g.patches))
    fast, dense = graph.solve(tau, solver="fast"), graph.solve(tau, solver="dense")
    assert fast.solver == "fast"
    assert dense.eigengap > 1e-4  # a well-posed problem, so "equal" is meaningful
    _check_same(fast, dense)
    ref_mask, ref_vec, ref_seed = _reference(g.patches, tau)
    np.testing.assert_array_equal(dense.mask, ref_mask)
    _assert_same_seed_or_twin_tie(graph, tau, dense.seed, ref_seed, ref_vec)
    centred = ref_vec - ref_vec.mean()
    np.testing.assert_allclose(dense.eigenvector, centred, atol=1e-6 * np.abs(centred).max())


@pytest.mark.parametrize("seed", range(4))
def test_fast_equals_dense_on_random_features(seed: int) -> None:
    """Low-dimensional random features give a random geometric graph (high-d ones give no edges)."""
    rng = np.random.default_rng(seed)
    patches = rng.standard_normal((10, 13, 5)).astype(np.float32)
    graph = TokenCutGraph.from_patches(patches)
    fast, dense = graph.solve(0.3, solver="fast"), graph.solve(0.3, solver="dense")
    assert dense.eigengap > 1e-4
    _check_same(fast, dense)


def test_object_is_found_in_noisy_grid() -> None:
    """An ellipse of one direction on a background of another, both under strong per-token noise."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:20, 0:24]
    obj = ((yy - 8) / 5.0) ** 2 + ((xx - 14) / 7.0) ** 2 <= 1.0
    dirs = np.linalg.qr(rng.standard_normal((32, 2)))[0].T
    patches = np.where(obj[..., None], dirs[0], dirs[1]) + 0.4 * rng.standard_normal((20, 24, 32)) / np.sqrt(
        32
    )
    res = tokencut(patches.astype(np.float32))
    np.testing.assert_array_equal(res.mask, obj)
    assert res.box == (3, 7, 14, 22) and res.confident


def test_uniform_features_are_not_confident_and_do_not_crash() -> None:
    for solver in ("fast", "dense"):
        res = tokencut(np.ones((9, 9, 8), dtype=np.float32), solver=solver)
        assert not res.confident and res.message.startswith("No clear object")
        assert res.ncut == pytest.approx(1.0)


def test_sweep_matches_single_calls() -> None:
    g = synthetic_grid(3, 10, 10, 16)
    taus = [0.0, 0.3, 0.6]
    sweep = tokencut_sweep(g.patches, taus)
    assert [r.tau for r in sweep] == taus
    for tau, res in zip(taus, sweep, strict=True):
        np.testing.assert_array_equal(res.mask, tokencut(g.patches, tau=tau).mask)


def test_box_to_pixels() -> None:
    # 3x5 grid of 16-px patches from a 48x80 input that came from a 96x200 image (H, W).
    assert box_to_pixels((1, 2, 3, 5), 16) == (32.0, 16.0, 80.0, 48.0)
    assert box_to_pixels((1, 2, 3, 5), 16, input_size=(40, 70)) == (32.0, 16.0, 70.0, 40.0)
    x0, y0, x1, y1 = box_to_pixels((1, 2, 3, 5), 16, input_size=(48, 80), image_size=(96, 200))
    assert (x0, y0, x1, y1) == pytest.approx((80.0, 32.0, 200.0, 96.0))
    res = tokencut(_two_cliques(8, 10, (slice(0, 2), slice(1, 3))))
    assert res.box_pixels(16) == (16.0, 0.0, 48.0, 32.0)


def test_bad_inputs() -> None:
    with pytest.raises(ValueError):
        tokencut(np.ones((4, 4)))
    with pytest.raises(ValueError):
        tokencut(np.ones((4, 4, 2)), solver="nope")  # type: ignore[arg-type]


def _near_complete(seed: int) -> np.ndarray:
    """Tokens around one shared direction: at τ = 0.6 almost every pair is an edge, so λ2 ≈ λ3."""
    rng = np.random.default_rng(seed)
    return (1.0 + 0.35 * rng.standard_normal((10, 12, 8))).astype(np.float32)


@pytest.mark.parametrize("seed,tau", [(0, 0.6), (1, 0.6), (0, 0.3), (2, 0.5)])
def test_degenerate_spectra_defer_to_the_reference_choice(seed: int, tau: float) -> None:
    """Where λ2 ≈ λ3 the second eigenvector is LAPACK's choice: the fast path must give that one."""
    patches = _near_complete(seed)
    graph = TokenCutGraph.from_patches(patches)
    assert graph.binary(tau).mean() > 0.99  # a nearly complete graph
    fast, dense = graph.solve(tau), graph.solve(tau, solver="dense")
    assert fast.eigengap < 0.02
    assert fast.solver == "dense"  # not certifiable: deferred
    np.testing.assert_array_equal(fast.mask, dense.mask)
    ref_mask, ref_vec, ref_seed = _reference(patches, tau)
    _assert_same_seed_or_twin_tie(graph, tau, dense.seed, ref_seed, ref_vec)
    if dense.seed == divmod(ref_seed, 12):
        np.testing.assert_array_equal(dense.mask, ref_mask)


def test_raw_lanczos_vector_would_disagree_on_a_near_degenerate_grid() -> None:
    """Why the certificate exists: on this grid (gap ~1e-2) the Lanczos vector's cut differs from LAPACK's."""
    from explorer.analysis.tokencut import _solve_fast

    graph = TokenCutGraph.from_patches(_near_complete(0))
    b = BinaryGraph(graph.binary(0.6), 0.6)
    deg = b.degrees(1e-5)
    spec = _solve_fast(b, deg, 1e-5, None)
    assert spec is not None and spec.err is not None
    uncertified = _cut(_Spectrum(spec.lam2, spec.lam3, spec.x, None, "fast"), b, deg, 1e-5, (10, 12), 4, False)
    assert _cut(spec, b, deg, 1e-5, (10, 12), 4, False) is None  # the bound refuses it ...
    dense = graph.solve(0.6, solver="dense")
    differ = int((uncertified.bipartition != dense.bipartition).sum())
    assert min(differ, 120 - differ) > 10  # ... rightly: the raw split is another split, either way round


def test_warm_started_sweep_equals_cold_solves() -> None:
    """Solving τ after τ on one graph starts each solve from a neighbour's eigenvectors; same cuts."""
    g = synthetic_grid(7, 14, 14, 24)
    warm = TokenCutGraph.from_patches(g.patches)
    taus = [0.2, 0.21, 0.19, 0.3, 0.05, 0.06, 0.5]
    for tau in taus:
        got = warm.solve(tau)
        cold = TokenCutGraph.from_patches(g.patches).solve(tau, solver="dense")
        np.testing.assert_array_equal(got.mask, cold.mask)
        np.testing.assert_array_equal(got.bipartition, cold.bipartition)
    assert len(warm._warm) >= 1  # starts were recorded and reused


def test_result_checks_its_shapes() -> None:
    res = tokencut(_two_cliques(8, 10, (slice(0, 2), slice(1, 3))))
    import dataclasses

    with pytest.raises(ValueError, match="bipartition has shape"):
        dataclasses.replace(res, bipartition=res.bipartition[:-1])
    with pytest.raises(ValueError, match="eigenvector has shape"):
        dataclasses.replace(res, eigenvector=res.eigenvector.ravel())
    with pytest.raises(ValueError, match="seed"):
        dataclasses.replace(res, seed=(8, 0))
    with pytest.raises(ValueError, match="box"):
        dataclasses.replace(res, box=(0, 3, 2, 3))
    with pytest.raises(ValueError, match="boolean"):
        dataclasses.replace(res, mask=res.mask.astype(np.uint8))


def test_try_solve_skips_the_dense_solve_and_solve_then_gives_the_reference() -> None:
    graph = TokenCutGraph.from_patches(_near_complete(0))
    assert graph.try_solve(0.6) is None  # not certifiable, and no O(P³) solve spent on it
    res = graph.solve(0.6)
    assert res.solver == "dense"
    np.testing.assert_array_equal(res.mask, TokenCutGraph.from_patches(_near_complete(0)).solve(0.6, solver="dense").mask)
    assert graph.try_solve(0.6) is res  # memoised
    g = synthetic_grid(2, 12, 12, 16)
    ok = TokenCutGraph.from_patches(g.patches).try_solve(0.2)
    assert ok is not None and ok.solver == "fast"
    assert "Exact tie" not in ok.message


def _twin_specks(h: int = 10, w: int = 12) -> tuple[np.ndarray, tuple[int, int], tuple[int, int]]:
    """A noisy background and two far-apart patches that share a feature nothing else has.

    At τ = 0.5 the two specks are linked only to each other, so the second eigenvector puts its
    largest |x| on both, exactly equal: exchanging them maps the graph onto itself.
    """
    rng = np.random.default_rng(5)
    patches = np.zeros((h, w, 3), dtype=np.float32)
    patches[..., 0] = 1.0
    patches[..., 1] = 0.3 * rng.random((h, w))
    a, b = (1, 2), (8, 9)
    patches[a] = patches[b] = [0.0, 0.0, 1.0]
    return patches, a, b


def test_an_exact_tie_for_the_seed_goes_to_the_first_twin_without_the_dense_solve() -> None:
    patches, a, b = _twin_specks()
    graph = TokenCutGraph.from_patches(patches)
    fast = graph.solve(0.5)
    dense = TokenCutGraph.from_patches(patches).solve(0.5, solver="dense")
    assert fast.solver == "fast"  # certified: the twins make the tie exact, so nothing is left to LAPACK
    assert fast.seed == dense.seed == a  # np.argmax's answer on exact values: the first index
    expected = np.zeros(patches.shape[:2], dtype=bool)
    expected[a] = True
    np.testing.assert_array_equal(fast.mask, expected)
    np.testing.assert_array_equal(dense.mask, expected)
    np.testing.assert_array_equal(fast.bipartition, dense.bipartition)
    assert "Exact tie: 2 patches" in fast.message and "Exact tie: 2 patches" in dense.message  # the user is told
    # The reference breaks the same tie by the last bits of its float64 vector.
    _, ref_vec, ref_seed = _reference(patches, 0.5)
    w = patches.shape[1]
    va, vb = abs(ref_vec[a]), abs(ref_vec[b])
    assert divmod(ref_seed, w) in (a, b)
    assert abs(va - vb) <= 1e-12 * max(va, vb)


def test_twins_need_identical_rows() -> None:
    patches, a, b = _twin_specks()
    graph = TokenCutGraph.from_patches(patches)
    w = patches.shape[1]
    ia, ib = a[0] * w + a[1], b[0] * w + b[1]
    full = BinaryGraph(graph.binary(0.5), 0.5)
    assert full.twins(np.array([ia, ib]))
    assert not full.twins(np.array([ia, 0]))
    broken = graph.binary(0.5).copy()
    broken[ia, 5] = broken[5, ia] = True  # one more edge for one twin only
    assert not BinaryGraph(broken, 0.5).twins(np.array([ia, ib]))
    removed = np.zeros(broken.shape[0], dtype=bool)
    removed[5] = True  # ... which removing patch 5 (MaskCut's zeroed features) takes away again
    assert BinaryGraph(broken, 0.5, removed).twins(np.array([ia, ib]))
