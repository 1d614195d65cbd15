"""The one LRU: bounded in bytes, one budget over several stores, single-flight, safe eviction."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch
from PIL import Image

from explorer.backbone.cache import LRU, MB, MemoryBudget, nbytes


def block(mb: float) -> np.ndarray:
    return np.zeros(int(mb * MB), np.uint8)


def test_nbytes_counts_buffers_once() -> None:
    batch = torch.zeros(2, 10, 10, 8)  # float32: 6400 bytes of storage
    assert nbytes(batch[0]) == 6400  # a view holds its whole storage
    assert nbytes([batch[0], batch[1], batch]) == 6400  # ... counted once however many views
    arr = np.ones((100, 100), np.float64)
    assert nbytes([arr, arr[:10]]) == 80_000
    assert nbytes(Image.new("RGB", (30, 20))) == 30 * 20 * 3
    assert nbytes(torch.nn.Linear(10, 5)) == (10 * 5 + 5) * 4


def test_byte_bound_evicts_oldest_first() -> None:
    store: LRU[str, np.ndarray] = LRU(max_bytes=int(2.5 * MB))
    for key in "abc":
        store.put(key, block(1))
    assert list(store._items) == ["b", "c"] and store.bytes == 2 * MB
    store.get("b")  # b is now the most recent: d pushes c out
    store.put("d", block(1))
    assert list(store._items) == ["b", "d"]


def test_one_budget_over_two_stores_evicts_the_globally_oldest() -> None:
    budget = MemoryBudget(3 * MB)
    images: LRU[str, np.ndarray] = LRU(budget=budget, name="images")
    views: LRU[str, np.ndarray] = LRU(budget=budget, name="views")
    images.put("i1", block(1))
    views.put("v1", block(1))
    images.put("i2", block(1))
    views.put("v2", block(1))  # 4 MB > 3 MB: i1, the oldest of all, goes
    assert "i1" not in images and {"v1", "v2"} <= set(views._items) and "i2" in images
    assert budget.used == 3 * MB and budget.evictions == 1


def test_keep_last_survives_the_budget() -> None:
    budget = MemoryBudget(1 * MB)
    models: LRU[str, np.ndarray] = LRU(budget=budget, keep_last=1)
    models.put("big", block(2))  # alone over budget, still kept: reloading per request would be worse
    assert "big" in models
    models.put("other", block(2))
    assert list(models._items) == ["other"]


def test_resize_remeasures_a_grown_value() -> None:
    store: LRU[str, dict] = LRU(max_bytes=3 * MB)
    store.put("a", {"x": block(1)})
    store.put("b", {"x": block(1)})
    store._items["a"]["y"] = block(1.5)  # the value grew after it was stored
    store.resize("a")
    assert list(store._items) == ["a"] and store.bytes == int(2.5 * MB) + len("xy")  # + the two keys


def test_single_flight_one_make_for_concurrent_callers() -> None:
    store: LRU[str, int] = LRU(8)
    calls, started = [], threading.Event()

    def make() -> int:
        calls.append(1)
        started.set()
        time.sleep(0.2)  # keep the key pending while the others arrive
        return 42

    results: list[int] = []
    threads = [threading.Thread(target=lambda: results.append(store.get_or_make("k", make))) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert results == [42] * 6 and len(calls) == 1


def test_failure_reaches_waiters_and_is_not_cached() -> None:
    store: LRU[str, int] = LRU(8)
    gate = threading.Event()

    def fail() -> int:
        gate.wait(5)
        raise ValueError("broken upload")

    errors: list[str] = []

    def call() -> None:
        try:
            store.get_or_make("k", fail)
        except ValueError as err:
            errors.append(str(err))

    threads = [threading.Thread(target=call) for _ in range(3)]
    for t in threads:
        t.start()
    time.sleep(0.1)
    gate.set()
    for t in threads:
        t.join(10)
    assert errors == ["broken upload"] * 3
    assert store.get_or_make("k", lambda: 7) == 7  # the next call tries again


def test_evicted_value_stays_valid_for_its_holder() -> None:
    store: LRU[str, np.ndarray] = LRU(max_bytes=1 * MB)
    held = store.get_or_make("a", lambda: np.full(MB, 3, np.uint8))
    store.put("b", block(1))
    assert "a" not in store and int(held.sum()) == 3 * MB  # the request in flight still has its array


def test_zero_entries_is_a_pure_single_flight_group() -> None:
    group: LRU[str, int] = LRU(0)
    assert group.get_or_make("k", lambda: 1) == 1 and len(group) == 0
    assert group.get_or_make("k", lambda: 2) == 2


@pytest.mark.parametrize(("raw", "mb"), [("", 1024), ("256", 256), ("0.5", 0.5)])
def test_budget_from_env(raw: str, mb: float) -> None:
    assert MemoryBudget.from_env({"EXPLORER_MEMORY_MB": raw}).max_bytes == int(mb * MB)


def test_budget_from_env_refuses_garbage() -> None:
    with pytest.raises(ValueError, match="EXPLORER_MEMORY_MB"):
        MemoryBudget.from_env({"EXPLORER_MEMORY_MB": "lots"})
