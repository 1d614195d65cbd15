"""A small, bounded LRU cache of `Features`; every view reads from it."""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable

import numpy as np
from PIL import Image

from explorer.backbone.features import Features


def image_key(image: Image.Image) -> str:
    """Content hash of the decoded pixels (not the file bytes: the same picture saved twice is one key)."""
    array = np.asarray(image.convert("RGB"))
    digest = hashlib.blake2b(array.tobytes(), digest_size=16)
    digest.update(str(array.shape).encode())
    return digest.hexdigest()


class FeatureCache:
    """Thread-safe LRU keyed by (image hash, model id, size, layer)."""

    def __init__(self, max_entries: int = 32) -> None:
        self.max_entries = max_entries
        self._items: OrderedDict[Hashable, Features] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get_or_compute(self, key: Hashable, compute: Callable[[], Features]) -> Features:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                self.hits += 1
                return self._items[key]
        value = compute()  # outside the lock: a slow forward must not block other sessions' hits
        with self._lock:
            self.misses += 1
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.max_entries:
                self._items.popitem(last=False)
        return value

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._items
