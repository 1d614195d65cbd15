"""Warm-up + cosine schedules, evaluated per step (so they work for any run length and on resume)."""

from __future__ import annotations

import math


def cosine(step: int, total: int, start: float, end: float, warmup: int = 0, warmup_start: float = 0.0) -> float:
    """Linear warm-up from warmup_start to start over `warmup` steps, then cosine from start to end."""
    if step < warmup:
        return warmup_start + (start - warmup_start) * step / max(warmup, 1)
    span = max(total - warmup, 1)
    t = min(max(step - warmup, 0), span) / span
    return end + 0.5 * (start - end) * (1 + math.cos(math.pi * t))


def linear_warmup(step: int, warmup: int, start: float, end: float) -> float:
    """Linear from start to end over `warmup` steps, then constant (teacher temperature)."""
    if step >= warmup:
        return end
    return start + (end - start) * step / max(warmup, 1)
