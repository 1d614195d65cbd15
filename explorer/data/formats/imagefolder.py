"""ImageFolder layout (``root/<split>/<class_name>/<id>.png``), as torchvision reads it.

torchvision numbers classes by *sorted* directory name; ``CLASS_NAMES`` is sorted,
so indices agree. Every class gets a directory even when a split has none of
its images, so the class list never depends on which images a split holds.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image

from explorer.data.classes import CLASS_NAMES

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


def prepare_imagefolder(root: Path, split: str, class_names: list[str] = CLASS_NAMES) -> Path:
    d = Path(root) / split
    for name in class_names:
        (d / name).mkdir(parents=True, exist_ok=True)
    return d


def write_imagefolder_image(root: Path, split: str, image_id: str, image: np.ndarray, label: int,
                            class_names: list[str] = CLASS_NAMES) -> Path:
    path = Path(root) / split / class_names[label] / f"{image_id}.png"
    Image.fromarray(image).save(path, compress_level=1)
    return path


def write_imagefolder(root: Path, split: str, items: Iterable[tuple[str, np.ndarray, int]],
                      class_names: list[str] = CLASS_NAMES) -> list[Path]:
    """Write ``(image_id, image uint8[H,W,3], label)`` items losslessly as PNG."""
    prepare_imagefolder(root, split, class_names)
    return [write_imagefolder_image(root, split, i, im, lab, class_names) for i, im, lab in items]


def read_imagefolder(root: Path, split: str | None = None) -> tuple[list[tuple[Path, int]], list[str]]:
    """``([(path, class_index)], class_names)`` with torchvision's sorted-directory convention.

    ``split=None`` reads ``root`` itself as the class-directory level (e.g. ``imagenet/train``).
    """
    d = Path(root) if split is None else Path(root) / split
    if not d.is_dir():
        raise FileNotFoundError(d)
    class_names = sorted(p.name for p in d.iterdir() if p.is_dir() and not p.name.startswith("."))
    samples = []
    for k, name in enumerate(class_names):
        for p in sorted((d / name).rglob("*")):
            if p.is_file() and p.suffix.lower() in IMG_EXTENSIONS:
                samples.append((p, k))
    return samples, class_names
