"""Server-side state shared by every tab: loaded models, decoded images, per-feature derived data.

Why here and not in gr.State: a Gradio session should carry only a small key; the heavy things
(decoded image, Features, the P×P TokenCut affinity, the Gram ordering) live in bounded LRU
stores that every session and the API share. A slider move or click is then a few dict
look-ups plus cheap analysis — the backbone runs once per (image, model, size, layer).
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import numpy as np
from PIL import Image

from explorer import viz
from explorer.analysis import TokenCutGraph, TokenCutResult, gram_matrix, gram_order
from explorer.backbone import Backbone, Features, LoadResult, image_key, load_backbone
from explorer.imageio import ImageError, load_image_with_notes

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

DISPLAY_MAX_SIDE = 640
DISPLAY_MIN_SIDE = 512  # small uploads are shown enlarged (clicks are mapped back to upload pixels)
SIZES = (224, 896, 16)  # min, max, step of the resolution picker
DEFAULT_SIZE = 448
FAILURE_TTL_S = 30.0  # how long a failed model source is remembered before it is retried

HOW_TO_GET_A_MODEL = (
    "Other ways to get a backbone: start with `--model /path/to/hf-folder`, or set `HF_TOKEN` and pick "
    "the hub id `facebook/dinov3-vits16-pretrain-lvd1689m`, or `timm:vit_small_patch16_dinov3.lvd1689m` "
    "(see README, Models)."
)


class UserError(RuntimeError):
    """Something the user can fix (no image, no model, bad file); `str()` is shown as-is."""


class LRU(Generic[K, V]):
    """A tiny thread-safe LRU map; `get_or_make` computes outside the lock."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._items: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        return None

    def put(self, key: K, value: V) -> V:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.max_entries:
                self._items.popitem(last=False)
        return value

    def get_or_make(self, key: K, make: Callable[[], V]) -> V:
        hit = self.get(key)
        return hit if hit is not None else self.put(key, make())

    def __len__(self) -> int:
        return len(self._items)


@dataclass
class ImageEntry:
    """One decoded upload: the model input, a display-sized copy, and what loading did to it."""

    key: str  # content hash of the decoded pixels (the feature-cache key)
    image: Image.Image
    display: np.ndarray  # uint8[H, W, 3], longer side in [DISPLAY_MIN_SIDE, DISPLAY_MAX_SIDE]
    original_size: tuple[int, int]  # (W, H) of the upload, upright
    notes: list[str]

    @property
    def display_size(self) -> tuple[int, int]:
        return int(self.display.shape[1]), int(self.display.shape[0])


@dataclass
class FeatureView:
    """Features of one (image, model, size, layer) plus lazily built, reusable derived data."""

    features: Features
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _graph: TokenCutGraph | None = None
    _cuts: LRU[float, TokenCutResult] = field(default_factory=lambda: LRU(64))
    _gram: np.ndarray | None = None
    _orders: dict[str, np.ndarray] = field(default_factory=dict)
    _memo: dict[Hashable, Any] = field(default_factory=dict)

    @property
    def grid(self) -> tuple[int, int]:
        return self.features.grid

    @property
    def patches(self) -> Any:
        return self.features.patches

    def graph(self) -> TokenCutGraph:
        """The τ-independent TokenCut affinity, built on first use."""
        with self._lock:
            if self._graph is None:
                self._graph = TokenCutGraph.from_patches(self.features.patches)
            return self._graph

    def tokencut(self, tau: float) -> TokenCutResult:
        """TokenCut at τ (rounded to 1e-3 so a slider's float noise reuses results)."""
        tau = round(float(tau), 3)
        return self._cuts.get_or_make(tau, lambda: self.graph().solve(tau))

    def has_tokencut(self, tau: float) -> bool:
        return self._cuts.get(round(float(tau), 3)) is not None

    def gram(self) -> np.ndarray:
        with self._lock:
            if self._gram is None:
                self._gram = gram_matrix(self.features.patches)
            return self._gram

    def memo(self, key: Hashable, make: Callable[[], Any]) -> Any:
        """Cache any other derived value of these features (e.g. a reordered Gram matrix)."""
        with self._lock:
            if key not in self._memo:
                self._memo[key] = make()
            return self._memo[key]

    def order(self, method: str) -> np.ndarray:
        with self._lock:
            if method not in self._orders:
                self._orders[method] = gram_order(self.features.patches, method)  # type: ignore[arg-type]
            return self._orders[method]


@dataclass
class Prepared:
    """Everything a tab handler needs, fetched from the stores (no forward on a hit)."""

    entry: ImageEntry
    backbone: Backbone
    view: FeatureView

    @property
    def features(self) -> Features:
        return self.view.features

    def to_original(self, x: float, y: float) -> tuple[float, float]:
        """Display-pixel coordinates -> original-upload pixel coordinates."""
        dw, dh = self.entry.display_size
        ow, oh = self.entry.original_size
        return x * ow / dw, y * oh / dh

    def patch_at(self, x: float, y: float) -> tuple[int, int]:
        """Original-upload pixel (x, y) -> patch (row, col)."""
        return viz.pixel_to_patch(x, y, self.entry.original_size, self.view.grid)


class ExplorerService:
    """The stores plus `prepare()`, the one path from (image, model, size, layer) to features."""

    def __init__(
        self,
        default_source: str | None = None,
        preloaded: dict[str, Backbone] | None = None,
        heads_dir: str | Path | None = None,
    ) -> None:
        self.default_source = default_source or "bundled"
        # Root of the task heads (`<root>/<backbone-slug>/`); None = the repo's pretrained_heads/.
        self.heads_dir: str | Path | None = heads_dir or os.environ.get("DINOV3_HEADS_DIR") or None
        self.heads: LRU[tuple, Any] = LRU(16)  # loaded heads, so a slider move never re-reads weights
        self._models: dict[str, LoadResult] = {}
        self._model_lock = threading.Lock()
        self._failed_at: dict[str, float] = {}
        self.images: LRU[str, ImageEntry] = LRU(32)
        self.views: LRU[tuple, FeatureView] = LRU(8)  # each may hold P×P matrices
        # One background worker fills the τ table of the image being looked at (see warm_tokencut).
        self._warmer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tau-table")
        self._warm_target: FeatureView | None = None
        for source, backbone in (preloaded or {}).items():
            self._models[source] = LoadResult(backbone, f"Loaded {backbone.model_id}.", False, source)

    # ------------------------------------------------------------ models
    def load_model(self, source: str | None) -> LoadResult:
        """Load (once) and remember the backbone for a source string; never raises."""
        source = (source or self.default_source).strip() or self.default_source
        cached = self._models.get(source)
        if cached is not None and cached.backbone is not None:
            return cached  # the common case, without waiting for another source that is loading
        with self._model_lock:
            cached = self._models.get(source)
            if cached is not None and (
                cached.backbone is not None or time.monotonic() - self._failed_at.get(source, 0.0) < FAILURE_TTL_S
            ):
                return cached  # a failure is remembered briefly so chained views don't re-probe the network
            result = load_backbone(source)
            if result.backbone is None:
                result = LoadResult(None, f"{result.message} {HOW_TO_GET_A_MODEL}", True, source)
                self._failed_at[source] = time.monotonic()
            self._models[source] = result
            return result

    def backbone(self, source: str | None) -> Backbone:
        result = self.load_model(source)
        if result.backbone is None:
            raise UserError(result.message)
        return result.backbone

    # ------------------------------------------------------------ images
    def image(self, source: Any) -> ImageEntry:
        """Decode an upload once (keyed by its path, or by content for in-memory images)."""
        if source is None or (isinstance(source, str) and not source.strip()):
            raise UserError("Upload an image (or pick an example) first.")
        if isinstance(source, dict):  # gradio_client FileData dicts
            source = source.get("path") or source.get("url")
        path_key = None
        if isinstance(source, (str, Path)):
            path = Path(source)
            try:
                st = path.stat()
            except OSError as err:
                raise UserError(f"Could not read the uploaded file ({path.name}).") from err
            path_key = f"{path}|{st.st_size}|{st.st_mtime_ns}"
            hit = self.images.get(path_key)
            if hit is not None:
                return hit
        try:
            loaded = load_image_with_notes(source)
        except ImageError as err:
            raise UserError(str(err)) from err
        key = image_key(loaded.image)
        entry = self.images.get(key) or ImageEntry(
            key=key,
            image=loaded.image,
            display=viz.display_array(loaded.image, DISPLAY_MAX_SIDE, DISPLAY_MIN_SIDE),
            original_size=loaded.original_size,
            notes=loaded.notes,
        )
        self.images.put(key, entry)
        if path_key is not None:
            self.images.put(path_key, entry)
        return entry

    # ------------------------------------------------------------ features
    def prepare(self, image: Any, source: str | None, size: int | float, layer: int | float | None) -> Prepared:
        """Decoded image + backbone + cached features: the first call per key runs the forward."""
        entry = self.image(image)
        backbone = self.backbone(source)
        size = clamp_size(size)
        resolved = backbone.resolve_layer(None if layer in (None, "", 0) else int(layer))
        key = (entry.key, backbone.model_id, size, resolved)
        view = self.views.get_or_make(
            key, lambda: FeatureView(backbone.extract(entry.image, size=size, layer=resolved))
        )
        return Prepared(entry, backbone, view)


def clamp_size(size: int | float | None) -> int:
    """Resolution picker value -> a multiple of 16 in [224, 896]."""
    lo, hi, step = SIZES
    if size is None:
        return DEFAULT_SIZE
    s = int(round(float(size) / step) * step)
    return max(lo, min(hi, s))


from explorer.ui.tau_table import TAU_GRID, warm_tokencut  # noqa: E402,F401  (moved; old import path)
