"""iBOT masked-patch loss: the student predicts, at masked positions of its global crops,
the teacher's (unmasked) soft assignments of the same patches.

Why per-image weighting: an image with many masked patches would otherwise dominate; as in
DINOv2/v3 (`iBOTPatchLoss.forward_masked`), each masked token is weighted 1/(masked tokens in its
image) and the sum is divided by the number of ALL images (global crops), masked or not, so with a
mask probability p the loss is about p times the mean per-image cross-entropy.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def masked_token_weights(masks: Tensor) -> Tensor:
    """Weights [M] of the masked tokens (in `masks.nonzero()` order): 1 / (masked tokens of the image)."""
    per_image = masks.sum(dim=1)  # [N]
    return (1.0 / per_image.clamp(min=1).float()).unsqueeze(1).expand_as(masks)[masks]


def ibot_loss(student_logits: Tensor, teacher_probs: Tensor, masks: Tensor, student_temp: float = 0.1) -> Tensor:
    """student_logits / teacher_probs: [M, K] for the masked tokens of `masks` [N, P] (row-major order).

    float32 even under bf16 autocast, like the DINO loss: the targets are near-uniform early in
    training and bf16 would quantise the log-softmax and the weighted sum.
    """
    with torch.autocast(device_type=student_logits.device.type, enabled=False):
        log_p = F.log_softmax(student_logits.float() / student_temp, dim=-1)
        per_token = -(teacher_probs.float() * log_p).sum(dim=-1)
        return (per_token * masked_token_weights(masks)).sum() / masks.shape[0]
