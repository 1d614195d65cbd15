"""EMA teacher update and its momentum schedule."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from explorer.ssl.ema import ema_update
from explorer.ssl.schedules import cosine, linear_warmup


def test_ema_update_is_convex_combination() -> None:
    torch.manual_seed(0)
    student, teacher = nn.Linear(3, 2), nn.Linear(3, 2)
    before = [p.detach().clone() for p in teacher.parameters()]
    m = 0.9
    ema_update(teacher, student, m)
    for t_old, t_new, s in zip(before, teacher.parameters(), student.parameters(), strict=True):
        assert torch.allclose(t_new, m * t_old + (1 - m) * s, atol=1e-7)
    # momentum 1 freezes the teacher
    frozen = [p.detach().clone() for p in teacher.parameters()]
    ema_update(teacher, student, 1.0)
    assert all(torch.equal(a, b) for a, b in zip(frozen, teacher.parameters(), strict=True))


def test_ema_rejects_mismatched_modules() -> None:
    with pytest.raises(ValueError):
        ema_update(nn.Linear(3, 2), nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 2)), 0.9)


def test_schedules() -> None:
    # momentum: cosine 0.992 -> 1
    assert cosine(0, 100, 0.992, 1.0) == pytest.approx(0.992)
    assert cosine(50, 100, 0.992, 1.0) == pytest.approx(0.996)
    assert cosine(100, 100, 0.992, 1.0) == pytest.approx(1.0)
    # lr: linear warm-up from 0, then cosine to min
    assert cosine(0, 110, 1e-3, 1e-6, warmup=10) == 0.0
    assert cosine(5, 110, 1e-3, 1e-6, warmup=10) == pytest.approx(5e-4)
    assert cosine(10, 110, 1e-3, 1e-6, warmup=10) == pytest.approx(1e-3)
    assert cosine(60, 110, 1e-3, 1e-6, warmup=10) == pytest.approx(1e-6 + 0.5 * (1e-3 - 1e-6) * (1 + math.cos(math.pi / 2)))
    # teacher temperature: 0.04 -> 0.07 then constant
    assert linear_warmup(0, 30, 0.04, 0.07) == pytest.approx(0.04)
    assert linear_warmup(15, 30, 0.04, 0.07) == pytest.approx(0.055)
    assert linear_warmup(500, 30, 0.04, 0.07) == pytest.approx(0.07)
