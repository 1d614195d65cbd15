"""TokenCut (Wang et al., 2022) object discovery on a patch grid, with a fast exact solver.

Faithful to the reference ``object_discovery.ncut``: L2-normalised patch features, A = F Fᵀ,
W = 1 where A > τ else ε, D = diag(W 1), second-smallest generalised eigenvector of
(D − W) x = λ D x, bipartition x > mean(x), seed = argmax |x|; if the seed is not on the True
side the partition (and x) is reversed; the object is the 4-connected component
(``scipy.ndimage.label`` default) of the bipartition that contains the seed; its box has an
exclusive end.

Why a second solver: the reference's dense generalised ``eigh`` costs O(P³) (seconds at P = 3136),
far too slow for a live τ slider. The same eigenvectors come from the symmetric normalised affinity
M = D^-1/2 W D^-1/2 (its top eigenvectors y give x = D^-1/2 y, λ = 1 − μ). Because ε > 0 makes W
dense, M is applied as a LinearOperator using W = ε 11ᵀ + (1 − ε) B with B binary, so each
matvec is one BLAS gemv on B; the known trivial eigenvector D^1/2 1 is deflated so Lanczos
(``eigsh``, fixed v0, so results are deterministic) only has to find λ2 and λ3.

``TokenCutGraph`` caches the normalised features and A: a τ change only rebuilds B and re-solves.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import scipy.linalg
import scipy.sparse.linalg
from scipy import ndimage

from ._common import as_grid, l2_normalize

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
    ``solver`` is the solver actually used ("fast" falls back to "dense" below 64 patches).
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


class TokenCutGraph:
    """Cached normalised features and cosine affinity A of one patch grid (precompute once per image)."""

    def __init__(self, feats: np.ndarray, grid: tuple[int, int]) -> None:
        self.grid = (int(grid[0]), int(grid[1]))
        self.feats = feats  # (P, d) float32, L2-normalised rows
        self.affinity = feats @ feats.T  # float32 (P, P), like the reference's torch matmul
        self.num_patches = feats.shape[0]

    @classmethod
    def from_patches(cls, patches: Any) -> TokenCutGraph:
        """Build from an (h, w, d) grid (torch or numpy)."""
        grid = as_grid(patches)
        h, w, d = grid.shape
        return cls(l2_normalize(grid.reshape(h * w, d)), (h, w))

    def binary(self, tau: float) -> np.ndarray:
        """B = [A > τ] as float64 0/1 (the ε part of W is added analytically)."""
        b = np.empty(self.affinity.shape, dtype=np.float64)
        np.greater(self.affinity, tau, out=b, casting="unsafe")
        return b

    def solve(
        self, tau: float = 0.2, eps: float = 1e-5, solver: Solver = "fast", connectivity: int = 4
    ) -> TokenCutResult:
        """Run TokenCut at threshold ``tau``; only B and the eigenproblem depend on τ."""
        if solver not in ("fast", "dense"):
            raise ValueError(f"solver must be 'fast' or 'dense', got {solver!r}")
        b = self.binary(tau)
        deg = eps * self.num_patches + (1.0 - eps) * b.sum(axis=1)
        if solver == "fast" and self.num_patches < _FAST_MIN_PATCHES:
            solver = "dense"  # tiny grids: the dense solve is instant and ARPACK needs P > k + 1
        result = None
        if solver == "fast":
            try:
                result = _solve_fast(b, deg, eps)
            except scipy.sparse.linalg.ArpackError:
                # Only for degenerate graphs (e.g. all features identical: every non-trivial vector
                # is an eigenvector and the Krylov space collapses); the dense solve is exact there.
                solver = "dense"
        if result is None:
            result = _solve_dense(b, deg, eps)
        (lam2, lam3), x = result
        return _finish(x, lam2, lam3, b, deg, eps, self.grid, tau, solver, connectivity)

    def sweep(
        self, taus: Iterable[float], eps: float = 1e-5, solver: Solver = "fast", connectivity: int = 4
    ) -> list[TokenCutResult]:
        """One result per τ, reusing A."""
        return [self.solve(float(t), eps, solver, connectivity) for t in taus]


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


def _dense_w(b: np.ndarray, eps: float) -> np.ndarray:
    """The reference's W: 1 where A > τ, ε elsewhere."""
    return np.where(b > 0, 1.0, eps)


def _solve_dense(b: np.ndarray, deg: np.ndarray, eps: float) -> tuple[tuple[float, float], np.ndarray]:
    """Reference solver: ``scipy.linalg.eigh(D − W, D, subset_by_index=[1, 2])``."""
    w = _dense_w(b, eps)
    d = np.diag(w.sum(axis=1))
    vals, vecs = scipy.linalg.eigh(d - w, d, subset_by_index=[1, 2])
    return (float(vals[0]), float(vals[1])), vecs[:, 0]


def _solve_fast(b: np.ndarray, deg: np.ndarray, eps: float) -> tuple[tuple[float, float], np.ndarray]:
    """Top-2 eigenpairs of the deflated symmetric normalised affinity, mapped back to (D − W)x = λDx."""
    p = b.shape[0]
    s = 1.0 / np.sqrt(deg)
    u = np.sqrt(deg)
    u /= np.linalg.norm(u)  # D^1/2 1: the trivial eigenvector (μ = 1), projected out

    def matvec(y: np.ndarray) -> np.ndarray:
        y = y.ravel()
        z = s * y
        out = s * (eps * z.sum() + (1.0 - eps) * (b @ z))
        return out - u * (u @ y)

    op = scipy.sparse.linalg.LinearOperator((p, p), matvec=matvec, dtype=np.float64)
    v0 = np.random.default_rng(0).uniform(0.5, 1.5, size=p)  # fixed start vector: deterministic
    # ncv=12, tol=1e-10: measured fewest matvecs at eigenvector errors ~1e-12 (benchmarks/tokencut.py).
    vals, vecs = scipy.sparse.linalg.eigsh(op, k=2, which="LA", v0=v0, ncv=min(p - 1, 12), tol=1e-10)
    order = np.argsort(-vals)
    mu, y = vals[order], vecs[:, order[0]]
    x = s * y
    x /= np.sqrt(x @ (deg * x))  # xᵀDx = 1, the generalised eigh normalisation
    return (float(1.0 - mu[0]), float(1.0 - mu[1])), x


def _ncut_value(part: np.ndarray, b: np.ndarray, deg: np.ndarray, eps: float) -> float:
    """Normalised cut of the bipartition ``part`` (flat bool) on W = ε11ᵀ + (1 − ε)B."""
    n_in = int(part.sum())
    if n_in == 0 or n_in == part.size:
        return 2.0
    ind = part.astype(np.float64)
    vol_s = float(deg[part].sum())
    vol_t = float(deg.sum()) - vol_s
    w_ss = eps * n_in * n_in + (1.0 - eps) * float(ind @ (b @ ind))
    cut = max(vol_s - w_ss, 0.0)
    return cut / vol_s + cut / vol_t


def _finish(
    x: np.ndarray,
    lam2: float,
    lam3: float,
    b: np.ndarray,
    deg: np.ndarray,
    eps: float,
    grid: tuple[int, int],
    tau: float,
    solver: str,
    connectivity: int,
) -> TokenCutResult:
    """Reference post-processing: mean split, seed, reverse rule, seed's connected component, box."""
    h, w = grid
    avg = x.sum() / len(x)
    part = x > avg
    seed = int(np.argmax(np.abs(x)))
    if not part[seed]:  # the reference's reverse rule: the seed's side is the foreground
        x = -x
        part = ~part
        avg = -avg
    if connectivity == 4:
        structure = None  # ndimage.label default, as the reference
    elif connectivity == 8:
        structure = np.ones((3, 3), dtype=bool)
    else:
        raise ValueError(f"connectivity must be 4 or 8, got {connectivity}")
    bip = part.reshape(h, w)
    labels, _ = ndimage.label(bip, structure=structure)
    sr, sc = divmod(seed, w)
    mask = labels == labels[sr, sc]
    rows, cols = np.nonzero(mask)
    box = (int(rows.min()), int(cols.min()), int(rows.max()) + 1, int(cols.max()) + 1)

    ncut = _ncut_value(part, b, deg, eps)
    gap = (lam3 - lam2) / lam3 if lam3 > 0 else 0.0
    area = mask.sum() / mask.size
    reasons = []
    if ncut > CONFIDENT_MAX_NCUT:
        reasons.append(f"the graph has no clean split (Ncut {ncut:.2f} > {CONFIDENT_MAX_NCUT})")
    if area < CONFIDENT_MIN_AREA or mask.sum() < CONFIDENT_MIN_PATCHES:
        reasons.append(f"the object is tiny ({area:.1%} of the image)")
    if area > CONFIDENT_MAX_AREA:
        reasons.append(f"the 'object' covers {area:.0%} of the image")
    message = "" if not reasons else "No clear object: " + "; ".join(reasons) + "."
    return TokenCutResult(
        mask=mask,
        bipartition=bip,
        eigenvector=(x - avg).reshape(h, w).astype(np.float32),
        seed=(int(sr), int(sc)),
        box=box,
        eigenvalues=(lam2, lam3),
        eigengap=float(min(max(gap, 0.0), 1.0)),
        ncut=float(ncut),
        confident=not reasons,
        message=message,
        tau=float(tau),
        eps=float(eps),
        solver=solver,
    )
