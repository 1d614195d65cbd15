"""Server-side state shared by every tab: loaded models, decoded images, per-feature derived data.

Why here and not in gr.State: a Gradio session should carry only a small key; the heavy things
(decoded image, Features, the P×P TokenCut affinity, the Gram ordering) live in byte-bounded
stores (`explorer.backbone.LRU`) that every session and the API share, under one memory budget.
A slider move or click is then a few dict look-ups plus cheap analysis — the backbone runs once
per (image, model, size, layer), however many requests ask for it at the same moment.

This is also the one choke point for what a stranger may ask for: every endpoint's model string
goes through `load_model` (the public allow-list), every layer and size through `prepare`.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from explorer import viz
from explorer.analysis import TokenCutGraph, TokenCutResult, gram_matrix, gram_order
from explorer.backbone import (
    LRU,
    Backbone,
    Features,
    LoadResult,
    MemoryBudget,
    SourceUnavailable,
    image_key,
    load_backbone,
    load_source,
    nbytes,
)
from explorer.imageio import ImageError, load_image_with_notes
from explorer.ui.policy import ModelPolicy, shown

log = logging.getLogger("explorer.ui")

DISPLAY_MAX_SIDE = 640
DISPLAY_MIN_SIDE = 512  # small uploads are shown enlarged (clicks are mapped back to upload pixels)
SIZES = (224, 896, 16)  # min, max, step of the resolution picker
DEFAULT_SIZE = 448
FAILURE_TTL_S = 30.0  # how long a failed model source is remembered before it is retried
# Shares of the memory budget each store may take on its own (the budget bounds their sum).
IMAGES_SHARE, VIEWS_SHARE, HEADS_SHARE = 0.25, 0.75, 0.25

HOW_TO_GET_A_MODEL = (
    "Other ways to get a backbone: start with `--model /path/to/hf-folder`, or set `HF_TOKEN` and pick "
    "the hub id `facebook/dinov3-vits16-pretrain-lvd1689m`, or `timm:vit_small_patch16_dinov3.lvd1689m` "
    "(see README, Models)."
)
Notify = Callable[[str], None]  # told, before a slow step (model load, forward) starts, what it is


class UserError(RuntimeError):
    """Something the user can fix (no image, no model, bad file); `str()` is shown as-is."""


@dataclass
class ImageEntry:
    """One decoded upload: the model input, a display-sized copy, and what loading did to it."""

    key: str  # content hash of the decoded pixels (the feature-cache key)
    image: Image.Image
    display: np.ndarray  # uint8[H, W, 3], longer side in [DISPLAY_MIN_SIDE, DISPLAY_MAX_SIDE]
    image_hw: tuple[int, int]  # (H, W) of the upload, upright, before any downscale
    notes: list[str]

    @property
    def display_hw(self) -> tuple[int, int]:
        return int(self.display.shape[0]), int(self.display.shape[1])

    @property
    def display_wh(self) -> tuple[int, int]:
        """(W, H) of the display copy: the order `explorer.viz` and PIL take."""
        return int(self.display.shape[1]), int(self.display.shape[0])


# The largest grid the resolution picker gives a patch-16 ViT (896 px: 56×56): its P×P float32
# matrices are 12 MB each; finer grids (ConvNeXt stage 1: 112×112 at 448 px) would need 600 MB per view.
MAX_PAIRWISE_CELLS = 56 * 56


@dataclass(eq=False)
class FeatureView:
    """Features of one (image, model, size, layer) plus lazily built, reusable derived data.

    Each derived value (the TokenCut graph, one τ's cut, the Gram matrix, one ordering, a memo)
    is computed once, single-flight under its own key, so a τ move never waits behind a k-means
    ordering or a head prediction. `on_grow` tells the owning store to re-measure the view.
    """

    features: Features
    on_grow: Callable[[], None] | None = field(default=None, repr=False)
    _derived: LRU[Hashable, Any] = field(default_factory=lambda: LRU(None, name="derived"), repr=False)
    _cuts: LRU[float, TokenCutResult] = field(default_factory=lambda: LRU(64, name="cuts"), repr=False)

    @property
    def grid(self) -> tuple[int, int]:
        return self.features.grid

    @property
    def patches(self) -> Any:
        return self.features.patches

    def memory_bytes(self) -> int:
        return nbytes(self.features) + self._derived.memory_bytes() + self._cuts.memory_bytes()

    def _make(self, store: LRU, key: Hashable, make: Callable[[], Any]) -> Any:
        made = []

        def build() -> Any:
            made.append(True)
            return make()

        value = store.get_or_make(key, build)
        if made and self.on_grow is not None:
            self.on_grow()
        return value

    def pairwise_ok(self, view: str) -> None:
        """Refuse a view whose P×P matrices would not fit a request (a ConvNeXt stage-1 grid: 112×112 at 448 px)."""
        h, w = self.grid
        if h * w > MAX_PAIRWISE_CELLS:
            raise UserError(f"{view} compares every pair of the {h}×{w} = {h * w} grid cells, more than the "
                            f"{MAX_PAIRWISE_CELLS} this app allows: pick a later layer (stage) or a lower resolution.")

    def graph(self) -> TokenCutGraph:
        """The τ-independent TokenCut affinity, built on first use."""
        self.pairwise_ok("TokenCut")
        return self._make(self._derived, "graph", lambda: TokenCutGraph.from_patches(self.features.patches))

    def tokencut(self, tau: float) -> TokenCutResult:
        """TokenCut at τ (rounded to 1e-3 so a slider's float noise reuses results)."""
        tau = round(float(tau), 3)
        return self._make(self._cuts, tau, lambda: self.graph().solve(tau))

    def has_tokencut(self, tau: float) -> bool:
        return round(float(tau), 3) in self._cuts

    def gram(self) -> np.ndarray:
        self.pairwise_ok("The Gram view")
        return self._make(self._derived, "gram", lambda: gram_matrix(self.features.patches))

    def memo(self, key: Hashable, make: Callable[[], Any]) -> Any:
        """Cache any other derived value of these features (e.g. a reordered Gram matrix)."""
        return self._make(self._derived, ("memo", key), make)

    def order(self, method: str) -> np.ndarray:
        self.pairwise_ok("The Gram ordering")
        return self._make(self._derived, ("order", method),
                          lambda: gram_order(self.features.patches, method))  # type: ignore[arg-type]


@dataclass
class Prepared:
    """Everything a tab handler needs, fetched from the stores (no forward on a hit).

    Holding a Prepared keeps its image, backbone and view alive even if a store evicts them.
    """

    entry: ImageEntry
    backbone: Backbone
    view: FeatureView

    @property
    def features(self) -> Features:
        return self.view.features

    def to_original(self, x: float, y: float) -> tuple[float, float]:
        """Display-pixel coordinates -> original-upload pixel coordinates."""
        dh, dw = self.entry.display_hw
        oh, ow = self.entry.image_hw
        return x * ow / dw, y * oh / dh

    def patch_at(self, x: float, y: float) -> tuple[int, int]:
        """Original-upload pixel (x, y) -> patch (row, col)."""
        oh, ow = self.entry.image_hw
        return viz.pixel_to_patch(x, y, (ow, oh), self.view.grid)


class ExplorerService:
    """The stores plus `prepare()`, the one path from (image, model, size, layer) to features."""

    def __init__(
        self,
        default_source: str | None = None,
        preloaded: dict[str, Backbone] | None = None,
        heads_dir: str | Path | None = None,
        *,
        policy: ModelPolicy | None = None,
        budget: MemoryBudget | None = None,
    ) -> None:
        self.default_source = default_source or "bundled"
        self.policy = policy or ModelPolicy()
        self.budget = budget or MemoryBudget.from_env()
        cap = self.budget.max_bytes
        # Root of the task heads (`<root>/<backbone-slug>/`); None = the repo's pretrained_heads/.
        self.heads_dir: str | Path | None = heads_dir or os.environ.get("DINOV3_HEADS_DIR") or None
        # Loaded heads, so a slider move never re-reads weights. Their backbone is counted in `models`.
        self.heads: LRU[tuple, Any] = LRU(max_bytes=int(HEADS_SHARE * cap), budget=self.budget, name="heads",
                                          sizeof=_head_bytes)
        # The most recently used model stays loaded even when it alone exceeds the budget.
        self.models: LRU[str, LoadResult] = LRU(max_bytes=cap, budget=self.budget, name="models", keep_last=1,
                                                sizeof=lambda r: _backbone_bytes(r.backbone))
        self._pinned: LRU[str, LoadResult] = LRU(budget=self.budget, name="preloaded models", keep_last=1 << 30,
                                                 sizeof=lambda r: _backbone_bytes(r.backbone))
        self._failures: LRU[str, tuple[LoadResult, float]] = LRU(64, name="failed sources")
        self._loading: LRU[str, LoadResult] = LRU(0)  # single-flight per source
        self._load_lock = threading.Lock()  # one load at a time: two large models never load together
        self.images: LRU[str, ImageEntry] = LRU(max_bytes=int(IMAGES_SHARE * cap), budget=self.budget,
                                                name="images")
        self._paths: LRU[str, tuple[str, tuple[int, int]]] = LRU(4096, name="upload paths")
        self._decoding: LRU[tuple, ImageEntry] = LRU(0)  # single-flight per upload
        self.views: LRU[tuple, FeatureView] = LRU(max_bytes=int(VIEWS_SHARE * cap), budget=self.budget,
                                                  name="features")
        self.forwards = 0  # backbone forwards run by prepare(): one per distinct (image, model, size, layer)
        self._count_lock = threading.Lock()
        for source, backbone in (preloaded or {}).items():
            self._pinned.put(source, LoadResult(_adopt(backbone, self), f"Loaded {backbone.model_id}.", False, source))

    # ------------------------------------------------------------ models
    def load_model(self, source: str | None, notify: Notify | None = None) -> LoadResult:
        """Load (once) and remember the backbone for a source string; never raises.

        A source off the public allow-list is refused here, before anything is read or fetched.
        """
        source = self._source(source)
        refusal = self.policy.refusal(source)
        if refusal is not None:
            return LoadResult(None, refusal, True, source)
        hit = self.loaded(source)
        if hit is not None:
            return hit
        failed = self._failures.get(source)
        if failed is not None and time.monotonic() - failed[1] < FAILURE_TTL_S:
            return failed[0]  # remembered briefly so chained views don't re-probe the network

        def load() -> LoadResult:
            with self._load_lock:
                result = self._load(source)
            if result.backbone is None and source != self.default_source:
                result = self._fall_back(result)  # outside the lock: the start model may be loading
            if result.backbone is None or (result.fell_back and source != self.default_source):
                self._failures.put(source, (result, time.monotonic()))  # retried after FAILURE_TTL_S
            else:
                self.models.put(source, result)  # incl. the start model's own fallback: loaded once
            return result

        if notify is not None:  # this request loads the model, or waits for a load already under way
            notify(f"Loading model {shown(source) if self.policy.public else source} …")
        return self._loading.get_or_make(source, load)

    def _load(self, source: str) -> LoadResult:
        """Load one source under the load lock; the start model falls back to the bundled one (load_backbone)."""
        if source == self.default_source:
            result = load_backbone(source)
            if result.backbone is None:
                return LoadResult(None, self.policy.redact(f"{result.message} {self._how_to()}"), True, source)
            _adopt(result.backbone, self)
            return LoadResult(result.backbone, self.policy.redact(result.message), result.fell_back, source)
        try:
            backbone = load_source(source)
        except SourceUnavailable as err:
            reason = str(err)
        except Exception as err:  # noqa: BLE001 - a broken folder or weights file must not take the server down
            log.exception("loading %s failed", source)
            reason = f"Could not load {shown(source)} ({type(err).__name__})."
        else:
            return LoadResult(_adopt(backbone, self), f"Loaded {backbone.model_id} on {backbone.device.type}.", False,
                              source)
        return LoadResult(None, self.policy.redact(reason), True, source)

    def _fall_back(self, failed: LoadResult) -> LoadResult:
        """A failed source is answered by the (already loaded) start model, with the reason."""
        default = self.load_model(self.default_source)
        if default.backbone is None:
            return LoadResult(None, f"{failed.message} {self._how_to()}", True, failed.requested)
        return LoadResult(default.backbone, f"{failed.message} Fell back to {default.backbone.model_id}.", True,
                          failed.requested)

    def _how_to(self) -> str:
        if self.policy.public:
            return f"This server offers: {', '.join(self.policy.allowed)}."
        return HOW_TO_GET_A_MODEL

    def backbone(self, source: str | None, notify: Notify | None = None) -> Backbone:
        result = self.load_model(source, notify)
        if result.backbone is None:
            raise UserError(result.message)
        return result.backbone

    def loaded(self, source: str | None = None) -> LoadResult | None:
        """The load result if this source is already loaded (never starts a load)."""
        source = self._source(source)
        return self._pinned.get(source) or self.models.get(source)

    def load_in_background(self, source: str | None = None) -> None:
        """Start loading a model now; a request that needs it meanwhile joins this load (single-flight).

        Why: the start model (transformers import + weights) then loads while Gradio imports and
        the page is served, instead of before.
        """
        threading.Thread(target=self.load_model, args=(source,), name="model-load", daemon=True).start()

    def _source(self, source: str | None) -> str:
        return str(source or self.default_source).strip() or self.default_source

    def check_allowed(self, source: str | None) -> None:
        """UserError for a source off the allow-list (cheap: nothing is decoded or loaded first)."""
        refusal = self.policy.refusal(self._source(source))
        if refusal is not None:
            raise UserError(refusal)

    # ------------------------------------------------------------ images
    def image(self, source: Any) -> ImageEntry:
        """Decode an upload once; later events naming the same upload path reuse the decoded entry.

        Keyed by content (the feature key) and aliased by path, so an upload Gradio's cache sweep
        has already deleted still answers while its pixels are in memory.
        """
        if source is None or (isinstance(source, str) and not source.strip()):
            raise UserError("Upload an image (or pick an example) first.")
        if isinstance(source, dict):  # gradio_client FileData dicts
            source = source.get("path") or source.get("url")
        if not isinstance(source, (str, Path)):
            return self._store_image(self._decode(source))
        path = str(source)
        stamp = _file_stamp(path)
        alias = self._paths.get(path)
        if alias is not None and (stamp is None or stamp == alias[1]):
            entry = self.images.get(alias[0])
            if entry is not None:
                return entry
        if stamp is None:
            raise UserError(f"Could not read the uploaded file ({Path(path).name}); upload the image again.")
        entry = self._decoding.get_or_make((path, stamp), lambda: self._store_image(self._decode(path)))
        self._paths.put(path, (entry.key, stamp))
        return entry

    def _decode(self, source: Any) -> ImageEntry:
        try:
            loaded = load_image_with_notes(source)
        except ImageError as err:
            raise UserError(str(err)) from err
        width, height = loaded.original_size  # imageio's PIL-facing (W, H)
        return ImageEntry(
            key=image_key(loaded.image),
            image=loaded.image,
            display=viz.display_array(loaded.image, DISPLAY_MAX_SIDE, DISPLAY_MIN_SIDE),
            image_hw=(height, width),
            notes=loaded.notes,
        )

    def _store_image(self, entry: ImageEntry) -> ImageEntry:
        """The stored twin of `entry` when these pixels are already held (one copy per picture)."""
        return self.images.get(entry.key) or self.images.put(entry.key, entry)

    # ------------------------------------------------------------ features
    def prepare(
        self, image: Any, source: str | None, size: int | float | None, layer: int | float | str | None,
        notify: Notify | None = None,
    ) -> Prepared:
        """Decoded image + backbone + cached features: the first call per key runs the forward.

        Concurrent first calls for one key share that forward. `notify` hears about a model load
        or a forward before it starts (the UI shows it as progress).
        """
        self.check_allowed(source)
        entry = self.image(image)
        backbone = self.backbone(source, notify)
        size = check_size(size)
        resolved = check_layer(backbone, layer)
        key = (entry.key, backbone.feature_id, size, resolved)
        view = self.views.get(key)
        if view is None:
            if notify is not None and key not in self.views:
                notify(f"Running {backbone.model_id} at {size} px (layer {resolved}) …")
            _adopt(backbone, self)  # a backbone shared with another service answers from this one's store
            features = backbone.extract(entry.image, size=size, layer=resolved)  # single-flight, see _SharedFeatures
            view = self.views.get(key) or self._new_view(key, features)
        return Prepared(entry, backbone, view)

    def _new_view(self, key: tuple, features: Features) -> FeatureView:
        view = FeatureView(features)
        view.on_grow = lambda: self.views.resize(key)
        return self.views.put(key, view)

    def _forward(self, key: tuple, compute: Callable[[], Features]) -> FeatureView:
        with self._count_lock:
            self.forwards += 1
        view = FeatureView(compute())
        view.on_grow = lambda: self.views.resize(key)
        return view

    def stats(self) -> dict[str, Any]:
        """Counters for monitoring and the load benchmark (no image content, no paths)."""
        return {"forwards": self.forwards, "memory": self.budget.stats()}


def check_size(size: int | float | str | None) -> int:
    """Resolution -> a multiple of 16; a value outside the picker's range is a UserError, not clamped."""
    lo, hi, step = SIZES
    if size is None or size == "":
        return DEFAULT_SIZE
    try:
        value = float(size)
    except (TypeError, ValueError) as err:
        raise UserError(f"Resolution must be a number of pixels, got {size!r}.") from err
    if not lo <= value <= hi:
        raise UserError(f"Resolution {value:g} px is out of range: choose {lo} … {hi} px.")
    return int(round(value / step) * step)


def check_layer(backbone: Backbone, layer: int | float | str | None) -> int:
    """The block a request names, in the range of *that* model: 1 … n, negatives from the end, None = last."""
    if layer is None or layer == "":
        return backbone.num_layers
    n = backbone.num_layers
    try:
        value = float(layer)
    except (TypeError, ValueError) as err:
        raise UserError(f"Layer must be a whole number, got {layer!r}.") from err
    if not value.is_integer() or not (1 <= value <= n or -n <= value <= -1):
        raise UserError(f"Layer {value:g} is out of range for {backbone.model_id}, which has {n} layers: "
                        f"choose 1 … {n} (or -1 for the last).")
    try:
        return backbone.resolve_layer(int(value))
    except ValueError as err:
        raise UserError(str(err)) from err


class _SharedFeatures:
    """`Backbone.extract`'s cache answered by a service's view store: one copy, one key, one forward.

    Why: the backbone's own cache would hold every Features a second time under the same key.
    Through this adapter, code that calls `backbone.extract` (the head tabs, tests' references)
    and `prepare` share the service's byte-bounded, single-flight store.
    """

    def __init__(self, service: ExplorerService) -> None:
        self._service = weakref.ref(service)  # a long-lived backbone must not keep a service alive

    @property
    def _items(self) -> Any:
        service = self._service()
        return service.views._items if service is not None else {}

    def get_or_make(self, key: tuple, compute: Callable[[], Features]) -> Features:
        service = self._service()
        if service is None:
            return compute()
        return service.views.get_or_make(key, lambda: service._forward(key, compute)).features

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items


def _adopt(backbone: Backbone, service: ExplorerService) -> Backbone:
    """Point the backbone's feature cache at `service`'s view store (see `_SharedFeatures`)."""
    current = backbone.cache
    if not (isinstance(current, _SharedFeatures) and current._service() is service):
        backbone.cache = _SharedFeatures(service)  # type: ignore[assignment]
    return backbone


def _backbone_bytes(backbone: Backbone | None) -> int:
    from explorer.backbone import nbytes

    return 0 if backbone is None else nbytes(backbone.model)


def _head_bytes(head: Any) -> int:
    """A head's own tensors; a backbone it refers to is counted once, in the models store."""
    from explorer.backbone import nbytes

    held = getattr(head, "backbone", None)
    return nbytes(head) - (_backbone_bytes(held) if isinstance(held, Backbone) else 0)


def _file_stamp(path: str) -> tuple[int, int] | None:
    """(size, mtime) of a file, None when it is gone: a changed file at one path is a new upload."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return int(st.st_size), int(st.st_mtime_ns)


def clamp_size(size: int | float | None) -> int:
    """Resolution picker value -> a multiple of 16 in [224, 896]."""
    lo, hi, step = SIZES
    if size is None:
        return DEFAULT_SIZE
    s = int(round(float(size) / step) * step)
    return max(lo, min(hi, s))
