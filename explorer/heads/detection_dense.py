"""Dense single-stage detector on the frozen patch grid (FCOS-style, one level).

Why: DETR's set matching converges slowly; a per-cell classifier + box regressor learns in a
few epochs on CPU. Each output cell predicts class scores (sigmoid, focal loss), the distances
(l, t, r, b) from its centre to the box sides (GIoU loss) and a centerness score that ranks
boxes predicted from an object's middle above those from its rim. An optional x2 upsampling
gives a stride-8 grid so 24 px objects cover several cells.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from explorer.heads.detection_ops import batched_nms, giou_aligned, sigmoid_focal_loss


@dataclass
class DenseConfig:
    """Everything needed to rebuild the module; stored in the head card."""

    in_dim: int
    num_classes: int
    patch_size: int = 16
    hidden: int = 128
    num_convs: int = 2
    upsample: bool = True
    center_radius: float = 1.5  # positives: cells within this many output strides of the box centre

    def to_dict(self) -> dict:
        return asdict(self)


def _conv_block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.GroupNorm(8, c_out), nn.GELU())


class DenseDetector(nn.Module):
    """Patch grid ``[B, h, w, d]`` -> per-cell class logits, ltrb distances and centerness logits."""

    def __init__(self, cfg: DenseConfig) -> None:
        super().__init__()
        self.cfg = cfg
        c = cfg.hidden
        self.norm = nn.LayerNorm(cfg.in_dim)
        self.proj = nn.Conv2d(cfg.in_dim, c, 1)
        self.tower = nn.Sequential(*[_conv_block(c, c) for _ in range(cfg.num_convs)])
        if cfg.upsample:
            self.up = nn.Sequential(nn.ConvTranspose2d(c, c, 2, stride=2), nn.GroupNorm(8, c), nn.GELU(),
                                    _conv_block(c, c))
        else:
            self.up = nn.Identity()
        self.cls_branch = _conv_block(c, c)
        self.reg_branch = _conv_block(c, c)
        self.cls_out = nn.Conv2d(c, cfg.num_classes, 3, padding=1)
        self.reg_out = nn.Conv2d(c, 4, 3, padding=1)
        self.ctr_out = nn.Conv2d(c, 1, 3, padding=1)
        # Start with "nothing here" (p = 0.01) so the focal loss is not swamped on step one.
        nn.init.constant_(self.cls_out.bias, -float(np.log(99.0)))
        nn.init.normal_(self.reg_out.weight, std=0.01)
        nn.init.zeros_(self.reg_out.bias)

    @property
    def stride(self) -> int:
        return self.cfg.patch_size // 2 if self.cfg.upsample else self.cfg.patch_size

    def forward(self, patches: Tensor) -> dict[str, Tensor]:
        x = self.norm(patches.float()).permute(0, 3, 1, 2)
        x = self.up(self.tower(self.proj(x)))
        c, r = self.cls_branch(x), self.reg_branch(x)
        # ltrb in output strides; exp keeps them positive, clamp keeps early steps finite.
        ltrb = self.reg_out(r).clamp(max=8.0).exp()
        return {
            "cls": self.cls_out(c).permute(0, 2, 3, 1),  # [B, H, W, K]
            "ltrb": ltrb.permute(0, 2, 3, 1),  # [B, H, W, 4]
            "ctr": self.ctr_out(r)[:, 0],  # [B, H, W]
        }


def cell_centres(h: int, w: int, stride: int, device: torch.device | None = None) -> Tensor:
    """Pixel centres ``[h, w, 2]`` (x, y) of the output cells."""
    ys = (torch.arange(h, device=device, dtype=torch.float32) + 0.5) * stride
    xs = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) * stride
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx, gy], dim=-1)


def assign_targets(
    boxes: Tensor, labels: Tensor, h: int, w: int, stride: int, center_radius: float
) -> tuple[Tensor, Tensor]:
    """FCOS centre-sampling assignment for one image.

    Returns ``gt_index [h, w]`` (-1 = background) and ``ltrb [h, w, 4]`` in strides. A cell is
    positive for a box if its centre lies inside the box and within ``center_radius`` strides of
    the box centre; ties go to the smallest box. A box that wins no cell (tiny, or out-competed)
    takes the cell under its centre, so every object is learned.
    """
    pts = cell_centres(h, w, stride, boxes.device).reshape(-1, 2)  # [P, 2]
    n = boxes.shape[0]
    gt_index = torch.full((h * w,), -1, dtype=torch.long, device=boxes.device)
    if n == 0:
        return gt_index.reshape(h, w), torch.zeros(h, w, 4, device=boxes.device)
    x, y = pts[:, 0:1], pts[:, 1:2]
    ltrb = torch.stack([x - boxes[:, 0], y - boxes[:, 1], boxes[:, 2] - x, boxes[:, 3] - y], dim=-1)  # [P,N,4]
    inside = ltrb.min(dim=-1).values > 0
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    rad = center_radius * stride
    near = ((x - cx).abs() < rad) & ((y - cy).abs() < rad)
    area = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))[None, :].expand(pts.shape[0], n)
    area = torch.where(inside & near, area, torch.full_like(area, float("inf")))
    best_area, best = area.min(dim=1)
    gt_index = torch.where(torch.isfinite(best_area), best, gt_index)
    # Guarantee one cell per box: the cell holding its centre (if that cell is free or bigger-box owned).
    for k in range(n):
        if (gt_index == k).any():
            continue
        j = int((cx[k] / stride).floor().clamp(0, w - 1))
        i = int((cy[k] / stride).floor().clamp(0, h - 1))
        gt_index[i * w + j] = k
    sel = gt_index.clamp(min=0)
    ltrb_t = ltrb[torch.arange(pts.shape[0], device=boxes.device), sel] / stride
    return gt_index.reshape(h, w), ltrb_t.reshape(h, w, 4)


def centerness(ltrb: Tensor) -> Tensor:
    """FCOS centerness target: 1 at the box centre, falling towards its sides."""
    lr = ltrb[..., [0, 2]].clamp(min=1e-6)
    tb = ltrb[..., [1, 3]].clamp(min=1e-6)
    c = (lr.min(-1).values / lr.max(-1).values) * (tb.min(-1).values / tb.max(-1).values)
    return c.sqrt()


def ltrb_to_boxes(ltrb: Tensor, centres: Tensor, stride: int) -> Tensor:
    """Decode distances (in strides) around cell centres into xyxy pixel boxes."""
    d = ltrb * stride
    return torch.stack([centres[..., 0] - d[..., 0], centres[..., 1] - d[..., 1],
                        centres[..., 0] + d[..., 2], centres[..., 1] + d[..., 3]], dim=-1)


def boxes_to_ltrb(boxes: Tensor, centres: Tensor, stride: int) -> Tensor:
    """Inverse of :func:`ltrb_to_boxes` (used by the round-trip test and the assigner)."""
    return torch.stack([centres[..., 0] - boxes[..., 0], centres[..., 1] - boxes[..., 1],
                        boxes[..., 2] - centres[..., 0], boxes[..., 3] - centres[..., 1]], dim=-1) / stride


def dense_targets(
    targets: list[dict[str, Tensor]], h: int, w: int, stride: int, center_radius: float
) -> tuple[Tensor, Tensor]:
    """Per-cell class (-1 = background) ``[B, h, w]`` and ltrb targets ``[B, h, w, 4]``.

    Targets do not change during training, so callers compute this once per image and reuse it.
    """
    labels, ltrbs = [], []
    for t in targets:
        g, lt = assign_targets(t["boxes"], t["labels"], h, w, stride, center_radius)
        lab = torch.where(g >= 0, t["labels"][g.clamp(min=0)] if len(t["labels"]) else g, torch.full_like(g, -1))
        labels.append(lab)
        ltrbs.append(lt)
    return torch.stack(labels), torch.stack(ltrbs)


def flip_dense_targets(labels: Tensor, ltrb: Tensor) -> tuple[Tensor, Tensor]:
    """Targets of the mirrored grid: flip columns and swap left/right distances (cell centres are symmetric)."""
    return labels.flip(-1), ltrb.flip(-2)[..., [2, 1, 0, 3]]


def dense_loss(model: DenseDetector, out: dict[str, Tensor], cell_labels: Tensor, ltrb_t: Tensor) -> dict[str, Tensor]:
    """Focal classification over all cells + centerness-weighted GIoU and centerness BCE on positives."""
    b, h, w, k = out["cls"].shape
    s = model.stride
    pos = cell_labels >= 0
    cls_t = torch.zeros_like(out["cls"])
    cls_t[pos, cell_labels[pos]] = 1.0
    num_pos = max(float(pos.sum()), 1.0)
    loss_cls = sigmoid_focal_loss(out["cls"], cls_t) / num_pos
    if pos.any():
        centres = cell_centres(h, w, s, out["cls"].device).expand(b, h, w, 2)
        pb = ltrb_to_boxes(out["ltrb"][pos], centres[pos], s)
        tb = ltrb_to_boxes(ltrb_t[pos], centres[pos], s)
        ctr_t = centerness(ltrb_t[pos])
        loss_giou = ((1 - giou_aligned(pb, tb)) * ctr_t).sum() / ctr_t.sum().clamp(min=1e-6)
        loss_ctr = F.binary_cross_entropy_with_logits(out["ctr"][pos], ctr_t)
    else:
        loss_giou = out["ltrb"].sum() * 0
        loss_ctr = out["ctr"].sum() * 0
    total = loss_cls + 2.0 * loss_giou + loss_ctr
    return {"loss": total, "cls": loss_cls.detach(), "giou": loss_giou.detach(), "ctr": loss_ctr.detach()}


@torch.no_grad()
def decode_dense(
    model: DenseDetector,
    out: dict[str, Tensor],
    input_size: tuple[int, int],
    score_threshold: float = 0.05,
    iou_threshold: float = 0.6,
    max_candidates: int = 200,
    max_detections: int = 50,
) -> list[dict[str, np.ndarray]]:
    """Scores = sqrt(class prob * centerness), top-k, class-wise NMS, clip to the input image."""
    b, h, w, k = out["cls"].shape
    s = model.stride
    centres = cell_centres(h, w, s, out["cls"].device).reshape(-1, 2)
    H, W = input_size
    results = []
    for bi in range(b):
        prob = out["cls"][bi].reshape(-1, k).sigmoid()
        ctr = out["ctr"][bi].reshape(-1, 1).sigmoid()
        score = (prob * ctr).sqrt().flatten()
        keep = score > score_threshold
        idx = keep.nonzero().flatten()
        if idx.numel() > max_candidates:
            idx = idx[score[idx].topk(max_candidates).indices]
        cell, lab = idx // k, idx % k
        boxes = ltrb_to_boxes(out["ltrb"][bi].reshape(-1, 4)[cell], centres[cell], s)
        boxes[:, 0::2] = boxes[:, 0::2].clamp(0, W)
        boxes[:, 1::2] = boxes[:, 1::2].clamp(0, H)
        sc = score[idx]
        kept = batched_nms(boxes, sc, lab, iou_threshold)[:max_detections]
        results.append({
            "boxes_xyxy": boxes[kept].cpu().numpy().astype(np.float32),
            "scores": sc[kept].cpu().numpy().astype(np.float32),
            "labels": lab[kept].cpu().numpy().astype(np.int64),
        })
    return results
