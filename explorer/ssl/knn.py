"""k-NN monitor: weighted k-NN (k=20, cosine, temperature 0.07) on frozen teacher CLS tokens.

Why: SSL losses do not tell you whether features are getting better; k-NN accuracy on a
small labelled held-out split does, at the cost of one forward pass over a few hundred images.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor
from transformers import DINOv3ViTModel

from explorer.backbone.preprocess import preprocess_many


@torch.no_grad()
def embed_cls(backbone: DINOv3ViTModel, images: Tensor, size: int, device: torch.device,
              batch: int = 128, autocast: bool = False) -> Tensor:
    """L2-normalised CLS tokens [N, D] of uint8 images [N, H, W, 3].

    Pixels come from `explorer.backbone.preprocess_many` (longer side `size`, aspect kept, ImageNet
    mean/std, as the recipe's crops): the monitor measures the input the app and the heads will see.
    """
    was_training = backbone.training
    backbone.eval()
    patch = int(backbone.config.patch_size)
    host = images.cpu().numpy()
    out = []
    for i in range(0, host.shape[0], batch):
        pils = [Image.fromarray(img) for img in host[i : i + batch]]
        x = preprocess_many(pils, size, patch).to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            cls = backbone(pixel_values=x).last_hidden_state[:, 0]
        out.append(F.normalize(cls.float(), dim=-1))
    backbone.train(was_training)
    return torch.cat(out)


def knn_top1(bank: Tensor, bank_labels: Tensor, query: Tensor, query_labels: Tensor,
             k: int = 20, temperature: float = 0.07) -> float:
    """Top-1 accuracy of similarity-weighted k-NN voting (DINO's protocol) on normalised features."""
    n_classes = int(max(bank_labels.max(), query_labels.max())) + 1
    sims = query @ bank.t()
    k = min(k, bank.shape[0])
    top_sim, top_idx = sims.topk(k, dim=1)
    votes = torch.zeros(query.shape[0], n_classes, device=query.device)
    votes.scatter_add_(1, bank_labels.to(query.device)[top_idx], (top_sim / temperature).exp())
    pred = votes.argmax(dim=1)
    return float((pred == query_labels.to(query.device)).float().mean())
