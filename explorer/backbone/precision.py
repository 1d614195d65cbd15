"""Precision of the backbone forward: float32, or bfloat16 autocast where the hardware runs it natively.

The forward is the only place bfloat16 is used: tokens come back float32 and every analysis runs in
float32. The setting is part of the feature-cache key (see `Backbone.feature_id`), so bf16 and fp32
features of one model never mix.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import torch

PRECISIONS = ("auto", "fp32", "bf16")
PRECISION_ENV = "DINOV3_PRECISION"
# CPU flags of native bfloat16 matrix math; without them autocast emulates bf16 and is slower than fp32.
BF16_CPU_FLAGS = {"avx512_bf16", "amx_bf16"}


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The `flags` line of /proc/cpuinfo (empty where there is none, e.g. macOS)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def bf16_supported(device: torch.device) -> bool:
    """Native bfloat16: CUDA GPUs that report it, CPUs with AVX512-BF16 or AMX."""
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return device.type == "cpu" and bool(cpu_flags() & BF16_CPU_FLAGS)


def resolve_precision(setting: str | None, device: torch.device) -> str:
    """"auto" (the default, or $DINOV3_PRECISION) -> "bf16" where supported, else "fp32"; "fp32"/"bf16" as asked."""
    setting = (setting or os.environ.get(PRECISION_ENV) or "auto").strip().lower()
    if setting not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {setting!r}")
    if setting == "auto":
        return "bf16" if bf16_supported(device) else "fp32"
    return setting
