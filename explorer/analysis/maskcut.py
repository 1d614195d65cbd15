"""MaskCut (CutLER, Wang et al., 2023): several objects by repeated TokenCut on one patch grid.

Round k runs TokenCut on the graph whose already-taken patches have zero features (so every edge
to them is ε, exactly as CutLER's ``maskcut_forward`` zeroes them), with CutLER's two extra rules:
a cut with ≥ 3 of its 4 corners on the foreground side is flipped (an object rarely fills three
corners; counted after orienting by the seed, see ``tokencut._cut``: CutLER's count before
orienting depends on the eigenvector's arbitrary sign), and the seed is then the largest entry of
the oriented eigenvector. A round's mask (the
seed's connected component) is dropped when it covers ≤ 1 % of the grid or overlaps an earlier
object's mask with IoU > 0.5; otherwise its new patches (those no earlier object took) become an
object, with its box and the round's Ncut value.

Two choices where CutLER's code is narrower than its description: the IoU test is against every
earlier object (CutLER compares with the previous round only, which lets a dropped mask come back
one round later), and a dropped round ends the search (the graph is then unchanged, so every later
round would repeat the same cut). Round 0 is never dropped, as in CutLER.

Everything per round reuses ``TokenCutGraph``'s τ-independent affinity; ``MaskCutter`` caches the
rounds per τ, so asking for N + 1 objects after N costs one more cut.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from .tokencut import BinaryGraph, Cut, Solver, TokenCutGraph

#: A round's mask covering at most this fraction of the grid is dropped (CutLER: ``ratio <= 0.01``).
MIN_AREA = 0.01
#: A round's mask overlapping an earlier object's mask by more than this IoU is dropped.
MAX_IOU = 0.5
MAX_OBJECTS = 16


@dataclass(frozen=True)
class MaskCutObject:
    """One discovered object: its patches, box (r0, c0, r1, c1; exclusive ends, patch units), Ncut."""

    mask: np.ndarray  # bool (h, w): the round's seed component minus patches earlier objects took
    box: tuple[int, int, int, int]
    ncut: float
    round: int  # 0-based round that found it
    solver: str

    @property
    def area(self) -> float:
        """Fraction of the grid the object covers."""
        return float(self.mask.mean())


@dataclass(frozen=True)
class MaskCutRound:
    """What one round did: its cut (None when nothing was left to cut) and why it was dropped."""

    cut: Cut | None
    kept: bool
    reason: str  # "" when kept


@dataclass(frozen=True)
class MaskCutResult:
    objects: list[MaskCutObject]
    rounds: list[MaskCutRound]
    tau: float
    n: int


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = int((a | b).sum())
    return float((a & b).sum() / union) if union else 0.0


class MaskCutter:
    """MaskCut on one graph, with the rounds cached per τ (round k of N is round k of N + 1)."""

    def __init__(self, graph: TokenCutGraph, eps: float = 1e-5, solver: Solver = "fast") -> None:
        self.graph = graph
        self.eps = eps
        self.solver: Solver = solver
        self._rounds: dict[float, list[MaskCutRound]] = {}
        self._lock = threading.Lock()  # guards the dict only; cuts run outside it

    @classmethod
    def from_patches(cls, patches: Any, eps: float = 1e-5, solver: Solver = "fast") -> MaskCutter:
        return cls(TokenCutGraph.from_patches(patches), eps, solver)

    def run(self, tau: float, n: int) -> MaskCutResult:
        """Up to ``n`` objects at threshold ``tau`` (1 ≤ n ≤ MAX_OBJECTS)."""
        if not 1 <= int(n) <= MAX_OBJECTS:
            raise ValueError(f"the number of objects must be between 1 and {MAX_OBJECTS}, got {n}")
        n, tau = int(n), float(tau)
        key = round(tau, 6)
        with self._lock:
            rounds = list(self._rounds.get(key, []))
        if len(rounds) < n:
            rounds = self._extend(tau, rounds, n)
            with self._lock:
                if len(self._rounds.get(key, [])) < len(rounds):
                    self._rounds[key] = rounds
        rounds = rounds[:n]
        return MaskCutResult(_objects(rounds), rounds, tau, n)

    def _extend(self, tau: float, rounds: list[MaskCutRound], n: int) -> list[MaskCutRound]:
        grid = self.graph.grid
        size = grid[0] * grid[1]
        kept = [r.cut.mask for r in rounds if r.kept and r.cut is not None]
        taken = np.zeros(grid, dtype=bool)
        for m in kept:
            taken |= m
        b = None
        while len(rounds) < n:
            if rounds and not rounds[-1].kept:  # unchanged graph: the same cut, the same verdict
                rounds.append(rounds[-1])
                continue
            if (~taken).sum() <= MIN_AREA * size:
                rounds.append(MaskCutRound(None, False, "nothing left to cut"))
                continue
            if b is None:
                b = self.graph.binary(tau)
            binary = BinaryGraph(b, tau, taken.ravel())
            cut = self.graph.cut(binary, self.eps, self.solver, connectivity=4, corner_rule=True)
            assert cut is not None  # with the dense fallback a cut always comes back
            reason = ""
            if rounds:  # CutLER never drops round 0
                area = float(cut.mask.mean())
                overlaps = [i for i, m in enumerate(kept) if _iou(cut.mask, m) > MAX_IOU]
                if area <= MIN_AREA:
                    reason = f"too small ({area:.1%} of the image)"
                elif overlaps:
                    reason = f"overlaps object {overlaps[0] + 1} (IoU > {MAX_IOU})"
                elif not (cut.mask & ~taken).any():
                    reason = "nothing new"
            rounds.append(MaskCutRound(cut, not reason, reason))
            if not reason:
                kept.append(cut.mask)
                taken |= cut.mask
        return rounds


def _objects(rounds: list[MaskCutRound]) -> list[MaskCutObject]:
    objects, taken = [], None
    for i, r in enumerate(rounds):
        if not r.kept or r.cut is None:
            continue
        mask = r.cut.mask if taken is None else r.cut.mask & ~taken
        taken = r.cut.mask.copy() if taken is None else taken | r.cut.mask
        rows, cols = np.nonzero(mask)
        box = (int(rows.min()), int(cols.min()), int(rows.max()) + 1, int(cols.max()) + 1)
        objects.append(MaskCutObject(mask, box, r.cut.ncut, i, r.cut.solver))
    return objects


def maskcut(patches: Any, tau: float = 0.15, n: int = 3, eps: float = 1e-5, solver: Solver = "fast") -> MaskCutResult:
    """MaskCut on one (h, w, d) patch grid. Use ``MaskCutter`` when τ or N will change."""
    return MaskCutter.from_patches(patches, eps, solver).run(tau, n)
