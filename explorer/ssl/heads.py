"""DINO / iBOT projection heads: an MLP, an L2 bottleneck, weight-normalised prototypes.

Why weight-normalised prototypes: logits become cosine similarities in [-1, 1], so
the temperatures (0.1 student, 0.04-0.07 teacher) have a fixed meaning; DINO fixes the
weight-norm gain to 1, which is the same as normalising each prototype row.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from explorer.ssl.config import HeadConfig


class DINOHead(nn.Module):
    """MLP (num_layers, GELU) -> L2-normalised bottleneck -> cosine logits over prototypes.

    ``batch_norm`` puts a BatchNorm after each hidden layer (DINOv1's head for ResNets): batch
    statistics force the head's outputs to differ across the batch, a guard against the uniform
    collapse that Sinkhorn-Knopp does not prevent. The teacher's copy must then use batch statistics
    too. On the offline world it does not make the backbone's CLS tokens spread out
    (it amplifies what differences are left; docs/results/PRETRAINING.md), so it is off by default.
    """

    def __init__(
        self, in_dim: int, num_prototypes: int, hidden_dim: int, bottleneck_dim: int, num_layers: int = 3,
        batch_norm: bool = False,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        dim = in_dim
        for _ in range(max(num_layers - 1, 0)):
            layers += [nn.Linear(dim, hidden_dim), *([nn.BatchNorm1d(hidden_dim)] if batch_norm else []), nn.GELU()]
            dim = hidden_dim
        layers.append(nn.Linear(dim, bottleneck_dim))
        self.mlp = nn.Sequential(*layers)
        self.prototypes = nn.Parameter(torch.empty(num_prototypes, bottleneck_dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for m in self.mlp:
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        nn.init.trunc_normal_(self.prototypes, std=0.02)

    def forward(self, x: Tensor) -> Tensor:
        z = self.mlp(x)
        # cosine logits in float32 even under bf16 autocast: divided by a 0.04 temperature,
        # bf16's 3 significant digits would add noise of ~0.1 to the teacher's logits
        with torch.autocast(device_type=z.device.type, enabled=False):
            z = F.normalize(z.float(), dim=-1, eps=1e-6)
            w = F.normalize(self.prototypes.float(), dim=-1, eps=1e-6)
            return z @ w.t()


def build_heads(in_dim: int, cfg: HeadConfig) -> tuple[DINOHead, DINOHead | None]:
    """(dino_head, ibot_head); ibot_head is None when iBOT shares the DINO head."""
    dino = DINOHead(in_dim, cfg.num_prototypes, cfg.hidden_dim, cfg.bottleneck_dim, cfg.num_layers, cfg.batch_norm)
    if not cfg.ibot_separate_head:
        return dino, None
    ibot = DINOHead(in_dim, cfg.ibot_num_prototypes, cfg.hidden_dim, cfg.bottleneck_dim, cfg.num_layers, cfg.batch_norm)
    return dino, ibot
