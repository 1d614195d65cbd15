"""A 0/1 matrix times float64 vectors, exact to float64 rounding, at int8 speed.

Why: TokenCut's eigen-solves spend their time in products B z with the P×P binary graph B
(P = 3136 at 896 px). Stored as float64, B is 78 MB and every product streams it from memory; as
int8 it is 9.8 MB, fits in the last-level cache, and oneDNN's int8 GEMM (``torch._int_mm``, AMX or
VNNI where the CPU has them) multiplies it by 16 int8 columns in well under a millisecond.

How it stays exact: each float64 column z is scaled to [-1, 1] by a power of two and written as
eight signed 7-bit digits (base 128, balanced, the first one 6 bits), z = s Σ_m d_m 2^-(6+7m) + r with |r| ≤ 2^-56 s.
B d_m is an integer sum of at most P terms of magnitude ≤ 64, so the int32 accumulator holds it
exactly; recombining the eight exact partial products in float64 rounds once per term. The result
differs from a float64 BLAS product only by rounding (tested against one), so the eigen-solver and
its certificate see the same numbers they would with a float64 B. Where a torch build has no CPU int8
GEMM the same digits go through a float32 GEMM, exact for the same reason (sums below 2^24).
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

import numpy as np
import torch
from threadpoolctl import OpenBLASController, ThreadpoolController

_DIGITS = 8  # 6 + 7·7 = 55 bits: more than a float64 mantissa
_WEIGHTS = 2.0 ** -(6 + 7 * np.arange(_DIGITS))
_COLUMNS = 16  # oneDNN's fast int8 kernel wants the right-hand side in blocks of 16 columns


@lru_cache(maxsize=1)
def int8_kernel_works() -> bool:
    """Whether this torch build multiplies int8 matrices on the CPU (else the float32 kernel is used)."""
    try:
        a = torch.ones((17, 17), dtype=torch.int8)
        b = torch.ones((17, _COLUMNS), dtype=torch.int8)
        return bool((torch._int_mm(a, b) == 17).all())
    except (RuntimeError, AttributeError, NotImplementedError):
        return False


class BinaryMatrix:
    """A square 0/1 matrix kept as int8, with exact float64 products (see the module docstring)."""

    def __init__(self, entries: np.ndarray, kernel: str = "auto") -> None:
        entries = np.ascontiguousarray(entries)
        if entries.ndim != 2 or entries.shape[0] != entries.shape[1]:
            raise ValueError(f"a binary matrix must be square, got shape {entries.shape}")
        if entries.dtype == bool:
            entries = entries.view(np.int8)  # zero-copy: numpy's bools are the bytes 0 and 1
        elif entries.dtype != np.int8:
            if not np.isin(entries, (0, 1)).all():
                raise ValueError("a binary matrix holds only 0 and 1")
            entries = entries.astype(np.int8)
        self.int8 = entries
        self._tensor = torch.from_numpy(entries)
        if kernel not in ("auto", "int8", "float32"):
            raise ValueError(f"kernel must be 'auto', 'int8' or 'float32', got {kernel!r}")
        self.kernel = ("int8" if int8_kernel_works() else "float32") if kernel == "auto" else kernel
        self._float32: np.ndarray | None = None

    @property
    def size(self) -> int:
        return self.int8.shape[0]

    def dense(self) -> np.ndarray:
        """As float64 (for the dense reference solve)."""
        return self.int8.astype(np.float64)

    def matmat(self, z: np.ndarray) -> np.ndarray:
        """B z for a (P,) vector or a (P, k) block, float64 in and out."""
        z = np.asarray(z, dtype=np.float64)
        flat = z.ndim == 1
        block = z.reshape(self.size, -1)
        k = block.shape[1]
        # A power of two at or above each column's largest |z|: scaling by it is exact.
        scale = np.ldexp(1.0, np.frexp(np.abs(block).max(axis=0))[1])
        rest = block * (64.0 / scale)
        digits = np.empty((self.size, k, _DIGITS), dtype=np.int8)
        for m in range(_DIGITS):
            d = np.rint(rest)
            digits[:, :, m] = d
            rest = (rest - d) * 128.0  # exact: d is the nearest integer, the scaling a power of 2
        cols = k * _DIGITS
        rhs = np.zeros((self.size, -(-cols // _COLUMNS) * _COLUMNS), dtype=np.int8)
        rhs[:, :cols] = digits.reshape(self.size, cols)
        if self.kernel == "int8":
            with torch.inference_mode():
                exact = torch._int_mm(self._tensor, torch.from_numpy(rhs)).numpy()
        else:  # integer sums below 2^24 (P · 64 for P < 262144) are exact in float32 too
            if self._float32 is None:
                self._float32 = self.int8.astype(np.float32)
            exact = self._float32 @ rhs.astype(np.float32)
        out = (exact[:, :cols].reshape(self.size, k, _DIGITS) @ _WEIGHTS) * scale
        return out.ravel() if flat else out


_blas_lock = threading.Lock()
_blas_users = 0
_blas_limiter = None
_openblas: tuple[int, ThreadpoolController] | None = None  # (len(sys.modules) when built, controller)


def _openblas_controller() -> ThreadpoolController:
    """The loaded OpenBLAS libraries, looked up again once new modules (maybe new libraries) loaded.

    Only OpenBLAS: torch's own thread pools must keep serving other threads' forwards.
    """
    global _openblas
    if _openblas is None or _openblas[0] != len(sys.modules):
        _openblas = (len(sys.modules), ThreadpoolController().select(internal_api="openblas"))
    return _openblas[1]


def _own_openblas_limits() -> None:
    """threadpoolctl ≥ 3.8 lets one thread set OpenBLAS limits; the counter above is the owner."""
    clear = getattr(OpenBLASController, "clear_controlling_thread", None)  # absent before 3.8
    if clear is not None:
        clear(force=True)


@contextmanager
def one_blas_thread() -> Iterator[None]:
    """Run the block with the process's OpenBLAS libraries on one thread (re-entrant, thread-safe).

    Why: an eigen-solve built on ``BinaryMatrix`` alternates torch's int8 products with small
    OpenBLAS calls (ARPACK's, NumPy's). OpenBLAS's idle workers spin for a while after each call,
    and on two cores they take the CPU from torch's threads: measured at P = 3136, each product
    took 4.2 ms instead of 1.2 ms. The limit is process-wide, so it is counted: the last thread
    to leave restores the original limits.
    """
    global _blas_users, _blas_limiter
    with _blas_lock:
        if _blas_users == 0:
            _own_openblas_limits()
            _blas_limiter = _openblas_controller().limit(limits=1)
        _blas_users += 1
    try:
        yield
    finally:
        with _blas_lock:
            _blas_users -= 1
            if _blas_users == 0 and _blas_limiter is not None:
                _own_openblas_limits()
                _blas_limiter.restore_original_limits()
                _blas_limiter = None
