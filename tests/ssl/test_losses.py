"""Each loss against a hand-written loop over its textbook formula."""

from __future__ import annotations

import math

import torch

from explorer.ssl.losses import dino_loss, ibot_loss, koleo_loss


def _log_softmax(row: list[float], temp: float) -> list[float]:
    z = [v / temp for v in row]
    m = max(z)
    lse = m + math.log(sum(math.exp(v - m) for v in z))
    return [v - lse for v in z]


def test_dino_loss_matches_loop() -> None:
    g = torch.Generator().manual_seed(0)
    n_student, n_teacher, batch, k, temp = 4, 2, 3, 5, 0.1
    student = torch.randn(n_student, batch, k, generator=g)
    teacher = torch.softmax(torch.randn(n_teacher, batch, k, generator=g), dim=-1)
    total, pairs = 0.0, 0
    for t in range(n_teacher):
        for s in range(n_student):
            if s == t:
                continue
            ce = 0.0
            for b in range(batch):
                logp = _log_softmax(student[s, b].tolist(), temp)
                ce -= sum(teacher[t, b, j].item() * logp[j] for j in range(k))
            total += ce / batch
            pairs += 1
    expected = total / pairs
    assert pairs == 6
    assert math.isclose(dino_loss(student, teacher, temp).item(), expected, rel_tol=1e-5)


def test_dino_loss_stays_float32_under_bf16_autocast() -> None:
    """Under autocast the einsum would run in bf16: the loss came out quantised (31.125 for 31.105)."""
    g = torch.Generator().manual_seed(0)
    student = torch.randn(4, 8, 512, generator=g)
    teacher = torch.softmax(torch.randn(2, 8, 512, generator=g) / 0.04, dim=-1)
    reference = dino_loss(student, teacher)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under_autocast = dino_loss(student, teacher)
    assert under_autocast.dtype == torch.float32
    assert math.isclose(under_autocast.item(), reference.item(), rel_tol=1e-6)


def test_ibot_loss_matches_loop() -> None:
    g = torch.Generator().manual_seed(1)
    masks = torch.tensor([[1, 0, 1, 1], [0, 0, 0, 0], [0, 1, 0, 0]], dtype=torch.bool)
    m, k, temp = int(masks.sum()), 6, 0.1
    student = torch.randn(m, k, generator=g)
    teacher = torch.softmax(torch.randn(m, k, generator=g), dim=-1)
    # tokens come in row-major order of the mask; weight 1 / (masked tokens of that image)
    rows = [i for i in range(masks.shape[0]) for j in range(masks.shape[1]) if masks[i, j]]
    per_image = {i: sum(1 for r in rows if r == i) for i in set(rows)}
    total = 0.0
    for tok, img in enumerate(rows):
        logp = _log_softmax(student[tok].tolist(), temp)
        ce = -sum(teacher[tok, j].item() * logp[j] for j in range(k))
        total += ce / per_image[img]
    # DINOv2/v3 divide by ALL images (3 here, one of them unmasked), not by the 2 masked ones
    expected = total / masks.shape[0]
    assert math.isclose(ibot_loss(student, teacher, masks, temp).item(), expected, rel_tol=1e-5)


def test_ibot_loss_is_float32_for_bf16_logits_under_autocast() -> None:
    """The head's logits arrive in bf16 under autocast; the loss must be computed from them in float32."""
    g = torch.Generator().manual_seed(6)
    masks = torch.rand(4, 16, generator=g) < 0.5
    m = int(masks.sum())
    student = torch.randn(m, 64, generator=g).bfloat16()
    teacher = torch.softmax(torch.randn(m, 64, generator=g), dim=-1)
    reference = ibot_loss(student.float(), teacher, masks)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under_autocast = ibot_loss(student, teacher, masks)
    assert under_autocast.dtype == torch.float32
    assert math.isclose(under_autocast.item(), reference.item(), rel_tol=1e-6)


def test_koleo_picks_the_true_nearest_neighbour_under_bf16_autocast() -> None:
    """Two neighbours of row 0 at cosines 0.9985 and 0.9990 are one value in bf16 (spacing 2^-8 near 1):
    a bf16 similarity matmul would pick the first (wrong) one and change the loss by ~2%."""
    t1, t2 = math.acos(0.9985), math.acos(0.9990)
    x = torch.tensor([[1.0, 0, 0], [math.cos(t1), math.sin(t1), 0], [math.cos(t2), 0, math.sin(t2)], [-1.0, 0, 0]])
    reference = koleo_loss(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under_autocast = koleo_loss(x)
    assert under_autocast.dtype == torch.float32
    assert math.isclose(under_autocast.item(), reference.item(), rel_tol=1e-6)


def test_koleo_matches_loop() -> None:
    g = torch.Generator().manual_seed(2)
    x = torch.randn(6, 4, generator=g) * 3.0
    rows = [[v / math.sqrt(sum(u * u for u in r)) for v in r] for r in x.tolist()]
    total = 0.0
    for i, a in enumerate(rows):
        nearest = min(math.dist(a, b) for j, b in enumerate(rows) if j != i)
        total += -math.log(nearest + 1e-8)
    expected = total / len(rows)
    assert math.isclose(koleo_loss(x).item(), expected, rel_tol=1e-5)


