"""The one cache class: a thread-safe LRU bounded in entries and bytes, with single-flight.

Every store of the app (decoded images, features and their derived matrices, loaded models,
heads) is an `LRU`; stores that share a `MemoryBudget` are evicted together, oldest entry
first across all of them, so one global number (`EXPLORER_MEMORY_MB`) bounds the lot.

Why single-flight: two requests for the same new key (two sessions uploading one picture, three
head tabs refreshing at once) must share one forward, not run three. Why evicting is always
safe: a value is handed out by reference, so a request in flight keeps what it holds alive even
after the store has forgotten it; only the next request pays for recomputing.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from typing import Any, Generic, TypeVar

import numpy as np
from PIL import Image

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

MB = 1 << 20
DEFAULT_MEMORY_MB = 1024  # what the caches of one app may hold when EXPLORER_MEMORY_MB is unset
_TICKS = itertools.count()  # global recency clock: comparable across stores (next() is atomic in CPython)


def image_key(image: Image.Image) -> str:
    """Content hash of the decoded pixels (not the file bytes: the same picture saved twice is one key)."""
    array = np.asarray(image.convert("RGB"))
    digest = hashlib.blake2b(array.tobytes(), digest_size=16)
    digest.update(str(array.shape).encode())
    return digest.hexdigest()


def nbytes(value: Any) -> int:
    """Bytes held by the arrays, tensors and images inside `value` (each buffer counted once).

    Python object overhead is ignored: what fills memory here are pixel buffers, feature grids,
    P×P matrices and weights. An object may answer for itself with a `memory_bytes()` method.
    """
    return _nbytes(value, set())


def _nbytes(value: Any, seen: set[int]) -> int:
    if value is None or isinstance(value, (bool, int, float, complex)) or callable(value) and not hasattr(
        value, "parameters"
    ):
        return 0
    if id(value) in seen:
        return 0
    seen.add(id(value))
    if isinstance(value, (str, bytes, bytearray)):
        return len(value)
    if isinstance(value, np.ndarray):
        base = value
        while isinstance(base.base, np.ndarray):  # a view: count the buffer it looks into, once
            base = base.base
        if base is not value:
            if id(base) in seen:
                return 0
            seen.add(id(base))
        return int(base.nbytes)
    if isinstance(value, Image.Image):
        return value.width * value.height * max(1, len(value.getbands()))
    torch = _torch()
    if torch is not None:
        if isinstance(value, torch.Tensor):
            storage = value.untyped_storage()
            if storage.data_ptr() in seen:  # views of one storage (e.g. patches of a batch) count once
                return 0
            seen.add(storage.data_ptr())
            return int(storage.nbytes())
        if isinstance(value, torch.nn.Module):
            return sum(_nbytes(t, seen) for t in itertools.chain(value.parameters(), value.buffers()))
    own = getattr(value, "memory_bytes", None)
    if callable(own) and not isinstance(value, type):
        return int(own())
    if isinstance(value, dict):
        return sum(_nbytes(k, seen) + _nbytes(v, seen) for k, v in value.items())
    if isinstance(value, (list, tuple, set, frozenset)):
        return sum(_nbytes(v, seen) for v in value)
    fields = getattr(value, "__dict__", None)
    if isinstance(fields, dict):
        return _nbytes(fields, seen)
    slots = getattr(type(value), "__slots__", ())
    return sum(_nbytes(getattr(value, s, None), seen) for s in slots if isinstance(s, str))


def _torch() -> Any:
    """torch if something already imported it (sizing never forces the import at start-up)."""
    import sys

    return sys.modules.get("torch")


class MemoryBudget:
    """One byte budget over several stores: the globally least recently used entry goes first."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = int(max_bytes)
        self._stores: weakref.WeakSet[LRU] = weakref.WeakSet()
        self._lock = threading.Lock()
        self.evictions = 0

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> MemoryBudget:
        """`EXPLORER_MEMORY_MB` (default DEFAULT_MEMORY_MB)."""
        raw = (env if env is not None else os.environ).get("EXPLORER_MEMORY_MB", "").strip()
        try:
            mb = float(raw) if raw else DEFAULT_MEMORY_MB
        except ValueError as err:
            raise ValueError(f"EXPLORER_MEMORY_MB must be a number of megabytes, got {raw!r}") from err
        return cls(int(mb * MB))

    def register(self, store: LRU) -> None:
        self._stores.add(store)

    @property
    def used(self) -> int:
        return sum(store.bytes for store in list(self._stores))

    def enforce(self) -> None:
        """Evict oldest entries (across stores) until the total fits; each store locked in turn, never two."""
        with self._lock:
            while self.used > self.max_bytes:
                candidates = [(s.oldest_tick(), i, s) for i, s in enumerate(list(self._stores))]
                candidates = [c for c in candidates if c[0] is not None]
                if not candidates:
                    return  # only pinned or protected entries left
                _, _, store = min(candidates, key=lambda c: (c[0], c[1]))
                if store.evict_oldest():
                    self.evictions += 1

    def stats(self) -> dict[str, Any]:
        return {"max_mb": round(self.max_bytes / MB, 1), "used_mb": round(self.used / MB, 1),
                "evictions": self.evictions,
                "stores": {s.name or f"store{i}": s.stats() for i, s in enumerate(list(self._stores))}}


class LRU(Generic[K, V]):
    """Thread-safe LRU map bounded by entry count and/or bytes; `get_or_make` is single-flight.

    `max_entries=0` keeps nothing (a pure single-flight group). `keep_last` entries, the most
    recently used, are never evicted by the shared budget (a loaded model that alone exceeds it
    must stay loaded, not be reloaded on every request). Sizes are measured with `nbytes` when an
    entry is stored and again on `resize(key)` (a value that grew, e.g. a view that built a graph).
    """

    def __init__(
        self,
        max_entries: int | None = None,
        *,
        max_bytes: int | None = None,
        budget: MemoryBudget | None = None,
        name: str = "",
        keep_last: int = 0,
        sizeof: Callable[[Any], int] = nbytes,
    ) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.name = name
        self.keep_last = keep_last
        self._sizeof = sizeof
        self._items: OrderedDict[K, V] = OrderedDict()
        self._meta: dict[K, tuple[int, int]] = {}  # key -> (bytes, last-use tick)
        self._pending: dict[K, Future] = {}
        self._lock = threading.Lock()
        self._budget = budget
        self.hits = 0
        self.misses = 0
        if budget is not None:
            budget.register(self)

    # ------------------------------------------------------------ reads
    def get(self, key: K) -> V | None:
        with self._lock:
            if key in self._items:
                self._touch(key)
                self.hits += 1
                return self._items[key]
        return None

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)

    @property
    def bytes(self) -> int:
        with self._lock:
            return sum(self._meta.get(k, (0, 0))[0] for k in self._items)

    def memory_bytes(self) -> int:
        return self.bytes

    def oldest_tick(self) -> int | None:
        """Tick of the oldest evictable entry (None: nothing this store may give up)."""
        with self._lock:
            if len(self._items) <= self.keep_last:
                return None
            oldest = next(iter(self._items))
            return self._meta.get(oldest, (0, -1))[1]

    def stats(self) -> dict[str, Any]:
        return {"entries": len(self._items), "mb": round(self.bytes / MB, 2), "hits": self.hits,
                "misses": self.misses}

    # ------------------------------------------------------------ writes
    def put(self, key: K, value: V) -> V:
        size = self._sizeof(value)  # outside the lock: sizing a view walks its matrices
        with self._lock:
            self._items[key] = value
            self._meta[key] = (size, next(_TICKS))
            self._items.move_to_end(key)
            self._trim()
        self._enforce_budget()
        return value

    def resize(self, key: K) -> None:
        """Re-measure one entry after its value grew (and mark it used); may evict others, or it."""
        value = self._items.get(key)
        if value is None:
            return
        size = self._sizeof(value)
        with self._lock:
            if key in self._items and self._items[key] is value:
                self._items.move_to_end(key)  # it grew because a request is using it: recent
                self._meta[key] = (size, next(_TICKS))
                self._trim()
        self._enforce_budget()

    def pop(self, key: K) -> V | None:
        with self._lock:
            self._meta.pop(key, None)
            return self._items.pop(key, None)

    def evict_oldest(self) -> bool:
        with self._lock:
            if len(self._items) <= self.keep_last:
                return False
            key, _ = self._items.popitem(last=False)
            self._meta.pop(key, None)
            return True

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._meta.clear()

    def get_or_make(self, key: K, make: Callable[[], V]) -> V:
        """The cached value, else `make()` run once however many threads ask at the same time.

        `make` runs outside the store's lock (a slow forward never blocks other keys' hits);
        concurrent callers of the same key wait for it and get its value or its exception.
        A failure is not cached: the next call tries again.
        """
        with self._lock:
            if key in self._items:
                self._touch(key)
                self.hits += 1
                return self._items[key]
            pending = self._pending.get(key)
            leader = pending is None
            if leader:
                pending = self._pending[key] = Future()
                self.misses += 1
        if not leader:
            return pending.result()
        try:
            value = make()
        except BaseException as err:
            with self._lock:
                self._pending.pop(key, None)
            pending.set_exception(err)
            raise
        try:
            self.put(key, value)
        finally:
            with self._lock:
                self._pending.pop(key, None)
            pending.set_result(value)
        return value

    # ------------------------------------------------------------ internals (lock held)
    def _touch(self, key: K) -> None:
        self._items.move_to_end(key)
        size = self._meta.get(key, (0, 0))[0]
        self._meta[key] = (size, next(_TICKS))

    def _trim(self) -> None:
        def over() -> bool:
            if self.max_entries is not None and len(self._items) > self.max_entries:
                return True
            if self.max_bytes is not None and len(self._items) > self.keep_last:
                return sum(self._meta.get(k, (0, 0))[0] for k in self._items) > self.max_bytes
            return False

        while self._items and over():
            key, _ = self._items.popitem(last=False)
            self._meta.pop(key, None)

    def _enforce_budget(self) -> None:
        if self._budget is not None:
            self._budget.enforce()
