"""The τ table: TokenCut solved for every slider value in the background, nearest the thumb first.

Why: the slider moves in steps of 0.01, so once every position is solved a drag costs only the
rendering. The filler follows the latest τ a user asked for (``tokencut`` records it), so the
positions around the thumb are solved first; each solve starts from a neighbouring τ's
eigenvectors (``TokenCutGraph`` keeps them), which never changes a mask (the fast result is
certified or recomputed densely); positions that need the dense solve are filled last. Nothing here holds a lock during a solve: a click, a render or
an on-demand solve never waits for the filler, except for the very τ the filler is solving then,
whose answer it waits for instead of solving it twice.
"""

from __future__ import annotations

import threading
import weakref
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING

from explorer.analysis import TokenCutResult

if TYPE_CHECKING:
    from explorer.ui.service import ExplorerService, FeatureView

TAU_GRID = tuple(round(0.01 * i, 2) for i in range(61))  # the τ slider's values: 0.00 … 0.60


class TauTable:
    """One background filler per service (the image being looked at), steered by the slider."""

    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tau-table")
        self._lock = threading.Lock()  # guards the fields below only
        self._target: FeatureView | None = None
        self._focus = 0.2
        self._busy: tuple[int, float] | None = None  # (id(view), τ) being solved by the filler
        self._done = threading.Condition(self._lock)

    def warm(self, view: FeatureView, around: float) -> Future:
        """Start filling ``view``'s table from ``around``; a newer view stops an older fill."""
        with self._lock:
            self._target, self._focus = view, float(around)
        return self._executor.submit(self._fill, view)

    def tokencut(self, view: FeatureView, tau: float) -> TokenCutResult:
        """TokenCut at τ for a request: steer the filler here, reuse its answer if it is on it."""
        tau = round(float(tau), 3)
        with self._lock:
            if self._target is view:
                self._focus = tau
            while self._busy == (id(view), tau):
                self._done.wait(timeout=30.0)
        return view.tokencut(tau)

    def _fill(self, view: FeatureView) -> int:
        solved, deferred = 0, set()
        graph = view.graph()
        while True:
            with self._lock:
                if self._target is not view:
                    return solved
                todo = [t for t in TAU_GRID if not view.has_tokencut(t)]
                if not todo:
                    return solved
                cheap = [t for t in todo if t not in deferred] or todo  # certifiable cuts first
                tau = min(cheap, key=lambda t: (abs(t - self._focus), t))
                self._busy = (id(view), tau)
            try:
                if tau in deferred or graph.try_solve(tau) is not None:
                    view.tokencut(tau)  # the graph's memo answers, or the dense solve runs now
                    solved += 1
                else:
                    deferred.add(tau)  # needs the dense solve: after every cheaper position
            finally:
                with self._lock:
                    self._busy = None
                    self._done.notify_all()

_TABLES: weakref.WeakKeyDictionary[ExplorerService, TauTable] = weakref.WeakKeyDictionary()
_TABLES_LOCK = threading.Lock()


def table(svc: ExplorerService) -> TauTable:
    """The service's τ table filler (made on first use)."""
    with _TABLES_LOCK:
        if svc not in _TABLES:
            _TABLES[svc] = TauTable()
        return _TABLES[svc]


def warm_tokencut(svc: ExplorerService, view: FeatureView, around: float) -> Future:
    """Solve TokenCut for every slider value in the background, nearest to ``around`` first.

    The future's result is the number of τ values this fill solved (0 if stopped by a newer view).
    """
    return table(svc).warm(view, around)


def slider_tokencut(svc: ExplorerService, view: FeatureView, tau: float) -> TokenCutResult:
    """What the τ slider calls: the table's answer, steering the filler to the thumb."""
    return table(svc).tokencut(view, tau)
