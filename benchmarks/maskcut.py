"""MaskCut: instance recall on cluttered offline-world scenes, and its speed at ViT-S/16 shapes.

Recall: for each cluttered scene of ``SceneGenerator(--seed)`` (a seed no head was trained on), the
objects MaskCut finds with N = 1 (TokenCut), 3 and 6 are boxes in image pixels; a ground-truth
instance (``scene.instances``) counts as found when some box has IoU ≥ 0.5 with its box. Run for
the bundled backbone and its random-init twin (same config, random weights) in one process.

Speed: ``maskcut_ms`` is MaskCut with N = 4 on the cached graph of a random-init ViT-S/16 at
448 px (28×28 = 784 patches) on a photo, the rounds recomputed each time (a new τ), median of
``--repeats``; ``tokencut_ms`` is one TokenCut solve on the same graph, as the baseline.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/maskcut.py
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from explorer.analysis import MaskCutter, TokenCutGraph, box_to_pixels  # noqa: E402
from explorer.data.world import Scene, SceneGenerator  # noqa: E402

NS = (1, 3, 6)


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def cluttered_scenes(seed: int, count: int, size: int = 224) -> list[Scene]:
    gen = SceneGenerator(seed, size)
    out, i = [], 0
    while len(out) < count:
        scene = gen.scene(i)
        if scene.kind == "cluttered":
            out.append(scene)
        i += 1
    return out


def maskcut_boxes(backbone, scene: Scene, n: int, tau: float, size: int = 224) -> list[tuple[float, float, float, float]]:
    """MaskCut's (N = 1: TokenCut's) object boxes in the scene image's pixels (x0, y0, x1, y1)."""
    from PIL import Image

    feats = backbone.extract(Image.fromarray(scene.image), size=size)  # cached per image by the backbone
    graph = TokenCutGraph.from_patches(feats.patches)
    boxes = [graph.solve(tau).box] if n == 1 else [o.box for o in MaskCutter(graph).run(tau, n).objects]
    h, w = scene.image.shape[:2]
    return [box_to_pixels(b, feats.patch_size, feats.input_size, (h, w)) for b in boxes]


def maskcut_recall(backbone, scenes: Sequence[Scene], n: int, tau: float = 0.15, size: int = 224,
                   iou: float = 0.5) -> float:
    """Fraction of ground-truth instances matched (box IoU ≥ ``iou``) by one of MaskCut's N boxes."""
    found = total = 0
    for scene in scenes:
        boxes = maskcut_boxes(backbone, scene, n, tau, size)
        for inst in scene.instances:
            total += 1
            found += any(box_iou(inst.box_xyxy, b) >= iou for b in boxes)
    return found / total if total else 0.0


def random_twin(backbone_dir: Path):
    """The bundled model's architecture with random weights."""
    import torch
    from transformers import AutoConfig, DINOv3ViTModel

    from explorer.backbone.model import Backbone
    from explorer.backbone.sources import _read_norm_stats

    torch.manual_seed(0)
    model = DINOv3ViTModel(AutoConfig.from_pretrained(backbone_dir)).eval()
    stats = _read_norm_stats(backbone_dir)
    kwargs = {"mean": stats[0], "std": stats[1]} if stats else {}
    return Backbone.from_model(model, "bundled-random-init", **kwargs)


def speed(repeats: int) -> dict[str, float]:
    """MaskCut N=4 vs one TokenCut solve on a random-init ViT-S/16 graph at 448 px."""
    import torch
    from PIL import Image
    from transformers import DINOv3ViTConfig, DINOv3ViTModel

    from explorer.backbone.model import Backbone

    torch.manual_seed(0)
    vits = Backbone.from_model(DINOv3ViTModel(DINOv3ViTConfig(num_register_tokens=4, layerscale_value=1e-5)).eval(),
                               "vits16-random")
    feats = vits.extract(Image.open(REPO / "assets" / "examples" / "astronaut.jpg").convert("RGB"), size=448)
    graph = TokenCutGraph.from_patches(feats.patches)
    graph.solve(0.15)  # warm caches the way the app's first view does
    mc_times, tc_times, n_obj = [], [], []
    for i in range(repeats):
        tau = 0.15 + 0.001 * (i + 1)  # a τ not seen yet: every round is cut anew
        graph.clear_cache()
        t0 = time.perf_counter()
        res = MaskCutter(graph).run(tau, 4)
        mc_times.append((time.perf_counter() - t0) * 1e3)
        n_obj.append(len(res.objects))
        graph.clear_cache()
        t0 = time.perf_counter()
        graph.solve(tau + 0.0005)
        tc_times.append((time.perf_counter() - t0) * 1e3)
    mc, tc = statistics.median(mc_times), statistics.median(tc_times)
    return {"maskcut_ms": round(mc, 1), "tokencut_ms": round(tc, 1), "maskcut_over_tokencut": round(mc / tc, 2),
            "maskcut_objects_median": statistics.median(n_obj), "speed_patches": int(np.prod(feats.grid))}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=12, help="world seed of the test scenes (no head saw it)")
    ap.add_argument("--scenes", type=int, default=40)
    ap.add_argument("--tau", type=float, default=0.15, help="CutLER's demo default")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)

    from explorer.backbone import load_source
    from explorer.backbone.sources import BUNDLED_DIR

    scenes = cluttered_scenes(args.seed, args.scenes, args.size)
    result: dict[str, object] = {}
    for name, backbone in (("bundled", load_source("bundled")), ("random_init", random_twin(BUNDLED_DIR))):
        per = {}
        for n in NS:
            per[f"maskcut_recall_{n}"] = round(maskcut_recall(backbone, scenes, n, args.tau, args.size), 4)
        per["recall_6_over_1"] = round(per["maskcut_recall_6"] / per["maskcut_recall_1"], 2) \
            if per["maskcut_recall_1"] else None
        result[name] = per
        print(json.dumps({name: per}), file=sys.stderr, flush=True)
    result.update(speed(args.repeats))
    result.update({
        "scenes": len(scenes),
        "instances": sum(len(s.instances) for s in scenes),
        "world_seed": args.seed,
        "tau": args.tau,
        "size": args.size,
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS", "default"),
    })
    print(json.dumps(result))


if __name__ == "__main__":
    main()
