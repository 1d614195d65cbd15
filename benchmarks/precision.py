"""bfloat16 vs float32 forward: speed and fidelity, DINOv3 ViT-S/16 and ViT-B/16 shapes, random init.

For each architecture and input size (448 and 896 px, photos bundled with scikit-image), the same
`Backbone` weights run with precision "fp32" and "bf16" (autocast; tokens returned float32). Prints ONE
JSON object with, per (arch, size): fp32_ms, bf16_ms (fastest of 5 after a warm-up, 2 threads),
speedup = fp32_ms / bf16_ms, cos_min = the lowest cosine between the fp32 and bf16 token of any patch
of any image, and tokencut_iou_min = the lowest IoU between the TokenCut masks
(`explorer.analysis.tokencut`, τ 0.2) computed on the two feature sets.

Random weights are a weak proxy for trained ones (their features are less structured); the trained-
model figures need the real checkpoints, which cannot be downloaded here.

    .venv/bin/python benchmarks/precision.py          # ~3-6 min on 2 cores
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # sibling benchmark: its timer

from families import time_ms as best_ms  # noqa: E402  (fastest of 5 after a warm-up)

from explorer.analysis.tokencut import tokencut  # noqa: E402
from explorer.backbone import Backbone, bf16_supported  # noqa: E402
from explorer.backbone.catalog import ARCHS  # noqa: E402
from explorer.backbone.precision import cpu_flags  # noqa: E402

SIZES = (448, 896)
PHOTOS = ("astronaut", "chelsea", "coffee")


def photos():
    from PIL import Image
    from skimage import data

    return [Image.fromarray(getattr(data, name)()) for name in PHOTOS]


def model(arch: str):
    from transformers import AutoConfig, AutoModel

    torch.manual_seed(0)
    model_type, fields = ARCHS[arch]["hf"]
    return AutoModel.from_config(AutoConfig.for_model(model_type, **fields)).eval()


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def main() -> None:
    torch.set_num_threads(2)
    images = photos()
    rows = []
    for arch in ("vits16", "vitb16"):
        net = model(arch)
        fp32 = Backbone.from_model(net, f"random-{arch}", device=torch.device("cpu"), precision="fp32")
        bf16 = Backbone.from_model(net, f"random-{arch}", device=torch.device("cpu"), precision="bf16")
        for size in SIZES:
            pixels = [fp32.preprocess(image, size) for image in images]
            row = {"arch": arch, "size": size,
                   "fp32_ms": round(best_ms(lambda b=fp32, p=pixels[0]: b.forward_batch(p)), 1),
                   "bf16_ms": round(best_ms(lambda b=bf16, p=pixels[0]: b.forward_batch(p)), 1)}
            cos_min, iou_min = 1.0, 1.0
            for p in pixels:
                a, b = fp32.forward_batch(p)[2][0], bf16.forward_batch(p)[2][0]
                cos = torch.nn.functional.cosine_similarity(a.reshape(-1, a.shape[-1]), b.reshape(-1, b.shape[-1]))
                cos_min = min(cos_min, float(cos.min()))
                iou_min = min(iou_min, iou(tokencut(a.numpy(), tau=0.2).mask, tokencut(b.numpy(), tau=0.2).mask))
            row.update(speedup=round(row["fp32_ms"] / row["bf16_ms"], 2), cos_min=round(cos_min, 5),
                       tokencut_iou_min=round(iou_min, 4), input_hw=list(pixels[0].shape[2:]))
            rows.append(row)
            print(json.dumps(row), file=sys.stderr)
    print(json.dumps({"native_bf16_cpu": bf16_supported(torch.device("cpu")), "threads": 2, "images": list(PHOTOS),
                      "cpu_bf16_flags": sorted(cpu_flags() & {"avx512_bf16", "amx_bf16", "amx_tile", "amx_int8"}),
                      "kernels_896": kernels_896(), "results": rows}))


def kernels_896() -> dict:
    """Where the 896 px forward's time goes: the two kernels of a ViT-S/16 block, fp32 vs bf16.

    Attention over 3141 tokens (6 heads of 64, ``scaled_dot_product_attention``) and one MLP
    matmul of the same tokens (384 -> 1536). At 896 px attention is most of a ViT-S forward, so the
    forward's bf16 speedup is bounded by the attention kernel's (no AMX: no large bf16 gain there).
    """
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 6, 3141, 64, generator=gen) for _ in range(3))
    x, w = torch.randn(3141, 384, generator=gen), torch.randn(1536, 384, generator=gen)
    with torch.inference_mode():
        att32 = best_ms(lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v))
        qb, kb, vb = q.bfloat16(), k.bfloat16(), v.bfloat16()
        att16 = best_ms(lambda: torch.nn.functional.scaled_dot_product_attention(qb, kb, vb))
        lin32 = best_ms(lambda: torch.nn.functional.linear(x, w))
        xb, wb = x.bfloat16(), w.bfloat16()
        lin16 = best_ms(lambda: torch.nn.functional.linear(xb, wb))
    return {"attention_fp32_ms": round(att32, 1), "attention_bf16_ms": round(att16, 1),
            "attention_speedup": round(att32 / att16, 2), "linear_fp32_ms": round(lin32, 2),
            "linear_bf16_ms": round(lin16, 2), "linear_speedup": round(lin32 / lin16, 2)}


if __name__ == "__main__":
    main()
