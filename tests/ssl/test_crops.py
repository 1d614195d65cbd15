"""Batched multi-crop: shapes, scale ranges, geometry against the sampled parameters, photometrics."""

from __future__ import annotations

import dataclasses

import torch

from explorer.ssl.config import CropConfig
from explorer.ssl.crops import MultiCropAugment, _hue_matrix, pool_to_float, render_crops, sample_crop_params


def _ramp_images(batch: int, size: int) -> torch.Tensor:
    """R = x coordinate, G = y coordinate (pixel centres, in [0, 1]), B = 0.5."""
    coords = (torch.arange(size) + 0.5) / size
    img = torch.zeros(batch, 3, size, size)
    img[:, 0] = coords.view(1, 1, size)
    img[:, 1] = coords.view(1, size, 1)
    img[:, 2] = 0.5
    return img


def test_shapes_and_scale_ranges() -> None:
    cfg = CropConfig(global_size=32, local_size=16, num_local=3)
    pool = torch.randint(0, 256, (10, 40, 40, 3), dtype=torch.uint8)
    images = pool_to_float(pool, torch.tensor([0, 3, 5, 7]))
    assert images.shape == (4, 3, 40, 40) and images.max() <= 1.0
    crops = MultiCropAugment(cfg)(images, torch.Generator().manual_seed(0))
    assert crops.globals_.shape == (8, 3, 32, 32)
    assert crops.locals_.shape == (12, 3, 16, 16)
    # crop-major order: crop c of image b is row c * B + b
    assert crops.global_params.source.tolist() == [0, 1, 2, 3, 0, 1, 2, 3]
    g = torch.Generator().manual_seed(1)
    for rng, copies in ((cfg.global_scale, 2), (cfg.local_scale, cfg.num_local)):
        p = sample_crop_params(cfg, 500, copies, rng, torch.ones(copies), torch.zeros(copies), g, torch.device("cpu"))
        assert p.scale.min() >= rng[0] and p.scale.max() <= rng[1]
        assert p.scale.max() - p.scale.min() > 0.8 * (rng[1] - rng[0])  # the range is used
        # covered area fraction = (half extents) w * h, equal to the scale; aspect within [3/4, 4/3]
        w, h = p.theta[:, 0, 0].abs(), p.theta[:, 1, 1]
        assert torch.allclose(w * h, p.scale, atol=1e-5)
        assert torch.all(w / h >= cfg.ratio[0] - 1e-4) and torch.all(w / h <= cfg.ratio[1] + 1e-4)
        assert torch.all(w <= 1) and torch.all(h <= 1)


def test_geometry_follows_parameters() -> None:
    cfg = dataclasses.replace(CropConfig(), jitter_p=0.0, grayscale_p=0.0, blur_p=(0.0, 0.0, 0.0),
                              solarize_p=(0.0, 0.0, 0.0), flip_p=0.5)
    images = _ramp_images(64, 64)
    p = sample_crop_params(cfg, 64, 1, (0.1, 0.9), torch.zeros(1), torch.zeros(1),
                           torch.Generator().manual_seed(2), torch.device("cpu"))
    out = render_crops(images, p, 32, normalize=False)
    w, cx = p.theta[:, 0, 0], p.theta[:, 0, 2]
    h, cy = p.theta[:, 1, 1], p.theta[:, 1, 2]
    # crop centre in [0, 1] image coordinates and horizontal extent (sign = flip)
    assert torch.allclose(out[:, 0].mean(dim=(1, 2)), (cx + 1) / 2, atol=1e-3)
    assert torch.allclose(out[:, 1].mean(dim=(1, 2)), (cy + 1) / 2, atol=1e-3)
    span_x = out[:, 0, :, -1].mean(1) - out[:, 0, :, 0].mean(1)  # right column minus left column
    assert torch.allclose(span_x, w * (31 / 32), atol=1e-3)
    span_y = out[:, 1, -1, :].mean(1) - out[:, 1, 0, :].mean(1)
    assert torch.allclose(span_y, h * (31 / 32), atol=1e-3)
    assert (w < 0).any() and (w > 0).any()  # both flipped and unflipped crops occur


def test_photometric_ops() -> None:
    cfg = CropConfig()
    images = torch.rand(4, 3, 24, 24, generator=torch.Generator().manual_seed(3))
    p = sample_crop_params(cfg, 4, 1, (1.0, 1.0), torch.zeros(1), torch.zeros(1),
                           torch.Generator().manual_seed(4), torch.device("cpu"))
    # identity crop without photometric changes reproduces the image
    p.theta[:, 0, 0] = 1.0
    for name in ("brightness", "contrast", "saturation"):
        getattr(p, name).fill_(1.0)
    p.hue.zero_()
    p.gray.zero_()
    p.solarize.zero_()
    assert torch.allclose(render_crops(images, p, 24, normalize=False), images, atol=1e-5)
    assert torch.allclose(_hue_matrix(torch.zeros(2)), torch.eye(3).expand(2, 3, 3), atol=1e-5)
    # solarize inverts pixels above 0.5 only
    p.solarize.fill_(True)
    sol = render_crops(images, p, 24, normalize=False)
    assert torch.allclose(sol, torch.where(images >= 0.5, 1 - images, images), atol=1e-5)
    # grayscale makes the channels equal
    p.solarize.zero_()
    p.gray.fill_(True)
    gray = render_crops(images, p, 24, normalize=False)
    assert torch.allclose(gray[:, 0], gray[:, 1]) and torch.allclose(gray[:, 1], gray[:, 2])
    # blur keeps the mean (up to borders) and lowers the variance
    p.gray.zero_()
    p.blur_sigma.fill_(2.0 * 224 / 24)  # sigma is given for a 224-px crop: 2 px at 24 px
    blur = render_crops(images, p, 24, normalize=False)
    assert blur.var() < 0.5 * images.var()
    assert abs(blur.mean() - images.mean()) < 0.02


def test_same_params_render_at_two_resolutions() -> None:
    """The Gram teacher sees the same crops at 2x resolution: downsampling 2x gives back the 1x crop."""
    cfg = dataclasses.replace(CropConfig(), blur_p=(0.0, 0.0, 0.0))
    images = torch.nn.functional.interpolate(torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(5)),
                                             size=(64, 64), mode="bilinear", align_corners=False)
    crops = MultiCropAugment(dataclasses.replace(cfg, global_size=16, num_local=0))(images, torch.Generator().manual_seed(6))
    hi = render_crops(images, crops.global_params, 32)
    down = torch.nn.functional.avg_pool2d(hi, 2)
    assert (down - crops.globals_).abs().mean() < 0.05 * crops.globals_.abs().mean()
