"""The offline labelled world: deterministic scenes of emoji objects on varied backgrounds.

Scene ``i`` of seed ``s`` depends on nothing but ``(s, i)`` (its generator is
``np.random.default_rng([s, i])``), so any worker, in any order or process,
produces byte-identical scenes; that is what lets ``generate_pool`` fan out.

Labels come from the renderer, never from post-hoc estimation: the instance map
records which object owns each pixel after occlusion, and every box is the
bounding box of that object's *visible* pixels.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

import cv2
import numpy as np

from explorer.data.atlas import ATLAS_DIR, load_atlas
from explorer.data.backgrounds import BackgroundMaker
from explorer.data.classes import CLASS_NAMES, NUM_CLASSES

# Generator parameters (documented in docs/DATASET_CARD.md; sizes are in pixels at 224 and
# scale linearly with the frame size).
SINGLE_FRACTION = 0.6              # P(scene is "single"), else "cluttered"
SINGLE_SIZE = (0.20, 0.90)         # dominant object's longer side, fraction of frame, log-uniform
OBJECT_CENTRIC_SIZE = (0.45, 0.90)  # object-centric mode: the one object's longer side (see SceneGenerator)
MIN_SIZE_PX = 24                   # smallest object's longer side at 224 px
DISTRACTOR_MAX_REL = 0.45          # single scenes: distractor size <= this x dominant size
CLUTTER_COUNT = (3, 8)             # cluttered scenes: number of objects, inclusive, uniform
CLUTTER_MAX = 0.50                 # cluttered: object size log-uniform in [MIN_SIZE, this x frame]
MAX_ROTATION_DEG = 30.0            # uniform in [-30, 30]
MIN_VISIBLE_FRACTION = 0.30        # drop an instance if less than this of its in-frame mask is visible
MIN_VISIBLE_PX = 48                # ... or if fewer visible pixels than this (at 224 px)
MAX_ATTEMPTS = 8


@dataclass
class Instance:
    """One labelled object; ``box_xyxy`` are pixel edges (x1, y1 exclusive) of its visible mask."""

    box_xyxy: tuple[float, float, float, float]
    class_id: int
    area: int  # visible pixels


@dataclass
class Scene:
    """A rendered scene and all its labels (see docs/CONVENTIONS.md)."""

    image: np.ndarray          # uint8 [H, W, 3]
    seg: np.ndarray            # uint8 [H, W]: 0 background, k + 1 for class k
    instances: list[Instance]
    dominant: int              # index into instances
    label: int                 # class id of the dominant object
    kind: str                  # "single" or "cluttered"
    inst_map: np.ndarray = field(repr=False, default_factory=lambda: np.zeros((0, 0), np.uint8))
    # uint8 [H, W]: 0 = no listed instance, j + 1 = instances[j] (visible pixels only)

    @property
    def dominant_box(self) -> tuple[float, float, float, float]:
        return self.instances[self.dominant].box_xyxy

    @property
    def class_name(self) -> str:
        return CLASS_NAMES[self.label]


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(math.exp(rng.uniform(math.log(lo), math.log(max(hi, lo)))))


class SceneGenerator:
    """Renders scenes; ``scene(i)`` is a pure function of ``(seed, i)``."""

    def __init__(self, seed: int, size: int = 224, atlas_dir: Path = ATLAS_DIR,
                 object_centric: bool = False) -> None:
        """``object_centric``: every scene is one large object, no distractors (an ImageNet-like
        pretraining distribution; scenes stay pure functions of ``(seed, i)``)."""
        self.seed = int(seed)
        self.object_centric = bool(object_centric)
        self.size = int(size)
        self.px = self.size / 224.0
        sprites = load_atlas(atlas_dir)
        # Premultiplied float32 RGBA: warping premultiplied colour avoids dark fringes.
        self.sprites = []
        for s in sprites:
            f = s.astype(np.float32)
            f[..., 3] /= 255.0
            f[..., :3] *= f[..., 3:4]
            self.sprites.append(f)
        self.backgrounds = BackgroundMaker(self.size)
        # Fixed grain texture, cropped at a random offset per scene (cheaper than fresh noise).
        self._grain = np.random.default_rng([self.seed, 2**31]).standard_normal(
            (2 * self.size, 2 * self.size, 1)).astype(np.float32).repeat(3, axis=2)
        self._perm_cache: tuple[int, np.ndarray] | None = None

    # -- class schedule ---------------------------------------------------------------------
    def primary_class(self, i: int) -> int:
        """Stratified: each block of NUM_CLASSES consecutive indices holds every class once."""
        block = i // NUM_CLASSES
        if self._perm_cache is None or self._perm_cache[0] != block:
            perm = np.random.default_rng([self.seed, block, 7919]).permutation(NUM_CLASSES)
            self._perm_cache = (block, perm)
        return int(self._perm_cache[1][i % NUM_CLASSES])

    # -- rendering ---------------------------------------------------------------------------
    def _paste(self, canvas: np.ndarray, owner: np.ndarray, j: int, cls: int, size_px: float,
               cx: float, cy: float, rng: np.random.Generator) -> tuple[int, tuple[int, int, int, int]]:
        """Warp sprite ``cls`` into the canvas; returns (in-frame mask pixels, roi)."""
        spr = self.sprites[cls]
        h, w = spr.shape[:2]
        scale = size_px / max(h, w)
        theta = math.radians(rng.uniform(-MAX_ROTATION_DEG, MAX_ROTATION_DEG))
        flip = -1.0 if rng.random() < 0.5 else 1.0
        c, s = math.cos(theta) * scale, math.sin(theta) * scale
        a = np.array([[c * flip, -s], [s * flip, c]], np.float32)
        src_c = np.array([w / 2.0, h / 2.0], np.float32)
        t = np.array([cx, cy], np.float32) - a @ src_c
        corners = np.array([[0, 0], [w, 0], [0, h], [w, h]], np.float32) @ a.T + t
        x0 = max(0, int(math.floor(corners[:, 0].min())))
        y0 = max(0, int(math.floor(corners[:, 1].min())))
        x1 = min(self.size, int(math.ceil(corners[:, 0].max())))
        y1 = min(self.size, int(math.ceil(corners[:, 1].max())))
        if x1 - x0 < 2 or y1 - y0 < 2:
            return 0, (0, 0, 0, 0)
        m = np.concatenate([a, (t - np.array([x0, y0], np.float32))[:, None]], axis=1)
        warped = cv2.warpAffine(spr, m, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0, 0))
        alpha = warped[..., 3:4]
        # Colour/brightness shift: per-channel gains after a saturation change, one 3x3 linear map
        # (linear, so valid on premultiplied colour; the zero 4th column ignores alpha).
        gains = rng.uniform(0.85, 1.15, 3) * rng.uniform(0.7, 1.25)
        sat = rng.uniform(0.6, 1.3)
        mix = np.diag(gains) @ (sat * np.eye(3) + (1.0 - sat) / 3.0)
        rgb = cv2.transform(warped, np.concatenate([mix, np.zeros((3, 1))], axis=1).astype(np.float32))
        roi = canvas[y0:y1, x0:x1]
        np.multiply(roi, 1.0 - alpha, out=roi)
        np.add(roi, rgb, out=roi)
        mask = alpha[..., 0] > 0.5
        np.copyto(owner[y0:y1, x0:x1], np.uint8(j + 1), where=mask)
        return int(np.count_nonzero(mask)), (x0, y0, x1, y1)

    def _layout(self, rng: np.random.Generator, primary: int, kind: str, bare: bool):
        """(class, size_px, cx, cy) per object in drawing order, and the primary's position."""
        s = float(self.size)
        min_px = MIN_SIZE_PX * self.px
        if kind == "single":
            lo, hi = OBJECT_CENTRIC_SIZE if self.object_centric else SINGLE_SIZE
            size = _log_uniform(rng, lo * s, hi * s)
            slack = max(0.0, (s - size) / 2) + 0.15 * size
            cx, cy = s / 2 + rng.uniform(-slack, slack, 2)
            objs = [(primary, size, cx, cy)]
            n_extra = 0 if bare else int(rng.choice(3, p=[0.4, 0.35, 0.25]))
            for _ in range(n_extra):
                cls = int(rng.integers(NUM_CLASSES - 1))
                cls += cls >= primary
                dsize = _log_uniform(rng, min_px, max(min_px, DISTRACTOR_MAX_REL * size))
                objs.append((cls, dsize, *rng.uniform(0, s, 2)))
            return objs, 0
        n = 1 if bare else int(rng.integers(CLUTTER_COUNT[0], CLUTTER_COUNT[1] + 1))
        sizes = sorted((_log_uniform(rng, min_px, CLUTTER_MAX * s) for _ in range(n)), reverse=True)
        objs = []
        for k, size in enumerate(sizes):
            cls = primary if k == 0 else int(rng.integers(NUM_CLASSES))
            margin = 0.3 * size if k == 0 else 0.0  # keep most of the primary in frame
            objs.append((cls, size, *rng.uniform(margin, s - margin, 2)))
        # The primary (largest) is drawn last so it is never occluded.
        return objs[1:] + objs[:1], len(objs) - 1

    def _render(self, rng: np.random.Generator, primary: int, kind: str, bare: bool):
        canvas, _ = self.backgrounds(rng)
        owner = np.zeros((self.size, self.size), np.uint8)
        objs, p_idx = self._layout(rng, primary, kind, bare)
        full, rois = [], []
        for j, (cls, size, cx, cy) in enumerate(objs):
            area, roi = self._paste(canvas, owner, j, cls, size, cx, cy, rng)
            full.append(area)
            rois.append(roi)
        # Global contrast/brightness jitter + sensor grain, saturated to uint8 in one OpenCV call.
        contrast = rng.uniform(0.8, 1.15)
        bright = rng.uniform(-20, 20)
        gy, gx = rng.integers(0, self.size, 2)
        grain = self._grain[gy:gy + self.size, gx:gx + self.size]
        image = cv2.addWeighted(canvas, contrast, grain, rng.uniform(0, 6), 128.0 * (1 - contrast) + bright,
                                dtype=cv2.CV_8U)
        return image, owner, objs, p_idx, full, rois

    def scene(self, i: int) -> Scene:
        """Render scene ``i`` (pure function of ``(seed, i)``)."""
        rng = np.random.default_rng([self.seed, int(i)])
        primary = self.primary_class(int(i))
        kind = "single" if rng.random() < SINGLE_FRACTION or self.object_centric else "cluttered"
        min_vis = MIN_VISIBLE_PX * self.px * self.px
        for attempt in range(MAX_ATTEMPTS):
            bare = self.object_centric or attempt == MAX_ATTEMPTS - 1  # last resort: the primary alone
            image, owner, objs, p_idx, full, rois = self._render(rng, primary, kind, bare)
            visible = cv2.calcHist([owner], [0], None, [256], [0, 256]).ravel().astype(np.int64)[1:len(objs) + 1]
            keep = [j for j in range(len(objs))
                    if full[j] > 0 and visible[j] >= max(MIN_VISIBLE_FRACTION * full[j], min_vis)]
            if p_idx in keep and int(np.argmax(visible)) == p_idx:
                break
        lut = np.zeros(256, np.uint8)
        relabel = np.zeros(256, np.uint8)
        for j, (cls, *_rest) in enumerate(objs):
            lut[j + 1] = cls + 1  # every drawn object's pixels carry its class in seg
        instances = []
        for new, j in enumerate(keep):
            relabel[j + 1] = new + 1
            x0, y0, x1, y1 = rois[j]
            ys, xs = np.nonzero(owner[y0:y1, x0:x1] == j + 1)
            box = (float(x0 + xs.min()), float(y0 + ys.min()), float(x0 + xs.max() + 1), float(y0 + ys.max() + 1))
            instances.append(Instance(box, int(objs[j][0]), int(visible[j])))
        dominant = int(np.argmax([inst.area for inst in instances]))
        return Scene(image=image, seg=cv2.LUT(owner, lut), instances=instances, dominant=dominant,
                     label=instances[dominant].class_id, kind=kind, inst_map=cv2.LUT(owner, relabel))

    def batch(self, indices: Iterable[int]) -> list[Scene]:
        return [self.scene(i) for i in indices]


# -- multi-process pool for pretraining ----------------------------------------------------------
_WORKER: dict = {}


def _pool_init(seed: int, size: int, path: str, n: int, object_centric: bool) -> None:
    cv2.setNumThreads(1)
    _WORKER.update(gen=SceneGenerator(seed, size, object_centric=object_centric),
                   images=np.memmap(path, np.uint8, mode="r+", shape=(n, size, size, 3)))


def _pool_work(bounds: tuple[int, int, int]) -> tuple[int, list[int]]:
    start, stop, offset = bounds
    gen, images = _WORKER["gen"], _WORKER["images"]
    labels = []
    for k in range(start, stop):
        sc = gen.scene(offset + k)
        images[k] = sc.image
        labels.append(sc.label)
    return start, labels


def _scratch_dir(nbytes: int) -> str | None:
    """RAM-backed /dev/shm when it has room (containers often cap it at 64 MB), else the temp dir."""
    try:
        if shutil.disk_usage("/dev/shm").free > 1.2 * nbytes:
            return "/dev/shm"
    except OSError:
        pass
    return None


def generate_pool(seed: int, n: int, size: int = 224, workers: int | None = None,
                  start: int = 0, chunk: int = 256, object_centric: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Scenes ``start .. start+n-1`` as (uint8[n,H,W,3], int64[n]) using ``workers`` processes.

    Workers write straight into one memory-mapped scratch file (no per-image pickling); with
    the ``spawn`` start method they are safe even if the parent holds torch/CUDA state.
    """
    workers = workers or os.cpu_count() or 1
    labels = np.zeros(n, np.int64)
    if workers <= 1 or n <= chunk:
        gen = SceneGenerator(seed, size, object_centric=object_centric)
        images = np.empty((n, size, size, 3), np.uint8)
        for k in range(n):
            sc = gen.scene(start + k)
            images[k], labels[k] = sc.image, sc.label
        return images, labels
    nbytes = n * size * size * 3
    with tempfile.TemporaryDirectory(dir=_scratch_dir(nbytes), prefix="world_pool_") as tmp:
        path = os.path.join(tmp, "images.u8")
        np.memmap(path, np.uint8, mode="w+", shape=(nbytes,)).flush()
        jobs = [(a, min(a + chunk, n), start) for a in range(0, n, chunk)]
        ctx = get_context("spawn")
        with ctx.Pool(workers, initializer=_pool_init, initargs=(seed, size, path, n, object_centric)) as pool:
            for a, labs in pool.imap_unordered(_pool_work, jobs):
                labels[a:a + len(labs)] = labs
        images = np.array(np.memmap(path, np.uint8, mode="r", shape=(n, size, size, 3)))
    return images, labels


def scenes_for(seed: int, indices: Sequence[int], size: int = 224) -> list[Scene]:
    """Convenience for tests and notebooks."""
    return SceneGenerator(seed, size).batch(indices)
