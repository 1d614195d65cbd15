"""Which precision "auto" picks, from the CPU's own flags."""

from __future__ import annotations

import pytest
import torch

from explorer.backbone import precision


@pytest.mark.parametrize(("flags", "expected"), [({"avx2"}, "fp32"), ({"avx2", "avx512_bf16"}, "bf16"),
                                                 ({"amx_bf16"}, "bf16")])
def test_auto_follows_native_bf16_support(monkeypatch: pytest.MonkeyPatch, flags: set, expected: str) -> None:
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset(flags))
    monkeypatch.delenv(precision.PRECISION_ENV, raising=False)
    assert precision.resolve_precision("auto", torch.device("cpu")) == expected
    assert precision.resolve_precision(None, torch.device("cpu")) == expected
    assert precision.resolve_precision("fp32", torch.device("cpu")) == "fp32"


def test_environment_sets_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(precision.PRECISION_ENV, "bf16")
    assert precision.resolve_precision(None, torch.device("cpu")) == "bf16"


def test_unknown_precision_is_refused() -> None:
    with pytest.raises(ValueError, match="auto, fp32, bf16"):
        precision.resolve_precision("fp8", torch.device("cpu"))


def test_cpu_flags_are_read_from_cpuinfo() -> None:
    text = open("/proc/cpuinfo").read()
    line = next(line for line in text.splitlines() if line.startswith("flags"))
    assert precision.cpu_flags() == frozenset(line.split(":", 1)[1].split())
