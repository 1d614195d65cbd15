"""iBOT masked-patch loss: the student predicts, at masked positions of its global crops,
the teacher's (unmasked) soft assignments of the same patches.

Why per-image weighting: an image with many masked patches would otherwise dominate;
like DINOv2, each masked token is weighted 1/(masked tokens in its image) and the loss
is averaged over masked images.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def masked_token_weights(masks: Tensor) -> tuple[Tensor, int]:
    """Weights [M] for the masked tokens (in `masks.nonzero()` order) and the number of masked images."""
    per_image = masks.sum(dim=1)  # [N]
    weights = (1.0 / per_image.clamp(min=1).float()).unsqueeze(1).expand_as(masks)[masks]
    return weights, int((per_image > 0).sum())


def ibot_loss(student_logits: Tensor, teacher_probs: Tensor, masks: Tensor, student_temp: float = 0.1) -> Tensor:
    """student_logits / teacher_probs: [M, K] for the masked tokens of `masks` [N, P] (row-major order)."""
    weights, n_images = masked_token_weights(masks)
    if n_images == 0:
        return student_logits.sum() * 0.0
    log_p = F.log_softmax(student_logits.float() / student_temp, dim=-1)
    per_token = -(teacher_probs.float() * log_p).sum(dim=-1)
    return (per_token * weights).sum() / n_images
