import threading

import numpy as np
import pytest
from threadpoolctl import ThreadpoolController

from explorer.analysis.binary_matrix import BinaryMatrix, _own_openblas_limits, one_blas_thread


def _binary(p: int, density: float, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).random((p, p)) < density


@pytest.mark.parametrize("kernel", ["int8", "float32"])
@pytest.mark.parametrize("p,k", [(37, 1), (250, 3), (1000, 2)])  # sizes off the 16-column blocks too
def test_products_agree_with_a_float64_blas_product(p: int, k: int, kernel: str) -> None:
    b = _binary(p, 0.4, p)
    rng = np.random.default_rng(k)
    z = rng.standard_normal((p, k)) * np.logspace(-200, 200, k)[None, :]  # each column its own scale
    got = BinaryMatrix(b, kernel).matmat(z)
    ref = b.astype(np.float64) @ z
    # Both are float64 sums of the same terms: they may differ by rounding only.
    bound = 4 * p * np.finfo(np.float64).eps * (b.astype(np.float64) @ np.abs(z))
    assert np.all(np.abs(got - ref) <= bound)
    vec = BinaryMatrix(b, kernel).matmat(z[:, 0])
    assert vec.shape == (p,)
    assert np.all(np.abs(vec - ref[:, 0]) <= bound[:, 0])


@pytest.mark.parametrize("kernel", ["int8", "float32"])
def test_integer_vectors_give_the_exact_integer_product(kernel: str) -> None:
    b = _binary(301, 0.5, 1)
    z = np.random.default_rng(2).integers(-(2**40), 2**40, size=(301, 2))
    got = BinaryMatrix(b, kernel).matmat(z.astype(np.float64))
    ref = b.astype(np.int64) @ z  # exact in int64; every value is below 2^53, so exact in float64 too
    np.testing.assert_array_equal(got, ref.astype(np.float64))


def test_zero_columns_and_row_sums() -> None:
    b = _binary(64, 0.3, 3)
    m = BinaryMatrix(b)
    z = np.zeros((64, 2))
    z[:, 1] = 1.0
    out = m.matmat(z)
    np.testing.assert_array_equal(out[:, 0], 0.0)
    np.testing.assert_array_equal(out[:, 1], b.sum(axis=1))
    np.testing.assert_array_equal(m.dense(), b.astype(np.float64))


def test_bool_input_is_not_copied_and_bad_input_is_refused() -> None:
    b = _binary(20, 0.5, 4)
    assert np.shares_memory(BinaryMatrix(b).int8, b)
    assert BinaryMatrix(b.astype(np.float64)).int8.dtype == np.int8
    with pytest.raises(ValueError, match="only 0 and 1"):
        BinaryMatrix(np.full((3, 3), 2.0))
    with pytest.raises(ValueError, match="kernel"):
        BinaryMatrix(b, "float16")
    assert BinaryMatrix(b).kernel == "int8"  # this torch build has the CPU int8 GEMM the speed relies on
    with pytest.raises(ValueError, match="square"):
        BinaryMatrix(np.zeros((3, 4), dtype=bool))


def _blas_threads() -> set[int]:
    return {lib["num_threads"] for lib in ThreadpoolController().info() if lib["internal_api"] == "openblas"}


def test_one_blas_thread_is_counted_across_threads() -> None:
    """Two overlapping users: the first to leave must not lift the limit the second still needs."""
    _own_openblas_limits()
    with ThreadpoolController().select(internal_api="openblas").limit(limits=2):
        assert _blas_threads() == {2}
        entered, release_a, a_left = threading.Event(), threading.Event(), threading.Event()
        seen: dict[str, set[int]] = {}

        def user_a() -> None:
            with one_blas_thread():
                entered.set()
                release_a.wait(5)
            a_left.set()

        t = threading.Thread(target=user_a)
        t.start()
        entered.wait(5)
        with one_blas_thread():
            release_a.set()
            a_left.wait(5)
            seen["after a left"] = _blas_threads()
        t.join(5)
        seen["after both"] = _blas_threads()
    assert seen == {"after a left": {1}, "after both": {2}}
