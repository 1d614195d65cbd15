"""The one way to make pixels for a backbone: aspect-preserving resize to a multiple of the patch, then
the backbone's own normalisation.

The app, every head trainer, the evaluation and the k-NN monitor call `preprocess` (one image) or
`preprocess_many` (a batch) so a head is served on exactly the input it was trained on; `PIXELS_RECIPE`
names this recipe in head cards.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MIN_SIZE, MAX_SIZE = 224, 896
# Recorded in head cards: the resize kernel and rule every caller of `preprocess` gets.
PIXELS_RECIPE = "pil-bicubic-longer-side-aspect-kept-multiple-of-patch"


def target_size(width: int, height: int, size: int, patch: int) -> tuple[int, int]:
    """(H, W) with the longer side ~= `size`, each side rounded to a multiple of `patch` (>= 1 patch).

    The longer side is fixed (not the shorter) so that the token count, and with it memory and
    time, is bounded by (size / patch)^2 whatever the aspect ratio.
    """
    scale = size / max(width, height)
    out_h = max(patch, int(round(height * scale / patch)) * patch)
    out_w = max(patch, int(round(width * scale / patch)) * patch)
    return out_h, out_w


def preprocess(
    image: Image.Image,
    size: int,
    patch: int,
    mean: tuple[float, ...] = IMAGENET_MEAN,
    std: tuple[float, ...] = IMAGENET_STD,
) -> torch.Tensor:
    """PIL image -> normalised (1, 3, H, W) float tensor."""
    image = image.convert("RGB")
    out_h, out_w = target_size(image.width, image.height, size, patch)
    resized = image.resize((out_w, out_h), Image.Resampling.BICUBIC)
    array = np.asarray(resized, dtype=np.float32) / 255.0
    array = (array - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return torch.from_numpy(array.transpose(2, 0, 1).copy()).unsqueeze(0)


def preprocess_many(
    images: Sequence[Image.Image],
    size: int,
    patch: int,
    mean: tuple[float, ...] = IMAGENET_MEAN,
    std: tuple[float, ...] = IMAGENET_STD,
) -> torch.Tensor:
    """A batch through `preprocess`, image by image: (B, 3, H, W). The images must map to one input size."""
    tensors = [preprocess(image, size, patch, mean, std) for image in images]
    shapes = {tuple(t.shape[2:]) for t in tensors}
    if len(shapes) > 1:
        raise ValueError(f"images map to different input sizes {sorted(shapes)}; batch images of one aspect ratio")
    return torch.cat(tensors, dim=0)
