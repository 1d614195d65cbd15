"""Extract a dataset's features once per backbone and keep them on disk.

Training a probe or a segmentation head on frozen features should not re-run the backbone every
time a hyper-parameter changes, so features are cached as safetensors keyed by
(dataset root + hash of the file list, backbone fingerprint, pixel spec, layer). Any change to the
images listed, the backbone, the pixels recipe, the size or the layer gives a new key, so a stale cache
cannot be hit. Pixels come from ``Backbone.preprocess_many`` — the one pixels path the app serves heads
on (aspect kept, longer side ``size``, sides multiples of the patch) — so a head trained on these
features reads at serving time exactly what it was trained on. Images that map to the same input shape
are batched together; a dataset whose images all share one shape (the offline world: square scenes)
gives one ``(N, h, w, d)`` tensor, a mixed-aspect dataset a list of per-image ``(h_i, w_i, d)`` grids.

Patch grids are stored as float16 (half the disk and RAM; the heads train in float32). A CLS-only
request still stores the grids when they take at most ``$EXPLORER_CACHE_PATCH_LIMIT_MB`` (1024 MB).

Cache location: ``$EXPLORER_CACHE/features`` or ``<repo>/.cache/features``.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from explorer.heads.io import REPO_ROOT


def default_cache_dir() -> Path:
    env = os.environ.get("EXPLORER_CACHE")
    return (Path(env) if env else REPO_ROOT / ".cache") / "features"


@dataclass
class FeatureSet:
    """Features of an ordered list of images (row i <-> ``paths[i]``)."""

    cls: torch.Tensor  # (N, d) float32
    patch_mean: torch.Tensor  # (N, d) float32, mean patch token (for CLS + avgpool probes)
    patches: torch.Tensor | list[torch.Tensor] | None  # (N, h, w, d) float16 (list when shapes differ) or None
    paths: list[str]
    key: str
    size: int
    layer: int


def cache_key(paths: Sequence[str | Path], root: str | Path, fingerprint: str, size: int, layer: int,
              pixels: str = "") -> str:
    """Stable hash of what determines the features (file sizes/mtimes catch edited images)."""
    h = hashlib.sha256()
    h.update(str(Path(root).resolve()).encode())
    for p in paths:
        p = Path(p)
        try:
            st = p.stat()
            stamp = f"{st.st_size}:{int(st.st_mtime)}"
        except OSError:
            stamp = "missing"
        h.update(f"\n{p.resolve()}|{stamp}".encode())
    h.update(f"\n{fingerprint}|{int(size)}|{int(layer)}|{pixels}|v3".encode())
    return h.hexdigest()[:24]


def load_rgb(path: str | Path) -> Image.Image:
    """A dataset image as RGB, at its own size (``Backbone.preprocess`` does the resizing)."""
    with Image.open(path) as im:
        return im.convert("RGB")


def _shape_groups(backbone: Any, paths: Sequence[str], size: int) -> dict[tuple[int, int], list[int]]:
    """Image indices by the (H, W) input ``preprocess`` gives them (read from headers, no decoding)."""
    from explorer.backbone.preprocess import target_size

    groups: dict[tuple[int, int], list[int]] = {}
    for i, p in enumerate(paths):
        with Image.open(p) as im:
            w, h = im.size
        groups.setdefault(target_size(w, h, size, backbone.patch_size), []).append(i)
    return groups


def extract_features(
    backbone: Any,
    paths: Sequence[str | Path],
    root: str | Path,
    size: int = 224,
    layer: int | None = None,
    patches: bool = True,
    batch_size: int = 32,
    cache_dir: str | Path | None = None,
    progress: bool = True,
    desc: str = "features",
) -> FeatureSet:
    """CLS (and optionally patch) features of every image, from the disk cache when possible."""
    from tqdm.auto import tqdm

    if size % backbone.patch_size:
        raise ValueError(f"size {size} must be a multiple of the patch size {backbone.patch_size}")
    layer = backbone.resolve_layer(layer)
    paths = [str(p) for p in paths]
    pixels = json.dumps(backbone.pixel_spec(size), sort_keys=True)
    key = cache_key(paths, root, backbone.fingerprint, size, layer, pixels)
    cdir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    cls_file, patch_file = cdir / f"{key}.cls.safetensors", cdir / f"{key}.patches.safetensors"
    if cls_file.is_file() and (not patches or patch_file.is_file()):
        stored = load_file(str(cls_file))
        grid = _unpack_grids(load_file(str(patch_file)), len(paths)) if patches else None
        if stored["cls"].shape[0] == len(paths):
            return FeatureSet(stored["cls"], stored["patch_mean"], grid, paths, key, size, layer)
    # The backbone yields the patch grid anyway: keep it when it is small enough, so a segmentation
    # head trained after a probe on the same data does not run the backbone again.
    hw = size // backbone.patch_size
    grid_mb = len(paths) * hw * hw * backbone.hidden_size * 2 / 2**20
    keep_grid = patches or grid_mb <= float(os.environ.get("EXPLORER_CACHE_PATCH_LIMIT_MB", "1024"))
    d = backbone.hidden_size
    cls = torch.zeros(len(paths), d)
    patch_mean = torch.zeros(len(paths), d)
    grids: list[torch.Tensor | None] = [None] * len(paths)
    groups = _shape_groups(backbone, paths, size)
    batches = [idx[i : i + batch_size] for idx in groups.values() for i in range(0, len(idx), batch_size)]
    for idx in tqdm(batches, desc=desc, disable=not progress, unit="batch"):
        pixel_values = backbone.preprocess_many([load_rgb(paths[i]) for i in idx], size)
        c, _, g = backbone.forward_batch(pixel_values, layer)
        cls[idx] = c.float()
        patch_mean[idx] = g.float().mean(dim=(1, 2))
        if keep_grid:
            for j, i in enumerate(idx):
                grids[i] = g[j].to(torch.float16)
    grid = _stack_grids(grids, (hw, hw, d)) if keep_grid else None
    cdir.mkdir(parents=True, exist_ok=True)
    meta = {"paths": json.dumps(paths), "size": str(size), "layer": str(layer), "fingerprint": backbone.fingerprint,
            "model_id": str(backbone.model_id), "pixels": pixels}
    save_file({"cls": cls.contiguous(), "patch_mean": patch_mean.contiguous()}, str(cls_file), metadata=meta)
    if grid is not None:
        save_file(_pack_grids(grid), str(patch_file), metadata=meta)
    return FeatureSet(cls, patch_mean, grid if patches else None, paths, key, size, layer)


def _stack_grids(grids: list[torch.Tensor | None], empty: tuple[int, int, int]) -> torch.Tensor | list[torch.Tensor]:
    """One tensor when every grid has one shape (the usual, batchable case), else the list."""
    done = [g for g in grids if g is not None]
    if not done:
        return torch.zeros(0, *empty, dtype=torch.float16)
    if len({tuple(g.shape) for g in done}) == 1:
        return torch.stack(done)
    return done


def _pack_grids(grid: torch.Tensor | list[torch.Tensor]) -> dict[str, torch.Tensor]:
    if isinstance(grid, torch.Tensor):
        return {"patches": grid.contiguous()}
    return {f"patches.{i}": g.contiguous() for i, g in enumerate(grid)}


def _unpack_grids(stored: dict[str, torch.Tensor], n: int) -> torch.Tensor | list[torch.Tensor]:
    if "patches" in stored:
        return stored["patches"]
    return [stored[f"patches.{i}"] for i in range(n)]


def load_masks(paths: Sequence[str | Path], size: int | tuple[int, int]) -> torch.Tensor:
    """Label PNGs as ``uint8 (N, H, W)``, resized with NEAREST so class ids and 255 survive."""
    hw = (size, size) if isinstance(size, int) else tuple(size)
    out = np.zeros((len(paths), hw[0], hw[1]), dtype=np.uint8)
    for i, p in enumerate(paths):
        with Image.open(p) as im:
            # Palette PNGs (VOC) hold the class index in the palette index: never convert to RGB.
            arr = np.asarray(im if im.mode in ("P", "L") else im.convert("L"))
            out[i] = np.asarray(Image.fromarray(arr).resize((hw[1], hw[0]), Image.Resampling.NEAREST))
    return torch.from_numpy(out)
