"""TokenCut fast solver vs the reference dense generalised eigensolver, on structured 56x56 grids.

Feature sets (P = 3136 patches = the ViT-S/16 grid of an 896 px image, d = 384):
  * ``--n-synthetic`` grids from ``tests.fixtures.synthetic_grids`` (label maps of ellipses/blobs, one
    direction per region, smooth background gradients, smooth + per-token noise);
  * the last-layer patch tokens of a random-init transformers ``DINOv3ViTModel`` (ViT-S/16 shape,
    4 registers, LayerScale 1e-5) run on scikit-image's bundled photos resized to 896x896.

Both solvers run ``TokenCutGraph.solve`` on the same cached graph (the per-τ work the UI slider
pays: build W, solve, split, connected component, box, Ncut); the fast one is timed as the median of
``--repeats`` runs, the dense one once (it takes seconds). Prints one JSON object on stdout.

    .venv/bin/python benchmarks/tokencut.py            # about 2-4 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from explorer.analysis.tokencut import TokenCutGraph  # noqa: E402
from tests.fixtures.synthetic_grids import synthetic_grid  # noqa: E402

PHOTOS = [
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "stereo_motorcycle",
    "camera",
    "coins",
    "horse",
    "retina",
    "immunohistochemistry",
]


def vit_feature_sets(size: int, names: list[str]) -> list[tuple[str, np.ndarray]]:
    """Patch grids of a random-init DINOv3 ViT-S/16 on real photos (structure comes from the pixels)."""
    import skimage.data
    import torch
    from PIL import Image
    from transformers import DINOv3ViTConfig, DINOv3ViTModel

    torch.manual_seed(0)
    config = DINOv3ViTConfig(num_register_tokens=4, layerscale_value=1e-5)
    model = DINOv3ViTModel(config).eval()
    mean = np.array([0.485, 0.456, 0.406], dtype=np.float32)
    std = np.array([0.229, 0.224, 0.225], dtype=np.float32)
    skip = 1 + config.num_register_tokens
    grid = size // config.patch_size
    out = []
    for name in names:
        try:
            img = getattr(skimage.data, name)()
            img = np.asarray(img[0] if isinstance(img, tuple) else img)  # stereo pairs: left view
        except Exception as exc:  # a photo missing from this scikit-image build: skip it
            print(f"skip {name}: {exc}", file=sys.stderr)
            continue
        if img.dtype == bool:
            img = img.astype(np.uint8) * 255
        if img.ndim == 2:
            img = np.stack([img] * 3, axis=-1)
        pil = Image.fromarray(img[..., :3].astype(np.uint8)).resize((size, size), Image.BICUBIC)
        x = (np.asarray(pil, dtype=np.float32) / 255.0 - mean) / std
        with torch.inference_mode():
            tokens = model(pixel_values=torch.from_numpy(x).permute(2, 0, 1)[None]).last_hidden_state
        out.append((f"vit:{name}", tokens[0, skip:].reshape(grid, grid, -1).numpy()))
        print(f"features vit:{name}", file=sys.stderr)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-synthetic", type=int, default=20)
    ap.add_argument("--grid", type=int, default=56)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--tau", type=float, default=0.2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-vit", action="store_true", help="skip the random-init DINOv3 photo features")
    args = ap.parse_args(argv)

    sets = [
        (f"synthetic:{s}", synthetic_grid(s, args.grid, args.grid, args.dim).patches)
        for s in range(args.n_synthetic)
    ]
    if not args.no_vit:
        sets += vit_feature_sets(args.grid * 16, PHOTOS)

    rows = []
    for name, patches in sets:
        t0 = time.perf_counter()
        graph = TokenCutGraph.from_patches(patches)
        graph_ms = (time.perf_counter() - t0) * 1e3
        fast_times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            fast = graph.solve(args.tau, solver="fast")
            fast_times.append((time.perf_counter() - t0) * 1e3)
        t0 = time.perf_counter()
        dense = graph.solve(args.tau, solver="dense")
        dense_ms = (time.perf_counter() - t0) * 1e3
        fast_ms = float(np.median(fast_times))
        union = (fast.mask | dense.mask).sum()
        iou = float((fast.mask & dense.mask).sum() / union) if union else 1.0
        scale = float(np.abs(dense.eigenvector).max())
        row = {
            "set": name,
            "fast_ms": round(fast_ms, 2),
            "dense_ms": round(dense_ms, 1),
            "speedup": round(dense_ms / fast_ms, 2),
            "mask_iou": iou,
            "bipartition_equal": bool(np.array_equal(fast.bipartition, dense.bipartition)),
            "eigvec_max_rel_err": float(np.abs(fast.eigenvector - dense.eigenvector).max() / scale),
            "fast_solver_used": fast.solver,
            "graph_ms": round(graph_ms, 1),
            "mask_frac": round(float(dense.mask.mean()), 4),
            "ncut": round(dense.ncut, 4),
            "eigengap": round(dense.eigengap, 4),
            "confident": dense.confident,
        }
        rows.append(row)
        print(json.dumps(row), file=sys.stderr)

    speedups = [r["speedup"] for r in rows]
    result = {
        "patches": int(args.grid * args.grid),
        "speedup_vs_reference": round(float(np.median(speedups)), 2),
        "speedup_min": round(float(np.min(speedups)), 2),
        "mask_iou_min": float(min(r["mask_iou"] for r in rows)),
        "n_sets": len(rows),
        "n_synthetic": sum(r["set"].startswith("synthetic") for r in rows),
        "n_vit_photo": sum(r["set"].startswith("vit") for r in rows),
        "fast_ms_median": round(float(np.median([r["fast_ms"] for r in rows])), 2),
        "dense_ms_median": round(float(np.median([r["dense_ms"] for r in rows])), 1),
        "graph_build_ms_median": round(float(np.median([r["graph_ms"] for r in rows])), 1),
        "bipartitions_equal": sum(r["bipartition_equal"] for r in rows),
        "eigvec_max_rel_err": float(max(r["eigvec_max_rel_err"] for r in rows)),
        "fast_fell_back_to_dense": sum(r["fast_solver_used"] != "fast" for r in rows),
        "tau": args.tau,
        "dim": args.dim,
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS", "default"),
        "cpu_count": os.cpu_count(),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
