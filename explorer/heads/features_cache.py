"""Extract a dataset's features once per backbone and keep them on disk.

Training a probe or a segmentation head on frozen features should not re-run the backbone every
time a hyper-parameter changes, so features are cached as safetensors keyed by
(dataset root + hash of the file list, backbone fingerprint, input size, layer). Any change to the
images listed, the backbone config, the size or the layer gives a new key, so a stale cache cannot be
hit. Images are resized to a fixed square ``size x size`` (as in the report's 224 px probe and 448 px
segmentation protocols) so they can be batched through ``Backbone.forward_batch``.

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
    patches: torch.Tensor | None  # (N, h, w, d) float16, or None when only CLS was requested
    paths: list[str]
    key: str
    size: int
    layer: int


def cache_key(paths: Sequence[str | Path], root: str | Path, fingerprint: str, size: int, layer: int) -> str:
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
    h.update(f"\n{fingerprint}|{int(size)}|{int(layer)}|v2".encode())
    return h.hexdigest()[:24]


def load_square(path: str | Path, size: int) -> Image.Image:
    """RGB image resized (bicubic) to ``size x size``: the fixed input every cached feature uses."""
    with Image.open(path) as im:
        return im.convert("RGB").resize((size, size), Image.Resampling.BICUBIC)


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
    key = cache_key(paths, root, backbone.fingerprint, size, layer)
    cdir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    cls_file, patch_file = cdir / f"{key}.cls.safetensors", cdir / f"{key}.patches.safetensors"
    if cls_file.is_file() and (not patches or patch_file.is_file()):
        stored = load_file(str(cls_file))
        grid = load_file(str(patch_file))["patches"] if patches else None
        if stored["cls"].shape[0] == len(paths):
            return FeatureSet(stored["cls"], stored["patch_mean"], grid, paths, key, size, layer)
    # The backbone yields the patch grid anyway: keep it when it is small enough, so a segmentation
    # head trained after a probe on the same data does not run the backbone again.
    hw = size // backbone.patch_size
    grid_mb = len(paths) * hw * hw * backbone.hidden_size * 2 / 2**20
    keep_grid = patches or grid_mb <= float(os.environ.get("EXPLORER_CACHE_PATCH_LIMIT_MB", "1024"))
    cls_rows, mean_rows, grid_rows = [], [], []
    for i in tqdm(range(0, len(paths), batch_size), desc=desc, disable=not progress, unit="batch"):
        batch = [backbone.preprocess(load_square(p, size), size) for p in paths[i : i + batch_size]]
        c, _, g = backbone.forward_batch(torch.cat(batch), layer)
        cls_rows.append(c.float())
        mean_rows.append(g.float().mean(dim=(1, 2)))
        if keep_grid:
            grid_rows.append(g.to(torch.float16))
    d = backbone.hidden_size
    cls = torch.cat(cls_rows) if cls_rows else torch.zeros(0, d)
    patch_mean = torch.cat(mean_rows) if mean_rows else torch.zeros(0, d)
    grid = None
    if keep_grid:
        grid = torch.cat(grid_rows) if grid_rows else torch.zeros(0, hw, hw, d, dtype=torch.float16)
    cdir.mkdir(parents=True, exist_ok=True)
    meta = {"paths": json.dumps(paths), "size": str(size), "layer": str(layer), "fingerprint": backbone.fingerprint,
            "model_id": str(backbone.model_id)}
    save_file({"cls": cls.contiguous(), "patch_mean": patch_mean.contiguous()}, str(cls_file), metadata=meta)
    if grid is not None:
        save_file({"patches": grid.contiguous()}, str(patch_file), metadata=meta)
    return FeatureSet(cls, patch_mean, grid if patches else None, paths, key, size, layer)


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
