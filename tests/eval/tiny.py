"""Tiny fixtures shared by the head and eval tests: the conftest tiny ViT on disk and a toy dataset.

The dataset is written in the real layouts by hand (ImageFolder; VOC ``JPEGImages`` +
``SegmentationClass`` palette PNGs + ``Annotations`` XML + ``ImageSets``), so the tests do not depend
on the offline-world generator. Images are learnable: each class is a coloured square on grey.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from tests.conftest import make_tiny_model

COLORS = [(220, 30, 30), (30, 200, 40), (40, 60, 230)]
CLASS_NAMES = ["red", "green", "blue"]


def tiny_backbone(seed: int = 0, model_id: str = "tiny-test"):
    """`tests.conftest.make_tiny_model` wrapped as a Backbone (the one tiny-model factory)."""
    from explorer.backbone import Backbone

    return Backbone.from_model(make_tiny_model(seed), model_id)


def save_tiny_model(folder: Path, seed: int = 0) -> Path:
    make_tiny_model(seed).save_pretrained(folder)
    return folder


def scene(rng: np.random.Generator, size: int = 64) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int, int], int]:
    """One image with a single coloured square; returns (rgb, seg, box_xyxy, class_id)."""
    label = int(rng.integers(len(COLORS)))
    img = np.full((size, size, 3), 128, np.uint8) + rng.integers(0, 20, (size, size, 3)).astype(np.uint8)
    side = int(rng.integers(size // 3, size // 2 + 1))
    x0, y0 = (int(v) for v in rng.integers(0, size - side, 2))
    img[y0 : y0 + side, x0 : x0 + side] = COLORS[label]
    seg = np.zeros((size, size), np.uint8)
    seg[y0 : y0 + side, x0 : x0 + side] = label + 1
    seg[y0 : y0 + side, x0] = 255  # a void column on the object's left edge, VOC-style
    return img, seg, (x0, y0, x0 + side, y0 + side), label


def _palette() -> list[int]:
    pal = [0, 0, 0, 128, 0, 0, 0, 128, 0, 128, 128, 0] + [0] * (3 * 252)
    pal[255 * 3 : 255 * 3 + 3] = [224, 224, 192]
    return pal


def write_world(root: Path, n_per_split: dict[str, int] | None = None, seed: int = 0, size: int = 64) -> Path:
    """ImageFolder under ``root/imagefolder`` and VOC under ``root/voc`` for splits train/val/test."""
    n_per_split = n_per_split or {"train": 24, "val": 9, "test": 9}
    rng = np.random.default_rng(seed)
    voc = root / "voc"
    for sub in ("JPEGImages", "SegmentationClass", "Annotations", "ImageSets/Main", "ImageSets/Segmentation"):
        (voc / sub).mkdir(parents=True, exist_ok=True)
    for split, n in n_per_split.items():
        ids = []
        for i in range(n):
            img, seg, box, label = scene(rng, size)
            sid = f"{split}_{i:04d}"
            ids.append(sid)
            d = root / "imagefolder" / split / CLASS_NAMES[label]
            d.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(d / f"{sid}.png")
            Image.fromarray(img).save(voc / "JPEGImages" / f"{sid}.jpg", quality=95)
            p = Image.fromarray(seg, mode="P")
            p.putpalette(_palette())
            p.save(voc / "SegmentationClass" / f"{sid}.png")
            x0, y0, x1, y1 = box
            (voc / "Annotations" / f"{sid}.xml").write_text(
                f"<annotation><filename>{sid}.jpg</filename><size><width>{size}</width><height>{size}</height>"
                f"<depth>3</depth></size><object><name>{CLASS_NAMES[label]}</name><difficult>0</difficult>"
                f"<bndbox><xmin>{x0 + 1}</xmin><ymin>{y0 + 1}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox>"
                f"</object></annotation>"
            )
        for sub in ("Main", "Segmentation"):
            (voc / "ImageSets" / sub / f"{split}.txt").write_text("\n".join(ids) + "\n")
    (voc / "class_names.txt").write_text("\n".join(["background", *CLASS_NAMES]) + "\n")
    return root
