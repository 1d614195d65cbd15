"""TokenCut: the fast and dense solvers against the TokenCut authors' own ``ncut``, and their speed.

The reference is YangtaoWANG95/TokenCut ``unsupervised_saliency_detection/object_discovery.py``,
loaded as-is from ``--reference`` (its ``'cuda'`` device strings become ``'cpu'`` at load time; the
file is not modified). When the file is absent the comparison with it is skipped and the JSON says so.

Feature sets (default P = 56×56 = 3136 patches, the ViT-S/16 grid of an 896 px image, d = 384):
  * ``synthetic:<seed>`` grids from ``tests.fixtures.synthetic_grids`` (ellipses/blobs, one direction
    per region, smooth background, noise);
  * ``near_complete:<seed>`` the same grids with a strong shared direction added, so at low τ almost
    every pair is an edge and λ2 ≈ λ3 (the degenerate spectra where an iterative eigenvector and
    LAPACK's may differ);
  * ``vit:<photo>`` last-layer patch tokens of a random-init DINOv3 ViT-S/16 on scikit-image photos.

Each set runs at every ``--taus``. Per (set, τ): ``TokenCutGraph.solve`` fast (median of ``--repeats``)
and dense on one cached graph, and the reference ``ncut`` on the same features as (d, P). Mask IoU is
on the patch grid (the reference's full-resolution mask is read back at patch centres). Prints one
JSON object on stdout; per-case rows go to stderr.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/tokencut.py      # ~10-30 min on 2 busy cores
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import types
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from explorer.analysis.tokencut import DEGENERATE_GAP, BinaryGraph, TokenCutGraph  # noqa: E402
from tests.fixtures.synthetic_grids import synthetic_grid  # noqa: E402

DEFAULT_REFERENCE = "/work/ref/tokencut_object_discovery.py"
PHOTOS = ["astronaut", "chelsea", "coffee", "rocket", "camera", "horse"]


def load_reference(path: str) -> types.ModuleType | None:
    """The authors' module, executed from its text with 'cuda' swapped for 'cpu' (file untouched)."""
    file = Path(path)
    if not file.is_file():
        return None
    source = file.read_text().replace("'cuda'", "'cpu'").replace('"cuda"', '"cpu"')
    module = types.ModuleType("tokencut_reference")
    module.__file__ = str(file)
    exec(compile(source, str(file), "exec"), module.__dict__)  # noqa: S102 - the authors' code, read locally
    return module


def near_complete_grid(seed: int, grid: int, dim: int) -> np.ndarray:
    """A structured grid plus a dominant shared direction: nearly all cosines above a low τ."""
    g = synthetic_grid(seed, grid, grid, dim).patches
    u = np.random.default_rng(1000 + seed).standard_normal(dim).astype(np.float32)
    u /= np.linalg.norm(u)
    norms = np.linalg.norm(g, axis=-1, keepdims=True)
    return (g / norms + (0.6 + 0.1 * (seed % 3)) * u).astype(np.float32)


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
    return out


def reference_cut(ref: types.ModuleType, patches: np.ndarray, tau: float, patch: int = 16) -> tuple[np.ndarray, int, np.ndarray]:
    """The authors' ``ncut`` on the patch grid: mask, seed (flat index) and eigenvector."""
    import torch

    h, w, d = patches.shape
    feats = torch.from_numpy(np.ascontiguousarray(patches.reshape(h * w, d).T))  # (d, P), as their ViTFeat
    seed, full, vec = ref.ncut(feats, [h, w], [patch, patch], [h * patch, w * patch], tau)
    centres = slice(patch // 2, None, patch)  # their outputs are upsampled to pixels: read patch centres
    return np.asarray(full)[centres, centres] > 0.5, int(seed), np.asarray(vec)[centres, centres].ravel()


def twin_tie(graph: TokenCutGraph, tau: float, ours: tuple[int, int], ref_seed: int, ref_vec: np.ndarray) -> bool:
    """The two seeds are twins (equal rows of B) whose |x| the reference told apart only by rounding."""
    flat = graph.grid[1] * ours[0] + ours[1]
    if flat == ref_seed:
        return False
    a, b = abs(ref_vec[flat]), abs(ref_vec[ref_seed])
    twins = BinaryGraph(graph.binary(tau), tau).twins(np.array(sorted((flat, ref_seed))))
    return bool(twins and abs(a - b) <= 1e-12 * max(a, b))


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = (a | b).sum()
    return float((a & b).sum() / union) if union else 1.0


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reference", default=DEFAULT_REFERENCE, help="path to TokenCut's object_discovery.py")
    ap.add_argument("--n-synthetic", type=int, default=6)
    ap.add_argument("--n-near-complete", type=int, default=4)
    ap.add_argument("--photos", type=int, default=len(PHOTOS), help="how many vit:<photo> sets (0: none)")
    ap.add_argument("--grid", type=int, default=56)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--taus", type=float, nargs="+", default=[0.1, 0.2])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)

    ref = load_reference(args.reference)
    sets = [(f"synthetic:{s}", synthetic_grid(s, args.grid, args.grid, args.dim).patches)
            for s in range(args.n_synthetic)]
    sets += [(f"near_complete:{s}", near_complete_grid(s, args.grid, args.dim)) for s in range(args.n_near_complete)]
    if args.photos:
        sets += vit_feature_sets(args.grid * 16, PHOTOS[: args.photos])

    rows = []
    for name, patches in sets:
        graph = TokenCutGraph.from_patches(patches)
        for tau in args.taus:
            fast_times = []
            for _ in range(args.repeats):
                graph.clear_cache()  # time cold solves: the first τ a user sees
                t0 = time.perf_counter()
                fast = graph.solve(tau, solver="fast")
                fast_times.append((time.perf_counter() - t0) * 1e3)
            t0 = time.perf_counter()
            dense = graph.solve(tau, solver="dense")
            dense_ms = (time.perf_counter() - t0) * 1e3
            fast_ms = float(np.median(fast_times))
            row = {
                "set": name,
                "tau": tau,
                "fast_ms": round(fast_ms, 2),
                "dense_ms": round(dense_ms, 1),
                "speedup_dense_over_fast": round(dense_ms / fast_ms, 2),
                "fast_vs_dense_iou": iou(fast.mask, dense.mask),
                "fast_solver_used": fast.solver,
                "eigengap": dense.eigengap,
                "degenerate": bool(dense.eigengap < DEGENERATE_GAP),
                "edge_density": round(float(graph.binary(tau).mean()), 4),
                "mask_frac": round(float(dense.mask.mean()), 4),
            }
            if ref is not None:
                t0 = time.perf_counter()
                rmask, rseed, rvec = reference_cut(ref, patches, tau)
                ref_ms = (time.perf_counter() - t0) * 1e3
                row.update({
                    "reference_ms": round(ref_ms, 1),
                    "speedup_reference_over_fast": round(ref_ms / fast_ms, 2),
                    "dense_vs_reference_iou": iou(dense.mask, rmask),
                    "fast_vs_reference_iou": iou(fast.mask, rmask),
                    "same_seed_as_reference": divmod(rseed, graph.grid[1]) == dense.seed,
                    "twin_tie": twin_tie(graph, tau, dense.seed, rseed, rvec),
                })
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)

    def med(key: str) -> float:
        return round(float(np.median([r[key] for r in rows])), 2)

    result: dict[str, object] = {
        "patches": int(args.grid * args.grid),
        "n_cases": len(rows),
        "n_sets": len(sets),
        "taus": args.taus,
        "n_degenerate": sum(r["degenerate"] for r in rows),
        "n_fast_deferred_to_dense": sum(r["fast_solver_used"] != "fast" for r in rows),
        "fast_vs_dense_iou_min": float(min(r["fast_vs_dense_iou"] for r in rows)),
        "fast_ms_median": med("fast_ms"),
        "dense_ms_median": med("dense_ms"),
        "speedup_dense_over_fast_median": med("speedup_dense_over_fast"),
        "speedup_dense_over_fast_min": round(float(min(r["speedup_dense_over_fast"] for r in rows)), 2),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS", "default"),
        "cpu_count": os.cpu_count(),
    }
    if ref is None:
        result["reference"] = f"skipped: {args.reference} not found (pass --reference PATH)"
    else:
        result.update({
            "reference": "TokenCut object_discovery.ncut (authors' code, cuda->cpu)",
            "dense_vs_reference_iou_min": float(min(r["dense_vs_reference_iou"] for r in rows)),
            "fast_vs_reference_iou_min": float(min(r["fast_vs_reference_iou"] for r in rows)),
            "fast_disagrees_with_reference": sum(r["fast_vs_reference_iou"] < 1.0 for r in rows),
            "dense_disagrees_with_reference": sum(r["dense_vs_reference_iou"] < 1.0 for r in rows),
            "exact_twin_ties": sum(r["twin_tie"] for r in rows),
            # Must be 0: every mask differs from the authors' only where their seed is a rounding-decided tie.
            "disagreements_outside_twin_ties": sum(
                (r["fast_vs_reference_iou"] < 1.0 or r["dense_vs_reference_iou"] < 1.0) and not r["twin_tie"]
                for r in rows),
            "reference_ms_median": med("reference_ms"),
            "speedup_reference_over_fast_median": med("speedup_reference_over_fast"),
            "fast_vs_reference_iou_min_degenerate": float(min(
                (r["fast_vs_reference_iou"] for r in rows if r["degenerate"]), default=1.0)),
        })
    print(json.dumps(result))


if __name__ == "__main__":
    main()
