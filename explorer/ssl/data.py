"""Image pools for pretraining: the offline world, an ImageFolder, or random noise (tests).

Why a pool: small-model SSL is bound by augmentation, not by disk. All images live in
one uint8 [N, H, W, 3] tensor (on the GPU when there is one); crops are rendered batched
from it, so there is no data loader and no per-image Python work per step.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
HELDOUT_SEED_OFFSET = 7919


@dataclass
class Pool:
    images: Tensor  # uint8 [N, H, W, 3]
    labels: Tensor | None  # int64 [N] or None

    def __len__(self) -> int:
        return int(self.images.shape[0])


def _square(img: Image.Image, size: int) -> np.ndarray:
    """Resize the shorter side to `size`, centre-crop to size x size, RGB uint8."""
    img = img.convert("RGB")
    w, h = img.size
    s = size / min(w, h)
    img = img.resize((max(size, round(w * s)), max(size, round(h * s))), Image.BICUBIC)
    w, h = img.size
    left, top = (w - size) // 2, (h - size) // 2
    return np.asarray(img.crop((left, top, left + size, top + size)), dtype=np.uint8)


def read_image_folder(root: str | Path, size: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """ImageFolder (root/class/*.jpg, or flat root/*.jpg = one class) -> images, labels, class names."""
    root = Path(root)
    classes = sorted(d.name for d in root.iterdir() if d.is_dir())
    files: list[tuple[Path, int]] = []
    if classes:
        for ci, c in enumerate(classes):
            files += [(p, ci) for p in sorted((root / c).rglob("*")) if p.suffix.lower() in IMAGE_EXTS]
    else:
        classes = [root.name]
        files = [(p, 0) for p in sorted(root.iterdir()) if p.suffix.lower() in IMAGE_EXTS]
    if not files:
        raise FileNotFoundError(f"no images under {root}")
    images = np.stack([_square(Image.open(p), size) for p, _ in files])
    labels = np.array([c for _, c in files], dtype=np.int64)
    return images, labels, classes


OBJECTS_SEED_OFFSET = 104_729  # object-centric scenes use their own seed, disjoint from world:N's


def load_pretraining_pool(source: str, size: int, seed: int = 0, workers: int | None = None) -> Pool:
    """`world:N` (offline world scenes), `objects:N` (object-centric world scenes: one large object,
    no distractors), `random:N` (noise, for tests), a directory (ImageFolder), or several joined
    with `+` (e.g. `objects:6000+world:3000`), concatenated in that order."""
    if "+" in source:
        parts = [load_pretraining_pool(part, size, seed, workers) for part in source.split("+")]
        labels = None if any(p.labels is None for p in parts) else torch.cat([p.labels for p in parts])
        return Pool(torch.cat([p.images for p in parts]), labels)
    if source.startswith(("world:", "objects:")):
        from explorer.data.world import generate_pool

        objects = source.startswith("objects:")
        images, labels = generate_pool(seed + OBJECTS_SEED_OFFSET * objects, int(source.split(":", 1)[1]),
                                       size=size, workers=workers, object_centric=objects)
        return Pool(torch.from_numpy(np.ascontiguousarray(images)), torch.from_numpy(labels))
    if source.startswith("random:"):
        g = torch.Generator().manual_seed(seed)
        n = int(source.split(":", 1)[1])
        # smooth random blobs rather than white noise, so crops have structure
        low = torch.randint(0, 256, (n, 3, 6, 6), generator=g).float()
        imgs = torch.nn.functional.interpolate(low, size=(size, size), mode="bicubic", align_corners=False)
        imgs = imgs.clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()
        return Pool(imgs, torch.randint(0, 4, (n,), generator=g))
    images, labels, _ = read_image_folder(source, size)
    return Pool(torch.from_numpy(images), torch.from_numpy(labels))


def load_heldout(source: str, size: int, n_train: int, n_test: int, seed: int = 0,
                 workers: int | None = None) -> tuple[Pool, Pool] | None:
    """A labelled (bank, query) split for the k-NN monitor, disjoint from the training pool.

    world / objects (or a `+` mix containing either): ordinary world scenes from another seed, the
    distribution the backbone is evaluated on; directory: a deterministic 20% of its images are held
    out (the caller removes them from training via `split_folder`); random: no labels -> None.
    """
    if any(part.startswith(("world:", "objects:")) for part in source.split("+")):
        from explorer.data.world import generate_pool

        images, labels = generate_pool(seed + HELDOUT_SEED_OFFSET, n_train + n_test, size=size, workers=workers)
        imgs, labs = torch.from_numpy(np.ascontiguousarray(images)), torch.from_numpy(labels)
        return Pool(imgs[:n_train], labs[:n_train]), Pool(imgs[n_train:], labs[n_train:])
    return None


def split_folder(pool: Pool, heldout_fraction: float, n_train: int, n_test: int, seed: int = 0) -> tuple[Pool, tuple[Pool, Pool] | None]:
    """Hold out a fraction of a labelled folder pool for the k-NN monitor; returns (train pool, (bank, query))."""
    if pool.labels is None or len(pool) < 10:
        return pool, None
    perm = torch.randperm(len(pool), generator=torch.Generator().manual_seed(seed))
    n_held = max(2, int(len(pool) * heldout_fraction))
    held, train = perm[:n_held], perm[n_held:]
    n_bank = min(n_train, n_held // 2)
    bank, query = held[:n_bank], held[n_bank : n_bank + n_test]
    take = lambda idx: Pool(pool.images[idx], pool.labels[idx])  # noqa: E731
    return take(train), (take(bank), take(query))
