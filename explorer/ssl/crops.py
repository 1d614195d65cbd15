"""Batched multi-crop augmentation on torch tensors (GPU-friendly, no per-image PIL loop).

Why batched: the student sees 2 global + N local crops of every image each step; a
per-image PIL pipeline is the bottleneck of small-model SSL on a GPU. Here every crop
is one row of an affine grid fed to a single `grid_sample`, and every photometric
augmentation is a per-sample tensor op, so a whole batch of crops is a handful of
kernels. Crop parameters are sampled once and can be rendered at any resolution,
which is what the Gram teacher needs (same crops, 2x resolution).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from explorer.backbone.preprocess import IMAGENET_MEAN, IMAGENET_STD
from explorer.ssl.config import CropConfig

_LUMA = (0.299, 0.587, 0.114)
_TO_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], dtype=torch.float64)
_FROM_YIQ = torch.linalg.inv(_TO_YIQ).float()
_TO_YIQ = _TO_YIQ.float()


@dataclass
class CropParams:
    """Random parameters of n crops; row i is crop i (crop-major: crop c of image b is row c*B+b)."""

    source: Tensor  # [n] index of the source image in the batch
    theta: Tensor  # [n, 2, 3] affine map output->source in normalised coordinates
    scale: Tensor  # [n] area fraction of the source image covered
    brightness: Tensor  # [n] multiplicative factors (1 = no change)
    contrast: Tensor
    saturation: Tensor
    hue: Tensor  # [n] hue rotation in turns (0 = no change)
    gray: Tensor  # [n] bool
    blur_sigma: Tensor  # [n] sigma in pixels of a 224-px crop; 0 = no blur
    solarize: Tensor  # [n] bool
    batch: int = 0  # >0: rows are `copies` blocks of arange(batch) (lets rendering skip a gather)

    def __len__(self) -> int:
        return int(self.source.shape[0])


@dataclass
class MultiCrops:
    """One step's crops, normalised with ImageNet mean/std."""

    globals_: Tensor  # [2B, 3, G, G]
    locals_: Tensor  # [nB, 3, L, L] (nB may be 0)
    global_params: CropParams
    source_images: Tensor  # [B, 3, H, W] float in [0, 1], kept to re-render globals (Gram teacher)


def _uniform(n: int, lo: float, hi: float, g: torch.Generator, device: torch.device) -> Tensor:
    return torch.rand(n, generator=g, device=device) * (hi - lo) + lo


def _bernoulli(n: int, p: float | Tensor, g: torch.Generator, device: torch.device) -> Tensor:
    return torch.rand(n, generator=g, device=device) < p


def sample_crop_params(
    cfg: CropConfig,
    batch: int,
    copies: int,
    scale_range: tuple[float, float],
    blur_p: Tensor,
    solarize_p: Tensor,
    g: torch.Generator,
    device: torch.device,
) -> CropParams:
    """Sample RandomResizedCrop + flip + photometric parameters for `copies` crops of `batch` images.

    blur_p / solarize_p are per-copy probabilities (shape [copies]), e.g. DINO's asymmetric
    blur for the two global crops.
    """
    n = batch * copies
    source = torch.arange(batch, device=device).repeat(copies)
    scale = _uniform(n, scale_range[0], scale_range[1], g, device)
    # aspect ratio log-uniform, restricted to [s, 1/s] so the crop fits and covers exactly `scale`
    # (torchvision retries instead; restricting the range keeps it one batched draw)
    lo = torch.clamp(scale.log(), min=math.log(cfg.ratio[0]))
    hi = torch.clamp(-scale.log(), max=math.log(cfg.ratio[1]))
    ratio = (lo + (hi - lo) * torch.rand(n, generator=g, device=device)).exp()
    # half-extent of the crop in normalised [-1, 1] coordinates == fraction of the image side
    w = (scale * ratio).sqrt().clamp(max=1.0)
    h = (scale / ratio).sqrt().clamp(max=1.0)
    cx = (torch.rand(n, generator=g, device=device) * 2 - 1) * (1 - w)
    cy = (torch.rand(n, generator=g, device=device) * 2 - 1) * (1 - h)
    flip = torch.where(_bernoulli(n, cfg.flip_p, g, device), -1.0, 1.0)
    theta = torch.zeros(n, 2, 3, device=device)
    theta[:, 0, 0] = w * flip
    theta[:, 0, 2] = cx
    theta[:, 1, 1] = h
    theta[:, 1, 2] = cy

    jitter = _bernoulli(n, cfg.jitter_p, g, device)
    one = torch.ones(n, device=device)
    brightness = torch.where(jitter, _uniform(n, 1 - cfg.brightness, 1 + cfg.brightness, g, device), one)
    contrast = torch.where(jitter, _uniform(n, 1 - cfg.contrast, 1 + cfg.contrast, g, device), one)
    saturation = torch.where(jitter, _uniform(n, 1 - cfg.saturation, 1 + cfg.saturation, g, device), one)
    hue = torch.where(jitter, _uniform(n, -cfg.hue, cfg.hue, g, device), one * 0)
    gray = _bernoulli(n, cfg.grayscale_p, g, device)
    per_crop_blur = blur_p.to(device).repeat_interleave(batch)
    blur = _bernoulli(n, per_crop_blur, g, device)
    sigma = _uniform(n, cfg.blur_sigma[0], cfg.blur_sigma[1], g, device)
    blur_sigma = torch.where(blur, sigma, one * 0)
    solarize = _bernoulli(n, solarize_p.to(device).repeat_interleave(batch), g, device)
    return CropParams(source, theta, scale, brightness, contrast, saturation, hue, gray, blur_sigma, solarize, batch)


def _gray(x: Tensor) -> Tensor:
    r, gch, b = x.unbind(1)
    return (_LUMA[0] * r + _LUMA[1] * gch + _LUMA[2] * b).unsqueeze(1)


def _hue_matrix(hue: Tensor) -> Tensor:
    """Per-sample 3x3 RGB matrices rotating chroma in YIQ space by `hue` turns.

    Why YIQ rotation instead of torchvision's HSV round trip: it is one batched matmul,
    and for the small shifts used (|hue| <= 0.1) it is a close, smooth approximation.
    """
    to_yiq = _TO_YIQ.to(hue.device)
    from_yiq = _FROM_YIQ.to(hue.device)
    angle = hue * 2 * math.pi
    c, s = angle.cos(), angle.sin()
    rot = torch.zeros(hue.shape[0], 3, 3, device=hue.device)
    rot[:, 0, 0] = 1
    rot[:, 1, 1] = c
    rot[:, 1, 2] = -s
    rot[:, 2, 1] = s
    rot[:, 2, 2] = c
    return from_yiq @ rot @ to_yiq


def _gaussian_blur(x: Tensor, sigma: Tensor) -> Tensor:
    """Separable Gaussian blur with a different sigma (pixels) per sample, as one grouped conv."""
    n, c, hgt, wid = x.shape
    radius = max(1, min(int(math.ceil(3 * float(sigma.max()))), (min(hgt, wid) - 1) // 2))
    offs = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    kern = torch.exp(-0.5 * (offs[None, :] / sigma.clamp(min=1e-3)[:, None].to(x.dtype)) ** 2)
    kern = kern / kern.sum(1, keepdim=True)  # [n, k]
    kern = kern.repeat_interleave(c, 0)  # [n*c, k]
    y = x.reshape(1, n * c, hgt, wid)
    y = F.pad(y, (radius, radius, radius, radius), mode="reflect")
    y = F.conv2d(y, kern[:, None, :, None], groups=n * c)
    y = F.conv2d(y, kern[:, None, None, :], groups=n * c)
    return y.reshape(n, c, hgt, wid)


def render_crops(images: Tensor, params: CropParams, size: int, normalize: bool = True) -> Tensor:
    """Render crops [n, 3, size, size] from float images [B, 3, H, W] in [0, 1]."""
    n = len(params)
    if n == 0:
        return images.new_zeros(0, 3, size, size)
    grid = F.affine_grid(params.theta.to(images.dtype), [n, 3, size, size], align_corners=False)
    b = params.batch
    if b and b == images.shape[0] and n % b == 0:
        # all crops of an image side by side in one tall grid: no copy of the source images
        copies = n // b
        grid = grid.view(copies, b, size, size, 2).transpose(0, 1).reshape(b, copies * size, size, 2)
        x = F.grid_sample(images, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
        x = x.view(b, 3, copies, size, size).permute(2, 0, 1, 3, 4).reshape(n, 3, size, size)
    else:
        src = images.index_select(0, params.source)
        x = F.grid_sample(src, grid, mode="bilinear", padding_mode="reflection", align_corners=False)

    # colour jitter (fixed order brightness, contrast, saturation, hue), clamped like torchvision
    x = (x * params.brightness.view(n, 1, 1, 1)).clamp(0, 1)
    mean = _gray(x).mean(dim=(1, 2, 3), keepdim=True)
    x = ((x - mean) * params.contrast.view(n, 1, 1, 1) + mean).clamp(0, 1)
    gray = _gray(x)
    x = ((x - gray) * params.saturation.view(n, 1, 1, 1) + gray).clamp(0, 1)
    x = torch.einsum("nij,njhw->nihw", _hue_matrix(params.hue).to(x.dtype), x).clamp(0, 1)
    x = torch.where(params.gray.view(n, 1, 1, 1), _gray(x).expand_as(x), x)

    blur_idx = (params.blur_sigma > 0).nonzero().flatten()
    if blur_idx.numel() > 0:
        sigma = params.blur_sigma.index_select(0, blur_idx) * (size / 224.0)
        x = x.index_copy(0, blur_idx, _gaussian_blur(x.index_select(0, blur_idx), sigma))
    x = torch.where(params.solarize.view(n, 1, 1, 1) & (x >= 0.5), 1 - x, x)
    if normalize:
        mean_t = torch.tensor(IMAGENET_MEAN, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        std_t = torch.tensor(IMAGENET_STD, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        x = (x - mean_t) / std_t
    return x


def pool_to_float(pool: Tensor, indices: Tensor) -> Tensor:
    """Select images from a uint8 [N, H, W, 3] pool and convert to float [B, 3, H, W] in [0, 1]."""
    return pool.index_select(0, indices.to(pool.device)).permute(0, 3, 1, 2).float().div_(255.0)


class MultiCropAugment:
    """DINOv3 multi-crop: 2 global crops (scale 0.32-1) + N local crops (0.05-0.32) per image."""

    def __init__(self, cfg: CropConfig) -> None:
        self.cfg = cfg

    def __call__(self, images: Tensor, g: torch.Generator) -> MultiCrops:
        """images: float [B, 3, H, W] in [0, 1] on the target device."""
        cfg, dev, b = self.cfg, images.device, images.shape[0]
        gp = sample_crop_params(
            cfg,
            b,
            2,
            cfg.global_scale,
            torch.tensor(cfg.blur_p[:2]),
            torch.tensor(cfg.solarize_p[:2]),
            g,
            dev,
        )
        lp = sample_crop_params(
            cfg,
            b,
            cfg.num_local,
            cfg.local_scale,
            torch.full((cfg.num_local,), cfg.blur_p[2]),
            torch.full((cfg.num_local,), cfg.solarize_p[2]),
            g,
            dev,
        )
        globals_ = render_crops(images, gp, cfg.global_size)
        locals_ = render_crops(images, lp, cfg.local_size)
        return MultiCrops(globals_, locals_, gp, images)
