"""Forward time and peak memory of each backbone family, random init, 448x448, float32, 2 threads.

Each model runs in its own subprocess so its peak RSS (ru_maxrss: Python + torch + the library + the
model + one forward) is its own. Prints ONE JSON object:

  families:      the smallest real architecture of each family and library:
                 {name, source, params_m, forward_ms, rss_mb}
  catalogue:     forward_ms at 448 px for the small/base architectures (stored in
                 explorer/backbone/catalog.json with --write-catalog; larger ones stay null)
  early_stop:    ViT-S/16 layer 1 of 12 through `Backbone` (stops after block 1) vs the full forward with
                 output_hidden_states (what running every block costs), both libraries; ratio = stop / full
  default_chain: seconds, after imports, for "auto" to settle on the bundled model in a fresh process with
                 HF_HUB_OFFLINE unset and the hub unreachable (HF_ENDPOINT -> a closed localhost port),
                 and for a `timm:` source to fail there

    .venv/bin/python benchmarks/families.py                     # ~5-10 min on 2 shared cores
    .venv/bin/python benchmarks/families.py --write-catalog     # also store the catalogue timings
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SIZE = 448
SMALLEST = [  # (name, catalogue source)
    ("DINOv3 ViT-S/16 (transformers)", "facebook/dinov3-vits16-pretrain-lvd1689m"),
    ("DINOv3 ViT-S/16 (timm)", "timm:vit_small_patch16_dinov3.lvd1689m"),
    ("DINOv3 ConvNeXt-T (transformers)", "facebook/dinov3-convnext-tiny-pretrain-lvd1689m"),
    ("DINOv3 ConvNeXt-T (timm)", "timm:convnext_tiny.dinov3_lvd1689m"),
    ("DINOv2 ViT-S/14 (transformers)", "facebook/dinov2-small"),
    ("DINOv2 ViT-S/14 + registers (transformers)", "facebook/dinov2-with-registers-small"),
    ("DINOv2 ViT-S/14 (timm)", "timm:vit_small_patch14_dinov2.lvd142m"),
]
CATALOGUE_EXTRA = [  # small/base architectures also timed for the catalogue (the rest stay null)
    "facebook/dinov3-vits16plus-pretrain-lvd1689m", "facebook/dinov3-vitb16-pretrain-lvd1689m",
    "facebook/dinov3-convnext-small-pretrain-lvd1689m", "facebook/dinov3-convnext-base-pretrain-lvd1689m",
    "facebook/dinov2-base",
]


def build(source: str):
    """A random-init model of a catalogue source's architecture, wrapped as a float32 Backbone."""
    import torch

    from explorer.backbone import Backbone, catalog

    entry = catalog.find(source)
    spec = catalog.ARCHS[entry.arch]
    torch.manual_seed(0)
    if entry.library == "timm":
        import timm

        name = source[len(catalog.TIMM_PREFIX):]
        kwargs = {} if name.startswith("convnext") else {"dynamic_img_size": True}
        model = timm.create_model(name, pretrained=False, num_classes=0, **kwargs)
    else:
        from transformers import AutoConfig, AutoModel

        model_type, fields = spec["hf"]
        model = AutoModel.from_config(AutoConfig.for_model(model_type, **fields))
    return Backbone.from_model(model.eval(), source, device=torch.device("cpu"), precision="fp32")


def time_ms(fn, repeats: int = 5) -> float:
    """Fastest of `repeats` runs after a warm-up: on cores shared with other jobs the minimum is the
    figure least inflated by them (the median of a loaded machine measures the load)."""
    fn()  # warm-up: first-call allocations and kernel selection
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        runs.append((time.perf_counter() - start) * 1000)
    return min(runs)


def worker(source: str) -> dict:
    import torch

    torch.set_num_threads(2)
    backbone = build(source)
    pixels = torch.randn(1, 3, SIZE, SIZE)
    forward_ms = time_ms(lambda: backbone.forward_batch(pixels))
    params = sum(p.numel() for p in backbone.model.parameters())
    return {"source": source, "params_m": round(params / 1e6, 2), "forward_ms": round(forward_ms, 1),
            "rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def early_stop_worker() -> dict:
    import torch

    torch.set_num_threads(2)
    pixels = torch.randn(1, 3, SIZE, SIZE)
    out = {}
    for source in ("facebook/dinov3-vits16-pretrain-lvd1689m", "timm:vit_small_patch16_dinov3.lvd1689m"):
        backbone = build(source)
        model = backbone.model
        stop_ms = time_ms(lambda b=backbone: b.forward_batch(pixels, layer=1))
        with torch.inference_mode():
            if backbone.library == "timm":
                full_ms = time_ms(lambda m=model: m.forward_intermediates(
                    pixels, indices=[0], norm=True, output_fmt="NLC", intermediates_only=True, stop_early=False))
            else:
                full_ms = time_ms(lambda m=model: m(pixel_values=pixels, output_hidden_states=True))
        out[backbone.library] = {"layer": 1, "of": backbone.num_layers, "stop_ms": round(stop_ms, 1),
                                 "full_forward_ms": round(full_ms, 1), "ratio": round(stop_ms / full_ms, 3)}
    return out


def chain_worker() -> dict:
    start = time.perf_counter()
    import timm  # noqa: F401 - imports are not what is measured
    import transformers  # noqa: F401

    from explorer.backbone import load_backbone, load_source
    from explorer.backbone.sources import SourceUnavailable

    imported = time.perf_counter()
    result = load_backbone()
    chain_s = time.perf_counter() - imported
    start_timm = time.perf_counter()
    try:
        load_source("timm:vit_small_patch16_dinov3.lvd1689m")
        timm_message = "loaded?"
    except SourceUnavailable as error:
        timm_message = str(error)
    return {"imports_s": round(imported - start, 2), "auto_to_bundled_s": round(chain_s, 2),
            "loaded": result.backbone.model_id if result.backbone else None, "message": result.message,
            "timm_source_fails_s": round(time.perf_counter() - start_timm, 2), "timm_message": timm_message}


def compare_worker() -> dict:
    """Forwards one Compare session costs (every compare view once) on a fresh image: DINOv3 ViT-S/16
    against DINOv2 ViT-S/14, random init. One per backbone is the whole cost of comparing."""
    import torch

    from explorer.imageio import load_image
    from explorer.ui.compare import session_forwards
    from explorer.ui.service import ExplorerService

    torch.set_num_threads(2)
    a, b = "facebook/dinov3-vits16-pretrain-lvd1689m", "facebook/dinov2-small"
    svc = ExplorerService(a, preloaded={a: build(a), b: build(b)})
    image = load_image(REPO / "assets" / "examples" / "chelsea.jpg")
    return {"compare_forwards": session_forwards(svc, image, a, b, SIZE)}


def run_worker(*args: str, env: dict | None = None) -> dict:
    done = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, cwd=REPO,
                          env=env, timeout=1200)
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1][:300] if done.stderr.strip() else "failed"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--write-catalog", action="store_true")
    args = parser.parse_args()
    if args.worker:
        result = {"early-stop": early_stop_worker, "chain": chain_worker, "compare": compare_worker}.get(args.worker)
        print(json.dumps(result() if result else worker(args.worker)))
        return

    env = {**os.environ, "OMP_NUM_THREADS": "2", "HF_HUB_OFFLINE": "1"}
    families = []
    timings = {}
    for name, source in SMALLEST:
        row = run_worker("--worker", source, env=env)
        families.append({"name": name, **row})
        timings[source] = row.get("forward_ms")
    for source in CATALOGUE_EXTRA:
        timings[source] = run_worker("--worker", source, env=env).get("forward_ms")
    early = run_worker("--worker", "early-stop", env=env)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    chain_env = {k: v for k, v in env.items() if k not in {"HF_HUB_OFFLINE", "DINOV3_MODEL"}}
    chain_env.update(HF_ENDPOINT=f"http://127.0.0.1:{closed}", HF_HUB_CACHE=str(REPO / ".bench-empty-hub-cache"))
    chain = run_worker("--worker", "chain", env=chain_env)
    compare = run_worker("--worker", "compare", env=env)
    if args.write_catalog:
        from explorer.backbone import catalog

        stored = json.loads(catalog.CATALOG_JSON.read_text())
        stored["forward_ms_448"] = {k: v for k, v in timings.items() if v is not None}
        stored["forward_ms_448_note"] = ("CPU, 2 threads, float32, random init, batch 1, 448x448, fastest of 5 after a warm-up; "
                                         "benchmarks/families.py")
        catalog.CATALOG_JSON.write_text(json.dumps(stored, indent=1, sort_keys=True) + "\n")
    print(json.dumps({"size": SIZE, "threads": 2, "families": families, "catalogue_forward_ms": timings,
                      "early_stop": early, "default_chain": chain,
                      "compare_forwards": compare.get("compare_forwards", compare)}))


if __name__ == "__main__":
    main()
