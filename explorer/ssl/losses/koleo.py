"""KoLeo regulariser (Kozachenko-Leonenko entropy estimator) on student CLS tokens.

Why: it pushes each L2-normalised CLS token away from its nearest neighbour in the
batch, spreading features uniformly on the sphere, which helps k-NN retrieval.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def koleo_loss(x: Tensor, eps: float = 1e-8) -> Tensor:
    """-mean_i log(min_{j != i} ||x_i - x_j||) on L2-normalised rows of x [B, D].

    float32 even under bf16 autocast (as DINOv3's KoLeoLoss): nearest-neighbour distances of
    unit vectors in a batch are small, and bf16's 3 significant digits would pick wrong neighbours
    and quantise the log.
    """
    with torch.autocast(device_type=x.device.type, enabled=False):
        x = F.normalize(x.float(), dim=-1, eps=eps)
        with torch.no_grad():
            dots = x @ x.t()
            dots.fill_diagonal_(-3.0)
            nearest = dots.argmax(dim=1)
        dist = (x - x[nearest]).norm(dim=-1)
        return -torch.log(dist + eps).mean()
