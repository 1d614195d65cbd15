"""Sinkhorn-Knopp produces assignments with (near-)uniform marginals."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from explorer.ssl.sinkhorn import sinkhorn_knopp


def _scores(batch: int, k: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    feats = F.normalize(torch.randn(batch, 16, generator=g), dim=-1)
    protos = F.normalize(torch.randn(k, 16, generator=g), dim=-1)
    return feats @ protos.t()


def test_rows_are_distributions_and_columns_near_uniform() -> None:
    batch, k = 256, 32
    scores = _scores(batch, k)
    q = sinkhorn_knopp(scores, temperature=0.1, iterations=3)
    assert q.shape == (batch, k)
    assert torch.all(q >= 0)
    assert torch.allclose(q.sum(dim=1), torch.ones(batch), atol=1e-5)
    cols = q.sum(dim=0)
    target = batch / k
    # plain softmax is far from uniform on the same scores; Sinkhorn-Knopp is close
    soft_cols = torch.softmax(scores / 0.1, dim=1).sum(dim=0)
    assert (soft_cols - target).abs().max() / target > 0.5
    assert (cols - target).abs().max() / target < 0.1


def test_more_iterations_converge_to_exact_marginals() -> None:
    q = sinkhorn_knopp(_scores(64, 8, seed=1), temperature=0.1, iterations=100)
    assert torch.allclose(q.sum(dim=0), torch.full((8,), 8.0), atol=1e-3)
    assert torch.allclose(q.sum(dim=1), torch.ones(64), atol=1e-5)


def test_invariant_to_constant_shift_and_matches_reference_loop() -> None:
    scores = _scores(12, 5, seed=2)
    temp = 0.07
    q = sinkhorn_knopp(scores, temperature=temp, iterations=3)
    assert torch.allclose(sinkhorn_knopp(scores + 3.0, temperature=temp, iterations=3), q, atol=1e-6)
    # reference: alternate normalising prototype rows to 1/K and sample columns to 1/B
    m = torch.exp(scores.double() / temp).t()
    m /= m.sum()
    for _ in range(3):
        m /= m.sum(dim=1, keepdim=True) * 5
        m /= m.sum(dim=0, keepdim=True) * 12
    assert torch.allclose(q.double(), (m * 12).t(), atol=1e-6)
