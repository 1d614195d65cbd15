"""Each loss against a hand-written loop over its textbook formula."""

from __future__ import annotations

import math

import torch

from explorer.ssl.losses import dino_loss, gram_loss, ibot_loss, koleo_loss, resample_patch_grid


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


def test_gram_loss_stays_float32_under_bf16_autocast() -> None:
    g = torch.Generator().manual_seed(0)
    a = torch.randn(2, 49, 64, generator=g)
    b = a + 0.05 * torch.randn(2, 49, 64, generator=g)
    reference = gram_loss(a, b)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under_autocast = gram_loss(a, b)
    assert math.isclose(under_autocast.item(), reference.item(), rel_tol=1e-5)


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
    expected = total / len(per_image)  # two masked images
    assert math.isclose(ibot_loss(student, teacher, masks, temp).item(), expected, rel_tol=1e-5)


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


def test_gram_loss_matches_loop() -> None:
    g = torch.Generator().manual_seed(3)
    s = torch.randn(2, 3, 4, generator=g)
    t = torch.randn(2, 3, 4, generator=g)

    def cos(a: list[float], b: list[float]) -> float:
        return sum(x * y for x, y in zip(a, b, strict=True)) / (math.hypot(*a) * math.hypot(*b))

    sq, n = 0.0, 0
    for b in range(2):
        for i in range(3):
            for j in range(3):
                d = cos(s[b, i].tolist(), s[b, j].tolist()) - cos(t[b, i].tolist(), t[b, j].tolist())
                sq += d * d
                n += 1
    assert math.isclose(gram_loss(s, t).item(), sq / n, rel_tol=1e-5)


def test_gram_loss_zero_for_identical_and_rotation_invariant() -> None:
    g = torch.Generator().manual_seed(4)
    s = torch.randn(3, 10, 8, generator=g)
    t = torch.randn(3, 10, 8, generator=g)
    assert gram_loss(s, s).item() < 1e-12
    q, _ = torch.linalg.qr(torch.randn(8, 8, generator=g))  # random orthogonal matrix
    base = gram_loss(s, t).item()
    assert base > 1e-3
    assert math.isclose(gram_loss(s @ q, t).item(), base, rel_tol=1e-5)
    assert math.isclose(gram_loss(s, t @ q.t()).item(), base, rel_tol=1e-5)
    # scaling a feature vector changes nothing either: the Gram matrix is of normalised features
    assert math.isclose(gram_loss(s * 7.0, t).item(), base, rel_tol=1e-5)


def test_resample_patch_grid_averages_blocks() -> None:
    # a 4x4 grid whose 2x2 blocks hold one unit vector each resamples to those vectors on a 2x2 grid
    vecs = torch.nn.functional.normalize(torch.randn(4, 5, generator=torch.Generator().manual_seed(5)), dim=-1)
    grid = vecs.view(2, 2, 5).repeat_interleave(2, 0).repeat_interleave(2, 1)  # [4, 4, 5]
    out = resample_patch_grid(grid.reshape(1, 16, 5), (4, 4), (2, 2))
    assert torch.allclose(out[0], vecs, atol=1e-5)
