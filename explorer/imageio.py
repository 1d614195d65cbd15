"""Safe image loading: every odd upload becomes an upright 8-bit RGB image or a clear `ImageError`.

Why this module exists: uploads come from anywhere. A traceback in the UI (or a server that
decodes a 400-megapixel PNG bomb) is worse than a plain sentence saying what was wrong.

Policy (documented in the README):
- Empty, non-image, corrupt or truncated files are refused with a message.
- Each side must be at least one patch (16 px); the aspect ratio must be at most 20:1
  (beyond that the short side collapses to a patch or two at any model resolution).
- Images above 40 megapixels: JPEGs are decoded at a reduced DCT scale (`Image.draft`, cheap)
  when that brings them under the limit; anything else is refused *before* decoding, so a
  20000x20000 PNG costs a header read, not gigabytes of memory.
- Accepted images larger than 2048 px on the long side are downscaled to 2048 (the model never
  sees more than 896 px; keeping the full size would only slow hashing and overlays).
- 16-bit and float images are scaled to 8 bit by their full range; CMYK/YCbCr/LAB/HSV are
  converted; transparency (RGBA, LA, palette with transparency) is composited on white;
  EXIF orientation is applied; animated images use their first frame (and say so).
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

MIN_SIDE = 16
MAX_ASPECT = 20.0
MAX_PIXELS = 40_000_000
MAX_SIDE = 2048
BACKGROUND = (255, 255, 255)

ImageSource = str | os.PathLike | bytes | bytearray | BinaryIO | Image.Image


class ImageError(ValueError):
    """An upload we cannot or will not use; `str(err)` is a user-facing sentence."""


@dataclass
class LoadedImage:
    """The usable image plus what we did to it (shown in the status line)."""

    image: Image.Image
    original_size: tuple[int, int]  # (W, H) upright, before any downscale
    notes: list[str] = field(default_factory=list)

    @property
    def scale(self) -> float:
        """Factor from original pixel coordinates to `image` pixel coordinates."""
        return self.image.width / self.original_size[0]


def load_image(source: ImageSource) -> Image.Image:
    """Open `source` (path, bytes, file object or PIL image) as upright 8-bit RGB or raise ImageError."""
    return load_image_with_notes(source).image


def load_image_with_notes(source: ImageSource) -> LoadedImage:
    """Like `load_image` but also returns the original size and notes for the status line."""
    notes: list[str] = []
    if isinstance(source, Image.Image):
        img = source
    else:
        img = _open(source)
    fmt = (img.format or "").upper()

    w, h = img.size
    _check_geometry(w, h)
    if w * h > MAX_PIXELS:
        if fmt == "JPEG" and not isinstance(source, Image.Image):
            img.draft("RGB", _draft_target(w, h))
            dw, dh = img.size
            if dw * dh > MAX_PIXELS:
                raise _too_large(w, h)
            notes.append(f"very large JPEG ({w}×{h}) decoded at reduced size {dw}×{dh}")
        else:
            raise _too_large(w, h)

    n_frames = int(getattr(img, "n_frames", 1) or 1)
    if n_frames > 1:
        img.seek(0)
        notes.append(f"animated image with {n_frames} frames: showing the first frame")
    try:
        img.load()
    except Image.DecompressionBombError as err:  # pragma: no cover - caught in _open already
        raise _too_large(w, h) from err
    except Exception as err:  # noqa: BLE001 - decoders raise OSError, SyntaxError, zlib.error, ...
        raise ImageError(f"The image file is damaged or truncated and could not be decoded ({err}).") from err

    try:
        orientation = int(img.getexif().get(0x0112, 1) or 1)
    except Exception:  # noqa: BLE001 - a broken EXIF block must not lose an otherwise fine image
        orientation = 1
    original_size = (h, w) if orientation in {5, 6, 7, 8} else (w, h)
    if orientation != 1:
        try:
            img = ImageOps.exif_transpose(img) or img
            notes.append("rotated upright using its EXIF orientation")
        except Exception:  # noqa: BLE001
            notes.append("could not apply the EXIF orientation; showing the image as stored")
            original_size = (w, h)

    img = _to_rgb(img, notes)

    if max(img.size) > MAX_SIDE:
        before = img.size
        img.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.BICUBIC, reducing_gap=2.0)
        notes.append(f"downscaled from {before[0]}×{before[1]} to {img.width}×{img.height}")
    return LoadedImage(image=img, original_size=original_size, notes=notes)


def _draft_target(w: int, h: int) -> tuple[int, int]:
    """Size to request from `Image.draft`: JPEG decodes at 1/2, 1/4 or 1/8 scale, and draft picks
    the strongest reduction that still covers the request, so ask for the first one under the limit."""
    scale = 1
    while (w // scale) * (h // scale) > MAX_PIXELS and scale < 8:
        scale *= 2
    return max(1, -(-w // scale)), max(1, -(-h // scale))


def _too_large(w: int, h: int) -> ImageError:
    mp = w * h / 1e6
    return ImageError(
        f"The image is too large ({w}×{h} = {mp:.0f} megapixels); the limit is "
        f"{MAX_PIXELS / 1e6:.0f} megapixels. Please downscale it and upload again."
    )


def _open(source: ImageSource) -> Image.Image:
    """Open without decoding pixels; map every failure to a user-facing ImageError."""
    if isinstance(source, (bytes, bytearray)):
        data = bytes(source)
        if not data:
            raise ImageError("The file is empty (0 bytes).")
        fp: BinaryIO | Path = io.BytesIO(data)
        name = "the upload"
    elif isinstance(source, (str, os.PathLike)):
        fp = Path(source)
        name = fp.name
        try:
            size = fp.stat().st_size
        except OSError as err:
            raise ImageError(f"Could not read the file {name!r}.") from err
        if size == 0:
            raise ImageError("The file is empty (0 bytes).")
    else:
        fp = source
        name = "the upload"
    try:
        return Image.open(fp)
    except Image.DecompressionBombError as err:
        raise ImageError(
            f"The image is too large to open safely ({err}). The limit is "
            f"{MAX_PIXELS / 1e6:.0f} megapixels; please downscale it."
        ) from err
    except UnidentifiedImageError as err:
        raise ImageError(
            f"{name} is not an image this app can read (it may be a different file type "
            "renamed to .png/.jpg, or damaged). Use a PNG, JPEG, GIF, WebP, BMP or TIFF."
        ) from err
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        raise ImageError(f"The image file is damaged and could not be opened ({err}).") from err


def _check_geometry(w: int, h: int) -> None:
    if min(w, h) < MIN_SIDE:
        raise ImageError(
            f"The image is too small ({w}×{h} px): each side needs at least {MIN_SIDE} px "
            "(one ViT patch)."
        )
    if max(w, h) / min(w, h) > MAX_ASPECT:
        raise ImageError(
            f"The image's aspect ratio is too extreme ({w}×{h}, more than {MAX_ASPECT:.0f}:1); "
            "crop it to a less elongated region first."
        )


def _to_rgb(img: Image.Image, notes: list[str]) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB, keeping the visible colours."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in {"I;16", "I;16B", "I;16L", "I;16N", "I", "F"}:
        notes.append(f"{_depth_name(mode)} image scaled to 8 bit")
        return Image.fromarray(_scale_to_uint8(np.asarray(img), mode)).convert("RGB")
    if mode == "P" and ("transparency" in img.info):
        img = img.convert("RGBA")
        mode = "RGBA"
    if mode in {"RGBA", "LA", "PA", "RGBa", "La"}:
        rgba = img.convert("RGBA")
        alpha = np.asarray(rgba)[..., 3]
        if alpha.min() < 255:
            notes.append("transparent areas shown on white")
        bg = Image.new("RGBA", rgba.size, BACKGROUND + (255,))
        return Image.alpha_composite(bg, rgba).convert("RGB")
    if mode == "CMYK":
        notes.append("CMYK converted to RGB")
    return img.convert("RGB")


def _depth_name(mode: str) -> str:
    return "floating-point" if mode == "F" else ("16-bit" if mode.startswith("I;16") else "32-bit integer")


def _scale_to_uint8(arr: np.ndarray, mode: str) -> np.ndarray:
    """Map a high-bit-depth grey image to 0..255 by its nominal range (16-bit: divide by 257)."""
    a = np.asarray(arr, dtype=np.float64)
    finite = a[np.isfinite(a)]
    amin = float(finite.min()) if finite.size else 0.0
    amax = float(finite.max()) if finite.size else 1.0
    if mode == "F":
        lo, hi = (0.0, 1.0) if amin >= 0.0 and amax <= 1.0 else (amin, amax)
    elif mode.startswith("I;16"):
        lo, hi = 0.0, 65535.0
    elif amin < 0 or amax > 65535:  # genuine 32-bit data: use its own range
        lo, hi = amin, amax
    else:
        lo, hi = 0.0, 65535.0 if amax > 255 else 255.0
    a = np.nan_to_num(a, nan=lo, posinf=hi, neginf=lo)
    span = hi - lo if hi > lo else 1.0
    return np.clip(np.rint((a - lo) / span * 255.0), 0, 255).astype(np.uint8)
