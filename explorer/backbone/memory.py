"""Will a model fit? Decided from its parameter count before any download or load."""

from __future__ import annotations

import psutil
import torch

from explorer.backbone.catalog import LOAD_OVERHEAD, format_mb
from explorer.backbone.precision import bf16_supported


class TooLarge(RuntimeError):
    """A model that does not fit in this machine's available memory, even in bfloat16."""


def available_bytes() -> int:
    """Memory the OS can give this process now (free + reclaimable cache)."""
    return int(psutil.virtual_memory().available)


def load_dtype(params: int, label: str, device: torch.device) -> torch.dtype:
    """float32 when it fits; bfloat16 weights when only those fit and the hardware runs bf16; else `TooLarge`."""
    available = available_bytes()
    need_fp32 = params * 4 * LOAD_OVERHEAD
    if need_fp32 <= available:
        return torch.float32
    need_bf16 = params * 2 * LOAD_OVERHEAD
    if need_bf16 <= available and bf16_supported(device):
        return torch.bfloat16
    mb = 2**20
    fits_bf16 = need_bf16 <= available
    raise TooLarge(
        f"{label} needs ~{format_mb(need_fp32 / mb)} of memory ({params / 1e6:,.0f} M parameters) but "
        f"{format_mb(available / mb)} is available"
        + ("; bfloat16 would fit but this CPU has no native bf16" if fits_bf16 else "")
        + ": pick a smaller model."
    )
