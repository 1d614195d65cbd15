"""Sinkhorn-Knopp centering of teacher outputs (SwAV / DINOv2 / DINOv3).

Why: a plain softmax teacher collapses (all samples on one prototype). Sinkhorn-Knopp
turns the teacher's scores into soft assignments whose prototype marginals are uniform
over the batch, which prevents collapse without DINO's running center. In multi-process
runs the marginals are computed over the global batch (all_reduce), like the reference.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor


def _all_reduce(x: Tensor) -> Tensor:
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(x)
    return x


def _world_size() -> int:
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


@torch.no_grad()
def sinkhorn_knopp(scores: Tensor, temperature: float, iterations: int = 3) -> Tensor:
    """Soft assignments [B, K] from teacher scores [B, K]; each row sums to 1, columns ~ B/K.

    The global batch size is the sum of the local ones (processes may hold different
    counts, e.g. masked patches for iBOT).
    """
    scores = scores.float()
    # subtracting the (global) max is exact after normalisation and avoids exp overflow
    local_max = scores.max() if scores.numel() else scores.new_tensor(float("-inf"))
    shift = _all_reduce_max(local_max)
    q = torch.exp((scores - shift) / temperature).t()  # [K, B]
    n_local = torch.tensor(float(q.shape[1]), device=q.device)
    n_total = _all_reduce(n_local.clone())
    k = q.shape[0]
    q /= _all_reduce(q.sum())
    for _ in range(iterations):
        rows = _all_reduce(q.sum(dim=1, keepdim=True))
        q /= rows
        q /= k
        q /= q.sum(dim=0, keepdim=True)
        q /= n_total
    q *= n_total
    return q.t()


def _all_reduce_max(x: Tensor) -> Tensor:
    if _world_size() > 1:
        x = x.clone()
        dist.all_reduce(x, op=dist.ReduceOp.MAX)
    return x
