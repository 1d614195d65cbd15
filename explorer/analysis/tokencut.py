"""TokenCut (Wang et al., 2022) object discovery on a patch grid, with a fast solver that agrees.

Faithful to the reference ``object_discovery.ncut``: L2-normalised patch features, A = F Fᵀ,
W = 1 where A > τ else ε, D = diag(W 1), second-smallest generalised eigenvector of
(D − W) x = λ D x, bipartition x > mean(x), seed = argmax |x|; if the seed is not on the True
side the partition (and x) is reversed; the object is the 4-connected component
(``scipy.ndimage.label`` default) of the bipartition that contains the seed; its box has an
exclusive end. A is computed exactly as the reference computes it (torch, float32, the same
normalisation and product), so both build the same W bit for bit.

Why a second solver: the reference's dense generalised ``eigh`` costs O(P³) (seconds at P = 3136),
far too slow for a live τ slider. The same eigenvectors come from the symmetric normalised affinity
M = D^-1/2 W D^-1/2 (its top eigenvectors y give x = D^-1/2 y, λ = 1 − μ). Because ε > 0 makes W
dense, M is applied as a LinearOperator using W = ε 11ᵀ + (1 − ε) B with B binary, so each
matvec is one product with B, done exactly in int8 (``binary_matrix``); the known trivial eigenvector
D^1/2 1 is deflated so Lanczos (``eigsh``) only has to find λ2 and λ3.

Why the answer is the same: an iterative eigenvector is only close to the exact one, so the fast
result is *certified* before it is used. The residual r of the Ritz vector and the gap δ = μ2 − μ3
bound its error (‖y − v‖ ≤ 2‖r‖/δ, the sin θ theorem); the cut is accepted only when no patch is
closer to the mean split than that bound and the seed cannot change. Otherwise — above all when
λ2 ≈ λ3 (nearly complete graphs at low τ, MaskCut's later rounds), where the second eigenvector is
not unique and the reference's answer is whatever LAPACK returns — the dense reference solve runs.

One decision is made by rule rather than by the last bit: when the largest |x| is shared by
*twins* (patches whose rows of B are equal, e.g. two specks that resemble only each other), the
two values are exactly equal in exact arithmetic, so both solvers take the first index, as
``np.argmax`` does on equal values. The reference's float64 vector decides such a tie by
rounding; everywhere else its masks and ours are identical.

``TokenCutGraph`` caches the normalised features and A: a τ change only rebuilds B and re-solves,
starting Lanczos from the eigenvectors of the nearest τ already solved on the same graph (the
result does not depend on the start: it is certified or recomputed densely).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import scipy.linalg
import scipy.sparse.linalg
import torch
import torch.nn.functional as F
from scipy import ndimage

from ._common import as_grid
from .binary_matrix import BinaryMatrix, one_blas_thread

Solver = Literal["fast", "dense"]

#: Confidence rule (see ``TokenCutResult.confident``): Ncut of the bipartition at most this ...
CONFIDENT_MAX_NCUT = 0.5
#: ... and the object (seed component) covers between these fractions of the grid.
CONFIDENT_MIN_AREA = 0.005
CONFIDENT_MIN_PATCHES = 4
CONFIDENT_MAX_AREA = 0.9

#: Below this many patches the dense solver is used even when "fast" is asked (ARPACK needs P > k+1
#: and the dense solve is instant there anyway).
_FAST_MIN_PATCHES = 64
#: A relative eigengap (λ3 − λ2)/λ3 below this is treated as degenerate without further checks.
DEGENERATE_GAP = 1e-3
#: Start vectors kept per graph for warm starts (one per solved (τ, removed set)).
_WARM_MAX = 256
#: Entries of an exact eigenvector this close (relative) to its maximum are tied candidates for the seed.
TIE_RTOL = 1e-9
#: Lanczos tolerances tried in turn before the dense solve (see ``TokenCutGraph.cut``).
_TOLERANCES = (1e-6, 1e-11)


@dataclass(frozen=True)
class TokenCutResult:
    """Everything the UI and the evaluation need from one TokenCut run.

    ``eigenvector`` is the reference's oriented eigenvector minus its mean, so the bipartition is
    exactly ``eigenvector > 0`` and foreground is positive (scale: xᵀDx = 1, as ``scipy.linalg.eigh``).
    ``box`` is (r0, c0, r1, c1) in patch units with exclusive ends. ``eigenvalues`` are (λ2, λ3) of
    (D − W) x = λ D x; ``eigengap`` is the scale-free (λ3 − λ2) / λ3 in [0, 1] (1: λ2 is isolated).
    ``ncut`` is cut(S, S̄)/vol(S) + cut(S, S̄)/vol(S̄) of the bipartition S (0 = perfect split,
    2.0 when a side is empty). ``confident`` is True when ncut <= CONFIDENT_MAX_NCUT and the object
    covers CONFIDENT_MIN_AREA..CONFIDENT_MAX_AREA of the grid and at least CONFIDENT_MIN_PATCHES patches; ``message`` says why not, in plain words.
    ``solver`` is the solver whose eigenvector was used: "fast", or "dense" (asked for, a grid under
    64 patches, or a fast answer that could not be certified, e.g. a degenerate spectrum).
    """

    mask: np.ndarray
    bipartition: np.ndarray
    eigenvector: np.ndarray
    seed: tuple[int, int]
    box: tuple[int, int, int, int]
    eigenvalues: tuple[float, float]
    eigengap: float
    ncut: float
    confident: bool
    message: str
    tau: float
    eps: float
    solver: str

    def __post_init__(self) -> None:
        grid = np.shape(self.mask)
        if len(grid) != 2 or min(grid) < 1:
            raise ValueError(f"TokenCutResult.mask must be a non-empty (h, w) array, got shape {grid}")
        for name in ("bipartition", "eigenvector"):
            if np.shape(getattr(self, name)) != grid:
                raise ValueError(f"TokenCutResult.{name} has shape {np.shape(getattr(self, name))}, "
                                 f"expected the mask's (h, w) = {grid}")
        if np.asarray(self.mask).dtype != bool or np.asarray(self.bipartition).dtype != bool:
            raise ValueError("TokenCutResult.mask and .bipartition must be boolean arrays")
        h, w = grid
        if len(self.seed) != 2 or not (0 <= self.seed[0] < h and 0 <= self.seed[1] < w):
            raise ValueError(f"TokenCutResult.seed {self.seed} is not a (row, col) inside the {h}x{w} grid")
        if len(self.box) != 4:
            raise ValueError(f"TokenCutResult.box must be (r0, c0, r1, c1), got {self.box}")
        r0, c0, r1, c1 = self.box
        if not (0 <= r0 < r1 <= h and 0 <= c0 < c1 <= w):
            raise ValueError(f"TokenCutResult.box {self.box} is not a non-empty (r0, c0, r1, c1) box "
                             f"(exclusive ends) inside the {h}x{w} grid")
        if len(self.eigenvalues) != 2:
            raise ValueError(f"TokenCutResult.eigenvalues must be (λ2, λ3), got {self.eigenvalues}")

    def box_pixels(
        self,
        patch_size: int,
        input_size: tuple[int, int] | None = None,
        image_size: tuple[int, int] | None = None,
    ) -> tuple[float, float, float, float]:
        """The box as (x0, y0, x1, y1) pixels of the original image; see ``box_to_pixels``."""
        return box_to_pixels(self.box, patch_size, input_size, image_size)


def box_to_pixels(
    box: tuple[int, int, int, int],
    patch_size: int,
    input_size: tuple[int, int] | None = None,
    image_size: tuple[int, int] | None = None,
) -> tuple[float, float, float, float]:
    """Patch-unit box (r0, c0, r1, c1) -> pixel box (x0, y0, x1, y1), xyxy like VOC/COCO.

    As the reference: multiply by the patch size and clip to the model input (H, W); then, because
    our preprocessing resizes instead of padding, scale from ``input_size`` to ``image_size`` (H, W).
    """
    r0, c0, r1, c1 = box
    x0, y0, x1, y1 = (
        float(c0 * patch_size),
        float(r0 * patch_size),
        float(c1 * patch_size),
        float(r1 * patch_size),
    )
    if input_size is not None:
        in_h, in_w = input_size
        x1, y1 = min(x1, float(in_w)), min(y1, float(in_h))
        if image_size is not None:
            sy, sx = image_size[0] / in_h, image_size[1] / in_w
            x0, x1, y0, y1 = x0 * sx, x1 * sx, y0 * sy, y1 * sy
    return x0, y0, x1, y1


# ---------------------------------------------------------------------------------------------- graph


class BinaryGraph:
    """B = [A > τ] of one graph, with some patches optionally removed (their features zeroed).

    A removed patch has an all-zero feature, so its affinity to everything is 0 and its B row and
    column are the constant [0 > τ], exactly what the reference computes from zeroed features. That
    is applied analytically, so removing patches never copies the P×P matrix.
    """

    def __init__(self, b: np.ndarray | BinaryMatrix, tau: float, removed: np.ndarray | None = None) -> None:
        self.b = b if isinstance(b, BinaryMatrix) else BinaryMatrix(b)  # the full graph's 0/1 entries
        self.tau = tau
        self.removed = None if removed is None or not removed.any() else removed.astype(bool)
        self.const = 1.0 if 0.0 > tau else 0.0  # B entry of a removed patch's row and column
        self.keep = None if self.removed is None else (~self.removed).astype(np.float64)
        self.rowsum = self.matmat(np.ones(self.size))  # exact: integer sums (one product, faster than a sum)

    @property
    def size(self) -> int:
        return self.b.size

    def matmat(self, z: np.ndarray) -> np.ndarray:
        """B z for a (P,) vector or a (P, k) block (exact to float64 rounding)."""
        if self.keep is None:
            return self.b.matmat(z)
        flat = z.ndim == 1
        z = z.reshape(self.size, -1)
        k = self.keep[:, None]
        out = k * self.b.matmat(k * z)
        if self.const:
            total, outside = z.sum(axis=0), ((1.0 - k) * z).sum(axis=0)
            out += self.const * np.where(k > 0, outside[None, :], total[None, :])
        return out.ravel() if flat else out

    def dense(self) -> np.ndarray:
        """The materialised B as float64 (for the dense reference solve)."""
        out = self.b.dense()
        if self.keep is not None:
            out[self.removed, :] = self.const
            out[:, self.removed] = self.const
        return out

    def degrees(self, eps: float) -> np.ndarray:
        return eps * self.size + (1.0 - eps) * self.rowsum

    def row(self, i: int) -> np.ndarray:
        """Row ``i`` of B (int8 0/1), removed patches applied."""
        if self.keep is None:
            return self.b.int8[i]
        if self.removed[i]:
            return np.full(self.size, self.const, dtype=np.int8)
        out = self.b.int8[i].copy()
        out[self.removed] = self.const
        return out

    def twins(self, idx: np.ndarray) -> bool:
        """Whether exchanging ``idx[0]`` with each other index maps B onto itself.

        Rows equal outside the two columns, equal diagonal entries, a symmetric pair entry.
        """
        i = int(idx[0])
        ri = self.row(i)
        others = np.ones(self.size, dtype=bool)
        for j in map(int, idx[1:]):
            rj = self.row(j)
            if ri[i] != rj[j] or ri[j] != rj[i]:
                return False
            others[[i, j]] = False
            same = np.array_equal(ri[others], rj[others])
            others[[i, j]] = True
            if not same:
                return False
        return True


class TokenCutGraph:
    """Cached normalised features and cosine affinity A of one patch grid (precompute once per image)."""

    def __init__(self, feats: np.ndarray, grid: tuple[int, int], affinity: np.ndarray | None = None) -> None:
        self.grid = (int(grid[0]), int(grid[1]))
        self.feats = feats  # (P, d) float32, L2-normalised rows
        self.affinity = feats @ feats.T if affinity is None else affinity  # float32 (P, P)
        self.num_patches = feats.shape[0]
        if self.num_patches != self.grid[0] * self.grid[1]:
            raise ValueError(f"{self.num_patches} feature rows do not fill a {self.grid[0]}x{self.grid[1]} grid")
        self._warm: dict[tuple[bytes, float], np.ndarray] = {}
        self._results: dict[tuple, TokenCutResult] = {}
        self._needs_dense: set[tuple] = set()
        self._warm_lock = threading.Lock()

    @classmethod
    def from_patches(cls, patches: Any) -> TokenCutGraph:
        """Build from an (h, w, d) grid (torch or numpy), computing A as the reference does.

        The reference takes (d, P) features, ``F.normalize(feats, p=2, dim=0)`` and
        ``feats.transpose(0, 1) @ feats`` in torch float32; doing the same here means an entry of A
        that sits within rounding of τ lands on the same side of it in both.
        """
        grid = as_grid(patches)
        h, w, d = grid.shape
        cols = torch.from_numpy(np.ascontiguousarray(grid.reshape(h * w, d).T))  # (d, P), as the reference
        with torch.inference_mode():
            cols = F.normalize(cols, p=2, dim=0)
            affinity = (cols.transpose(0, 1) @ cols).numpy()
        return cls(np.ascontiguousarray(cols.numpy().T), (h, w), affinity)

    def binary(self, tau: float) -> np.ndarray:
        """B = [A > τ] as a boolean (P, P) array (the ε part of W is added analytically).

        τ is compared as a Python float against float32 A, as the reference does (NumPy then
        compares in float32).
        """
        return np.greater(self.affinity, float(tau))

    def solve(
        self,
        tau: float = 0.2,
        eps: float = 1e-5,
        solver: Solver = "fast",
        connectivity: int = 4,
    ) -> TokenCutResult:
        """Run TokenCut at threshold ``tau``; only B and the eigenproblem depend on τ (memoised)."""
        result = self.try_solve(tau, eps, solver, connectivity, dense_fallback=True)
        assert result is not None
        return result

    def try_solve(
        self,
        tau: float = 0.2,
        eps: float = 1e-5,
        solver: Solver = "fast",
        connectivity: int = 4,
        dense_fallback: bool = False,
    ) -> TokenCutResult | None:
        """``solve``, or None (without the O(P³) dense solve) when the fast cut cannot be certified.

        Lets a background filler put the expensive τ values last.
        """
        key = (round(float(tau), 6), float(eps), solver, connectivity)
        with self._warm_lock:
            hit = self._results.get(key)
        if hit is not None:
            return hit
        graph = BinaryGraph(self.binary(tau), float(tau))
        if key in self._needs_dense:  # the fast cut already failed its certificate here
            solver = "dense"
        cut = self.cut(graph, eps, solver, connectivity, corner_rule=False, dense_fallback=dense_fallback)
        if cut is None:
            with self._warm_lock:
                self._needs_dense.add(key)
            return None
        result = cut.result(self.grid, tau, eps)
        with self._warm_lock:
            self._results[key] = result
            while len(self._results) > _WARM_MAX:
                self._results.pop(next(iter(self._results)))
        return result

    def cut(
        self,
        graph: BinaryGraph,
        eps: float = 1e-5,
        solver: Solver = "fast",
        connectivity: int = 4,
        corner_rule: bool = False,
        dense_fallback: bool = True,
    ) -> Cut | None:
        """One normalised cut of ``graph`` (TokenCut's rules; MaskCut's with ``corner_rule``).

        The fast eigenvector is used only when its cut is certified equal to the exact one;
        otherwise the dense reference solve decides (or, without ``dense_fallback``, None).
        """
        if solver not in ("fast", "dense"):
            raise ValueError(f"solver must be 'fast' or 'dense', got {solver!r}")
        if connectivity not in (4, 8):
            raise ValueError(f"connectivity must be 4 or 8, got {connectivity}")
        deg = graph.degrees(eps)
        if solver == "fast" and self.num_patches >= _FAST_MIN_PATCHES:
            key = self._warm_key(graph)
            start = self._warm_start(key)
            # A loose tolerance certifies most cuts in fewer matvecs; a cut it cannot certify gets a
            # tight solve from where the loose one ended, and only then the dense one.
            with one_blas_thread():
                for tol in _TOLERANCES:
                    spec = _solve_fast(graph, deg, eps, start, tol)
                    if spec is None:
                        break
                    cut = _cut(spec, graph, deg, eps, self.grid, connectivity, corner_rule)
                    if cut is not None:
                        self._remember(key, spec.basis)
                        return cut
                    start = spec.basis
            if not dense_fallback:
                return None
        spec = _solve_dense(graph, eps)
        cut = _cut(spec, graph, deg, eps, self.grid, connectivity, corner_rule)
        assert cut is not None  # an exact eigenvector is always certain
        return cut

    def sweep(
        self, taus: Iterable[float], eps: float = 1e-5, solver: Solver = "fast", connectivity: int = 4
    ) -> list[TokenCutResult]:
        """One result per τ, reusing A."""
        return [self.solve(float(t), eps, solver, connectivity) for t in taus]

    def clear_cache(self) -> None:
        """Forget memoised results and warm starts (benchmarks time cold solves with it)."""
        with self._warm_lock:
            self._warm.clear()
            self._results.clear()
            self._needs_dense.clear()

    # -- warm starts: the eigenvectors of the nearest τ already solved with the same removed set
    @staticmethod
    def _warm_key(graph: BinaryGraph) -> tuple[bytes, float]:
        removed = b"" if graph.removed is None else np.packbits(graph.removed).tobytes()
        return removed, round(graph.tau, 6)

    def _warm_start(self, key: tuple[bytes, float]) -> np.ndarray | None:
        with self._warm_lock:
            near = [(abs(t - key[1]), t) for (r, t) in self._warm if r == key[0]]
            return self._warm[(key[0], min(near)[1])] if near else None

    def _remember(self, key: tuple[bytes, float], basis: np.ndarray) -> None:
        with self._warm_lock:
            self._warm[key] = basis
            while len(self._warm) > _WARM_MAX:
                self._warm.pop(next(iter(self._warm)))


def tokencut(
    patches: Any, tau: float = 0.2, eps: float = 1e-5, solver: Solver = "fast", connectivity: int = 4
) -> TokenCutResult:
    """TokenCut on one (h, w, d) patch grid. Use ``TokenCutGraph`` when τ will change."""
    return TokenCutGraph.from_patches(patches).solve(tau, eps, solver, connectivity)


def tokencut_sweep(
    patches: Any, taus: Iterable[float], eps: float = 1e-5, solver: Solver = "fast", connectivity: int = 4
) -> list[TokenCutResult]:
    """TokenCut at several τ on the same features (A computed once)."""
    return TokenCutGraph.from_patches(patches).sweep(taus, eps, solver, connectivity)


# ---------------------------------------------------------------------------------------------- solvers


@dataclass(frozen=True)
class _Spectrum:
    """λ2, λ3 and the second eigenvector x (xᵀDx = 1) with a per-entry error bound (None: exact)."""

    lam2: float
    lam3: float
    x: np.ndarray
    err: np.ndarray | None
    solver: str
    basis: np.ndarray | None = None  # (P, 2) Ritz vectors y2, y3 of M, kept for warm starts


def _solve_dense(graph: BinaryGraph, eps: float) -> _Spectrum:
    """Reference solver: ``scipy.linalg.eigh(D − W, D, subset_by_index=[1, 2])`` on the reference's W."""
    w = np.where(graph.dense() > 0, 1.0, eps)
    d = np.diag(np.sum(w, axis=1))
    vals, vecs = scipy.linalg.eigh(d - w, d, subset_by_index=[1, 2])
    return _Spectrum(float(vals[0]), float(vals[1]), vecs[:, 0], None, "dense")


def _solve_fast(
    graph: BinaryGraph, deg: np.ndarray, eps: float, warm: np.ndarray | None, tol: float = 1e-10
) -> _Spectrum | None:
    """Top-2 eigenpairs of the deflated symmetric normalised affinity, with an error bound.

    None when the spectrum is degenerate (relative eigengap under DEGENERATE_GAP) or ARPACK fails;
    the caller then solves densely.
    """
    p = graph.size
    s = 1.0 / np.sqrt(deg)
    u = np.sqrt(deg)
    u /= np.linalg.norm(u)  # D^1/2 1: the trivial eigenvector (μ = 1), projected out

    def matmat(y: np.ndarray) -> np.ndarray:
        y2 = y.reshape(p, -1)
        z = s[:, None] * y2
        out = s[:, None] * (eps * z.sum(axis=0, keepdims=True) + (1.0 - eps) * graph.matmat(z))
        out -= u[:, None] * (u @ y2)[None, :]
        return out if y.ndim == 2 else out.ravel()

    op = scipy.sparse.linalg.LinearOperator((p, p), matvec=matmat, matmat=matmat, dtype=np.float64)
    # Fixed start vector: deterministic. A warm start mixes in the neighbouring τ's y2 and y3.
    v0 = np.random.default_rng(0).uniform(0.5, 1.5, size=p)
    if warm is not None:
        v0 = warm[:, 0] + 0.5 * warm[:, 1] + 1e-2 * v0 / np.linalg.norm(v0)
    try:
        # ncv: 12 from a random start, 8 from a neighbour's vectors (fewest matvecs measured at P = 3136).
        ncv = min(p - 1, 12 if warm is None else 8)
        vals, vecs = scipy.sparse.linalg.eigsh(op, k=2, which="LA", v0=v0, ncv=ncv, tol=tol)
    except scipy.sparse.linalg.ArpackError:
        return None  # e.g. all features identical: the Krylov space collapses
    order = np.argsort(-vals)
    mu, basis = vals[order], vecs[:, order]
    lam2, lam3 = float(1.0 - mu[0]), float(1.0 - mu[1])
    if lam3 <= 0 or (lam3 - lam2) / lam3 < DEGENERATE_GAP:
        return None
    # sin θ theorem: ‖y − v‖ ≤ √2 sin θ ≤ √2 ‖r‖/δ with δ the distance from ρ to the rest of the
    # spectrum; δ is taken as ρ2 − (ρ3 + ‖r3‖), and doubled error for safety.
    basis /= np.linalg.norm(basis, axis=0, keepdims=True)
    res = matmat(basis)
    rho = np.einsum("ij,ij->j", basis, res)
    rnorm = np.linalg.norm(res - basis * rho[None, :], axis=0)
    delta = rho[0] - (rho[1] + rnorm[1])
    if delta <= 0:
        return None
    e = 2.0 * np.sqrt(2.0) * rnorm[0] / delta
    y = basis[:, 0]
    x = s * y
    norm = np.sqrt(x @ (deg * x))  # xᵀDx = 1, the generalised eigh normalisation
    return _Spectrum(lam2, lam3, x / norm, s * e / norm, "fast", basis)


# ---------------------------------------------------------------------------------------------- the cut


@dataclass(frozen=True)
class Cut:
    """One normalised cut: the oriented bipartition, the seed and its connected component."""

    bipartition: np.ndarray  # bool (h, w), foreground side
    eigenvector: np.ndarray  # float32 (h, w), oriented, minus its mean (bipartition == ev > 0)
    seed: tuple[int, int]
    mask: np.ndarray  # bool (h, w): the seed's connected component
    box: tuple[int, int, int, int]
    eigenvalues: tuple[float, float]
    ncut: float
    solver: str
    tied_seeds: int = 1  # patches exactly tied for the seed whose choice would change the mask (1: none)

    @property
    def eigengap(self) -> float:
        lam2, lam3 = self.eigenvalues
        gap = (lam3 - lam2) / lam3 if lam3 > 0 else 0.0
        return float(min(max(gap, 0.0), 1.0))

    def result(self, grid: tuple[int, int], tau: float, eps: float) -> TokenCutResult:
        """The TokenCut view of this cut, with the confidence rule and its message."""
        area = self.mask.sum() / self.mask.size
        reasons = []
        if self.ncut > CONFIDENT_MAX_NCUT:
            reasons.append(f"the graph has no clean split (Ncut {self.ncut:.2f} > {CONFIDENT_MAX_NCUT})")
        if area < CONFIDENT_MIN_AREA or self.mask.sum() < CONFIDENT_MIN_PATCHES:
            reasons.append(f"the object is tiny ({area:.1%} of the image)")
        if area > CONFIDENT_MAX_AREA:
            reasons.append(f"the 'object' covers {area:.0%} of the image")
        message = "" if not reasons else "No clear object: " + "; ".join(reasons) + "."
        if self.tied_seeds > 1:
            message = (message + " " if message else "") + (
                f"Exact tie: {self.tied_seeds} patches with identical graph rows share the largest "
                "eigenvector value; the first seeds the object (another would give a different mask).")
        return TokenCutResult(
            mask=self.mask,
            bipartition=self.bipartition,
            eigenvector=self.eigenvector,
            seed=self.seed,
            box=self.box,
            eigenvalues=self.eigenvalues,
            eigengap=self.eigengap,
            ncut=self.ncut,
            confident=not reasons,
            message=message,
            tau=float(tau),
            eps=float(eps),
            solver=self.solver,
        )


def _argmax_candidates(values: np.ndarray, err: np.ndarray | None) -> np.ndarray:
    """Indices whose true value could be the maximum, given |error| ≤ err per entry.

    For an exact (dense) vector: the entries within rounding (``TIE_RTOL``) of the maximum.
    """
    best = int(np.argmax(values))
    if err is None:
        return np.flatnonzero(values >= values[best] - TIE_RTOL * abs(values[best]))
    return np.flatnonzero(values + err >= values[best] - err[best])


def _seed(
    values: np.ndarray, err: np.ndarray | None, graph: BinaryGraph, signed: bool
) -> tuple[int, np.ndarray, np.ndarray]:
    """The seed, the indices the exact vector's argmax could be instead, and the exactly tied twins.

    Twins (patches whose rows of B are the same up to exchanging the two) have exactly equal |x| in
    every simple eigenvector, because exchanging them maps the graph onto itself. When all the
    candidates are twins the maximum is an exact tie, so the seed is the first of them, which is
    what ``np.argmax`` returns on exact values; the reference's float64 vector breaks the tie by
    its last bit instead. Otherwise the seed is the computed vector's argmax, and a solver with an
    error bound must check that every candidate leads to the same cut.
    """
    cands = _argmax_candidates(values, err)
    same_sign = not signed or bool(np.all(np.sign(values[cands]) == np.sign(values[cands[0]])))
    if len(cands) > 1 and same_sign and graph.twins(cands):
        return int(cands[0]), cands[:1], cands
    best = int(np.argmax(values))
    return best, (np.array([best]) if err is None else cands), cands[:0]


def _cut(
    spec: _Spectrum,
    graph: BinaryGraph,
    deg: np.ndarray,
    eps: float,
    grid: tuple[int, int],
    connectivity: int,
    corner_rule: bool,
) -> Cut | None:
    """The reference's post-processing; None when the error bound lets any decision change.

    TokenCut: split at the mean, seed = argmax |x|, reverse when the seed is not on the True side.
    MaskCut (``corner_rule``): then reverse again when ≥ 3 of the 4 corners are on the foreground
    side, and the seed is the peak of the oriented x (CutLER ``maskcut_forward``). CutLER counts the
    corners before orienting, which makes its answer depend on the arbitrary sign of the
    eigenvector; counting them after orienting gives its answer for one of the two signs, always
    the one whose foreground holds at most two corners. An exact tie for the seed goes to the
    first index (see ``_seed``).
    """
    h, w = grid
    x, err = spec.x, spec.err
    avg = x.sum() / len(x)
    part = x > avg
    if err is not None:
        avg_err = float(np.linalg.norm(err)) / len(x)  # |Σ δx_i| / P ≤ ‖err‖ / P
        if np.any(np.abs(x - avg) <= err + avg_err):
            return None  # a patch could fall on the other side of the split
    seed, cands, twins = _seed(np.abs(x), err, graph, signed=False)
    other_side = bool(np.any(part[twins] != part[seed]))  # a tied twin would have reversed the split
    if np.any(part[cands] != part[seed]):
        return None  # the reverse decision could change
    if not part[seed]:  # the seed's side is the foreground
        x, part, avg = -x, ~part, -avg
    if corner_rule:
        corners = int(part[0]) + int(part[w - 1]) + int(part[(h - 1) * w]) + int(part[h * w - 1])
        if corners >= 3:  # an object rarely holds three corners: the other side is the object
            x, part, avg = -x, ~part, -avg
        seed, cands, twins = _seed(x, err, graph, signed=True)  # CutLER: the seed is the peak of the oriented vector
        other_side = False
    structure = None if connectivity == 4 else np.ones((3, 3), dtype=bool)  # None: ndimage default
    bip = part.reshape(h, w)
    labels, _ = ndimage.label(bip, structure=structure)
    sr, sc = divmod(seed, w)
    if np.any(labels.ravel()[cands] != labels[sr, sc]):
        return None  # another candidate seed would pick another component
    mask = labels == labels[sr, sc]  # as the reference, even if an exact tie left the seed off the split
    tie_matters = other_side or bool(np.any(labels.ravel()[twins] != labels[sr, sc]))
    rows, cols = np.nonzero(mask)
    box = (int(rows.min()), int(cols.min()), int(rows.max()) + 1, int(cols.max()) + 1)
    return Cut(
        bipartition=bip,
        eigenvector=(x - avg).reshape(h, w).astype(np.float32),
        seed=(int(sr), int(sc)),
        mask=mask,
        box=box,
        eigenvalues=(spec.lam2, spec.lam3),
        ncut=_ncut_value(part, graph, deg, eps),
        solver=spec.solver,
        tied_seeds=len(twins) if tie_matters else 1,
    )


def _ncut_value(part: np.ndarray, graph: BinaryGraph, deg: np.ndarray, eps: float) -> float:
    """Normalised cut of the bipartition ``part`` (flat bool) on W = ε11ᵀ + (1 − ε)B."""
    n_in = int(part.sum())
    if n_in == 0 or n_in == part.size:
        return 2.0
    ind = part.astype(np.float64)
    vol_s = float(deg[part].sum())
    vol_t = float(deg.sum()) - vol_s
    w_ss = eps * n_in * n_in + (1.0 - eps) * float(ind @ graph.matmat(ind[:, None])[:, 0])
    cut = max(vol_s - w_ss, 0.0)
    return cut / vol_s + cut / vol_t
