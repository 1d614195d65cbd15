"""Backgrounds for the offline world: procedural textures and license-clean photos.

Why several families: a self-supervised backbone learns whatever shortcut the
data allows. If every background were a smooth gradient, "object = the only
textured region" would be enough; mixing gradients, multi-octave noise,
periodic patterns and random crops of real photos (textures and a deep-field
sky) forces features to describe the objects themselves.

Photos come from scikit-image's bundled ``skimage/data`` files; each one's
license is recorded in ``PHOTOS`` (and in docs/DATASET_CARD.md). Photos that
show things that could be confused with a class (Chelsea the cat, the rocket,
the astronaut, the coffee cup, the camera man, the round cell in saline, which reads
as a ball) are deliberately not used.
If scikit-image is absent, only procedural backgrounds are drawn.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

# file name in skimage/data -> (license, source) ; all used only as random crops.
PHOTOS: dict[str, tuple[str, str]] = {
    "brick.png": ("CC0", "cc0textures.com Bricks25 (via scikit-image)"),
    "grass.png": ("CC0", "DeviantArt linolafett Grass-01 (via scikit-image)"),
    "gravel.png": ("CC0", "cc0textures.com Gravel04 (via scikit-image)"),
    "hubble_deep_field.jpg": ("public domain (NASA)", "HubbleSite release 2012-37 (via scikit-image)"),
    "retina.jpg": ("CC0", "Wikimedia Commons, Mikael Haggstrom (via scikit-image)"),
}
# Crop windows (fractions y0, y1, x0, x1) that avoid black borders / the eye outline.
_WINDOWS = {"retina.jpg": (0.22, 0.78, 0.22, 0.78)}
KINDS = ("gradient", "noise", "pattern", "photo", "photo_gradient")
KIND_P = np.array([0.2, 0.2, 0.15, 0.3, 0.15])


def _skimage_data_dir() -> Path | None:
    spec = importlib.util.find_spec("skimage")
    if spec is None or spec.origin is None:
        return None
    d = Path(spec.origin).parent / "data"
    return d if d.is_dir() else None


@dataclass
class Photo:
    """A bundled photo as float32 [0,1]; grey ones are tinted per scene."""

    pixels: np.ndarray  # (h, w) or (h, w, 3)
    name: str

    @property
    def grey(self) -> bool:
        return self.pixels.ndim == 2


def load_photos(max_side: int = 512) -> list[Photo]:
    """Load the license-clean photos once (downscaled) so each scene only crops + resizes."""
    d = _skimage_data_dir()
    if d is None:
        return []
    out = []
    for name in PHOTOS:
        path = d / name
        if not path.exists():
            continue
        im = Image.open(path)
        im = im.convert("L") if im.mode in ("L", "I", "I;16", "1") else im.convert("RGB")
        arr = np.asarray(im)
        if name in _WINDOWS:
            y0, y1, x0, x1 = _WINDOWS[name]
            h, w = arr.shape[:2]
            arr = arr[int(y0 * h):int(y1 * h), int(x0 * w):int(x1 * w)]
        scale = max_side / max(arr.shape[:2])
        if scale < 1:
            arr = cv2.resize(arr, (round(arr.shape[1] * scale), round(arr.shape[0] * scale)),
                             interpolation=cv2.INTER_AREA)
        out.append(Photo(np.ascontiguousarray(arr, dtype=np.float32) / 255.0, name))
    return out


class BackgroundMaker:
    """Draws one (size, size, 3) float32 background in [0, 255] from a scene's rng."""

    def __init__(self, size: int, photos: list[Photo] | None = None) -> None:
        self.size = size
        self.photos = load_photos() if photos is None else photos
        ax = (np.arange(size, dtype=np.float32) + 0.5) / size - 0.5
        self.yy, self.xx = np.meshgrid(ax, ax, indexing="ij")
        self._ramp = np.linspace(0, 1, 256, dtype=np.float32)[:, None]
        p = KIND_P.copy()
        if not self.photos:
            p[3:] = 0
        self.kind_p = p / p.sum()

    def _colour(self, rng: np.random.Generator) -> np.ndarray:
        return rng.uniform(0, 255, 3).astype(np.float32)

    def _duotone(self, t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Map t in [0, 1] onto the segment between two random colours (via a 256-entry LUT: fast)."""
        a, b = self._colour(rng), self._colour(rng)
        lut = (a + self._ramp * (b - a)).astype(np.uint8).reshape(1, 256, 3)
        idx = cv2.convertScaleAbs(t, alpha=255.0)  # saturating float -> uint8
        return cv2.LUT(cv2.merge([idx, idx, idx]), lut).astype(np.float32)

    def gradient(self, rng: np.random.Generator) -> np.ndarray:
        theta = rng.uniform(0, 2 * np.pi)
        if rng.random() < 0.3:  # radial
            cx, cy = rng.uniform(-0.4, 0.4, 2)
            t = np.sqrt((self.xx - cx) ** 2 + (self.yy - cy) ** 2) * rng.uniform(0.6, 1.2)
        else:
            t = self.xx * np.cos(theta) + self.yy * np.sin(theta) + 0.5
        return self._duotone(np.clip(t, 0, 1), rng)

    def noise(self, rng: np.random.Generator) -> np.ndarray:
        s = self.size
        channels = 3 if rng.random() < 0.4 else 1
        base = int(rng.integers(2, 6))
        acc = np.zeros((s, s, channels) if channels == 3 else (s, s), np.float32)
        weight, total = 1.0, 0.0
        persistence = rng.uniform(0.35, 0.7)
        for octave in range(4):
            g = base * 2 ** octave
            grid = rng.random((g, g, channels) if channels == 3 else (g, g), dtype=np.float32)
            acc += weight * cv2.resize(grid, (s, s), interpolation=cv2.INTER_CUBIC)
            total += weight
            weight *= persistence
        acc = np.clip(acc / total, 0, 1)
        if channels == 3:
            return acc * 255.0
        return self._duotone(acc, rng)

    def pattern(self, rng: np.random.Generator) -> np.ndarray:
        freq = rng.uniform(3, 18)
        theta = rng.uniform(0, np.pi)
        u = self.xx * np.cos(theta) + self.yy * np.sin(theta)
        v = -self.xx * np.sin(theta) + self.yy * np.cos(theta)
        k = rng.integers(3)
        if k == 0:  # stripes
            t = 0.5 + 0.5 * np.sin(2 * np.pi * freq * u)
        elif k == 1:  # checker, softened
            t = 0.5 + 0.5 * np.tanh(4 * np.sin(2 * np.pi * freq * u) * np.sin(2 * np.pi * freq * v))
        else:  # waves
            t = 0.5 + 0.5 * np.sin(2 * np.pi * freq * u + rng.uniform(1, 4) * np.sin(2 * np.pi * freq / 3 * v))
        return self._duotone(t.astype(np.float32), rng)

    def photo(self, rng: np.random.Generator) -> np.ndarray:
        ph = self.photos[int(rng.integers(len(self.photos)))]
        h, w = ph.pixels.shape[:2]
        side = int(min(h, w) * rng.uniform(0.35, 1.0))
        y0 = int(rng.integers(0, h - side + 1))
        x0 = int(rng.integers(0, w - side + 1))
        crop = ph.pixels[y0:y0 + side, x0:x0 + side]
        crop = cv2.resize(crop, (self.size, self.size), interpolation=cv2.INTER_LINEAR)
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        if rng.random() < 0.5:
            crop = crop[::-1]
        if ph.grey:
            return self._duotone(crop, rng)
        gains = rng.uniform(0.7, 1.3, 3).astype(np.float32)
        return np.clip(crop * gains * 255.0, 0, 255)

    def __call__(self, rng: np.random.Generator) -> tuple[np.ndarray, str]:
        kind = KINDS[int(rng.choice(len(KINDS), p=self.kind_p))]
        if kind == "photo_gradient":
            a = self.photo(rng)
            t = rng.uniform(0.3, 0.7)
            return (t * a + (1 - t) * self.gradient(rng)).astype(np.float32), kind
        return getattr(self, kind)(rng).astype(np.float32, copy=False), kind
