"""The memory decision: float32 if it fits, bfloat16 weights if only they fit (and the CPU runs bf16)."""

from __future__ import annotations

import pytest
import torch

from explorer.backbone import memory

PARAMS = 1_000_000
FP32 = PARAMS * 4 * memory.LOAD_OVERHEAD
BF16 = PARAMS * 2 * memory.LOAD_OVERHEAD


@pytest.mark.parametrize(("available", "bf16", "expected"), [
    (FP32 + 1, False, torch.float32), (FP32 - 1, True, torch.bfloat16), (BF16 + 1, True, torch.bfloat16),
])
def test_dtype_that_fits(monkeypatch: pytest.MonkeyPatch, available: float, bf16: bool, expected) -> None:
    monkeypatch.setattr(memory, "available_bytes", lambda: int(available))
    monkeypatch.setattr(memory, "bf16_supported", lambda device: bf16)
    assert memory.load_dtype(PARAMS, "m", torch.device("cpu")) == expected


@pytest.mark.parametrize(("available", "bf16", "hint"), [(FP32 - 1, False, "no native bf16"),
                                                         (BF16 - 1, True, "pick a smaller model")])
def test_too_large(monkeypatch: pytest.MonkeyPatch, available: float, bf16: bool, hint: str) -> None:
    monkeypatch.setattr(memory, "available_bytes", lambda: int(available))
    monkeypatch.setattr(memory, "bf16_supported", lambda device: bf16)
    with pytest.raises(memory.TooLarge, match=hint):
        memory.load_dtype(PARAMS, "'big'", torch.device("cpu"))
