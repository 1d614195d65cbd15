"""Box geometry, matching, NMS and losses shared by the detection heads.

Pure torch/numpy/scipy (no torchvision) so the heads run wherever the backbone runs.
Boxes are ``xyxy`` unless a name says ``cxcywh``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import Tensor


def box_cxcywh_to_xyxy(b: Tensor) -> Tensor:
    """DETR predicts centre/size; IoU and NMS want corners."""
    cx, cy, w, h = b.unbind(-1)
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)


def box_xyxy_to_cxcywh(b: Tensor) -> Tensor:
    """Inverse of :func:`box_cxcywh_to_xyxy`."""
    x0, y0, x1, y1 = b.unbind(-1)
    return torch.stack([(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0], dim=-1)


def box_area(b: Tensor) -> Tensor:
    """Area of xyxy boxes; degenerate boxes count as zero."""
    return (b[..., 2] - b[..., 0]).clamp(min=0) * (b[..., 3] - b[..., 1]).clamp(min=0)


def box_iou(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """Pairwise IoU ``[N, M]`` and the union, which GIoU reuses."""
    lt = torch.max(a[:, None, :2], b[None, :, :2])
    rb = torch.min(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    union = box_area(a)[:, None] + box_area(b)[None, :] - inter
    return inter / union.clamp(min=1e-9), union


def generalized_box_iou(a: Tensor, b: Tensor) -> Tensor:
    """Pairwise GIoU ``[N, M]`` (Rezatofighi et al. 2019): IoU minus the empty share of the hull."""
    iou, union = box_iou(a, b)
    lt = torch.min(a[:, None, :2], b[None, :, :2])
    rb = torch.max(a[:, None, 2:], b[None, :, 2:])
    hull = (rb - lt).clamp(min=0).prod(-1)
    return iou - (hull - union) / hull.clamp(min=1e-9)


def giou_aligned(a: Tensor, b: Tensor) -> Tensor:
    """GIoU of matched pairs ``a[i]`` vs ``b[i]`` -> ``[N]`` without the ``N x M`` matrix."""
    lt = torch.max(a[:, :2], b[:, :2])
    rb = torch.min(a[:, 2:], b[:, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    union = box_area(a) + box_area(b) - inter
    iou = inter / union.clamp(min=1e-9)
    hlt = torch.min(a[:, :2], b[:, :2])
    hrb = torch.max(a[:, 2:], b[:, 2:])
    hull = (hrb - hlt).clamp(min=0).prod(-1)
    return iou - (hull - union) / hull.clamp(min=1e-9)


def sine_pos_encoding_2d(h: int, w: int, dim: int, temperature: float = 10000.0) -> Tensor:
    """DETR's normalised 2D sine encoding ``[h*w, dim]``: half the channels for y, half for x.

    Coordinates are normalised to (0, 2*pi] so the encoding means the same at any grid size.
    """
    if dim % 4:
        raise ValueError(f"dim must be a multiple of 4, got {dim}")
    npf = dim // 2
    y = (torch.arange(h, dtype=torch.float32) + 1) / h * 2 * math.pi
    x = (torch.arange(w, dtype=torch.float32) + 1) / w * 2 * math.pi
    t = temperature ** (2 * (torch.arange(npf) // 2) / npf)
    py = y[:, None] / t  # [h, npf]
    px = x[:, None] / t
    py = torch.stack([py[:, 0::2].sin(), py[:, 1::2].cos()], dim=2).flatten(1)
    px = torch.stack([px[:, 0::2].sin(), px[:, 1::2].cos()], dim=2).flatten(1)
    pos = torch.cat([py[:, None, :].expand(h, w, npf), px[None, :, :].expand(h, w, npf)], dim=-1)
    return pos.reshape(h * w, dim)


def box_sine_embedding(boxes: Tensor, dim: int, temperature: float = 10000.0) -> Tensor:
    """Sine embedding of normalised cxcywh boxes ``[..., 4] -> [..., dim]`` (DAB-DETR style query pos)."""
    if dim % 8:
        raise ValueError(f"dim must be a multiple of 8, got {dim}")
    per = dim // 4
    t = temperature ** (2 * (torch.arange(per, device=boxes.device) // 2) / per)
    v = boxes[..., None] * 2 * math.pi / t  # [..., 4, per]
    v = torch.stack([v[..., 0::2].sin(), v[..., 1::2].cos()], dim=-1).flatten(-2)
    return v.flatten(-2)


def hungarian_match(cost: Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Minimum-cost one-to-one assignment of predictions (rows) to targets (cols)."""
    c = cost.detach().cpu().numpy() if isinstance(cost, Tensor) else np.asarray(cost)
    if c.size == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    rows, cols = linear_sum_assignment(c)
    return rows.astype(np.int64), cols.astype(np.int64)


def nms(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """Greedy NMS: indices of kept boxes, highest score first (same contract as torchvision.ops.nms)."""
    if boxes.numel() == 0:
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    order = scores.argsort(descending=True)
    iou = box_iou(boxes[order], boxes[order])[0]
    n = order.numel()
    suppressed = torch.zeros(n, dtype=torch.bool, device=boxes.device)
    keep = []
    iou_np = (iou > iou_threshold).cpu().numpy()
    sup = suppressed.cpu().numpy()
    for i in range(n):
        if sup[i]:
            continue
        keep.append(i)
        sup |= iou_np[i]
    return order[torch.as_tensor(keep, dtype=torch.long, device=boxes.device)]


def batched_nms(boxes: Tensor, scores: Tensor, labels: Tensor, iou_threshold: float) -> Tensor:
    """Class-wise NMS in one pass: boxes of different classes are shifted apart so they never overlap."""
    if boxes.numel() == 0:
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    offset = labels.to(boxes.dtype)[:, None] * (boxes.max() - boxes.min() + 1)
    return nms(boxes + offset, scores, iou_threshold)


def sigmoid_focal_loss(logits: Tensor, targets: Tensor, alpha: float = 0.25, gamma: float = 2.0) -> Tensor:
    """Summed focal loss (Lin et al. 2017): down-weights the sea of easy background cells."""
    p = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = loss * (alpha * targets + (1 - alpha) * (1 - targets))
    return loss.sum()


def inverse_sigmoid(x: Tensor, eps: float = 1e-5) -> Tensor:
    """logit(x), clamped so boxes on the image border stay finite."""
    x = x.clamp(eps, 1 - eps)
    return torch.log(x / (1 - x))
