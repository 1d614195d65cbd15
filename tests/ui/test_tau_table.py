"""The τ table filler: thumb-first order, steering by the slider, no double solves, newer view wins."""

from __future__ import annotations

import threading
import time
from collections import Counter

from explorer.ui.tau_table import TAU_GRID, TauTable


class FakeView:
    """Stands in for FeatureView: records which τ was computed, in which order, by which thread."""

    def __init__(self, block: float | None = None) -> None:
        self.solved: dict[float, str] = {}
        self.order: list[float] = []
        self.computes: Counter[float] = Counter()
        self.block, self.release = block, threading.Event()
        self.entered = threading.Event()
        self._lock = threading.Lock()

    needs_dense: frozenset[float] = frozenset()

    def graph(self) -> FakeView:
        return self

    def try_solve(self, tau: float) -> str | None:
        """The fast path: None where only the dense solve can answer."""
        return None if round(tau, 3) in self.needs_dense else "certified"

    def has_tokencut(self, tau: float) -> bool:
        return round(tau, 3) in self.solved

    def tokencut(self, tau: float) -> str:
        tau = round(tau, 3)
        if tau == self.block and tau not in self.solved:
            self.entered.set()
            assert self.release.wait(10)
        with self._lock:
            if tau not in self.solved:
                self.computes[tau] += 1
                self.solved[tau] = f"cut {tau}"
                self.order.append(tau)
            return self.solved[tau]


def test_fills_every_position_nearest_first() -> None:
    view = FakeView()
    assert TauTable().warm(view, 0.3).result(10) == len(TAU_GRID)
    assert view.order[:3] == [0.3, 0.29, 0.31] and sorted(view.order) == sorted(TAU_GRID)


def test_follows_the_latest_requested_tau() -> None:
    view, table = FakeView(block=0.2), TauTable()
    fut = table.warm(view, 0.2)
    assert view.entered.wait(10)  # the filler is inside its first solve
    assert table.tokencut(view, 0.55) == "cut 0.55"  # answered at once, not queued behind the filler
    view.release.set()
    fut.result(10)
    assert view.order[:2] == [0.55, 0.2]
    assert set(view.order[2:4]) == {0.54, 0.56}  # then around the thumb, not around 0.2


def test_a_request_for_the_tau_being_solved_waits_instead_of_solving_twice() -> None:
    view, table = FakeView(block=0.2), TauTable()
    fut = table.warm(view, 0.2)
    assert view.entered.wait(10)
    answer: list[str] = []
    asker = threading.Thread(target=lambda: answer.append(table.tokencut(view, 0.2)))
    asker.start()
    time.sleep(0.2)
    assert not answer  # still waiting for the filler's answer
    view.release.set()
    asker.join(10)
    fut.result(10)
    assert answer == ["cut 0.2"] and view.computes[0.2] == 1


def test_a_newer_view_stops_the_older_fill() -> None:
    old, new, table = FakeView(block=0.2), FakeView(), TauTable()
    first = table.warm(old, 0.2)
    assert old.entered.wait(10)
    second = table.warm(new, 0.4)
    old.release.set()
    assert first.result(10) == 1  # it finished the solve it was in, then stopped
    assert second.result(10) == len(TAU_GRID)


def test_positions_that_need_the_dense_solve_come_last() -> None:
    view = FakeView()
    view.needs_dense = frozenset({0.21, 0.5})
    assert TauTable().warm(view, 0.2).result(10) == len(TAU_GRID)
    assert view.order[-2:] == [0.21, 0.5]  # nearest the thumb first among the expensive ones too
