"""Feature cache: equals a direct forward, is reused from disk, and its key tracks what matters."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from explorer.heads.features_cache import cache_key, extract_features, load_masks, load_rgb
from tests.eval.tiny import tiny_backbone


@pytest.fixture(scope="module")
def backbone():
    return tiny_backbone()


def _images(tmp_path, n: int = 5) -> list:
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        p = tmp_path / f"im{i}.png"
        Image.fromarray(rng.integers(0, 255, (40 + 8 * i, 56, 3), dtype=np.uint8)).save(p)
        paths.append(p)
    return paths


def test_matches_direct_forward_and_is_reused(tmp_path, backbone, monkeypatch) -> None:
    paths = _images(tmp_path)
    fs = extract_features(backbone, paths, tmp_path, size=32, batch_size=2, cache_dir=tmp_path / "c", progress=False)
    # 5 images of 56 px wide and 40..72 px high: aspect kept at 32 px, so two input shapes -> per-image grids
    assert fs.cls.shape == (5, 32) and isinstance(fs.patches, list)
    for i in (0, 3):
        c, _, g = backbone.forward_batch(backbone.preprocess(load_rgb(paths[i]), 32))
        torch.testing.assert_close(fs.cls[i], c[0], atol=1e-5, rtol=1e-5)
        assert fs.patches[i].shape == g[0].shape
        torch.testing.assert_close(fs.patches[i].float(), g[0], atol=2e-2, rtol=1e-2)  # stored as float16
    assert fs.patches[0].shape[:2] == (1, 2) and fs.patches[3].shape[:2] == (2, 2)  # 40x56 -> 16x32; 64x56 -> 32x32

    def boom(*args, **kwargs):
        raise AssertionError("backbone re-run although the features are cached")

    monkeypatch.setattr(backbone, "forward_batch", boom)
    again = extract_features(backbone, paths, tmp_path, size=32, cache_dir=tmp_path / "c", progress=False)
    assert torch.equal(again.cls, fs.cls) and all(torch.equal(a, b) for a, b in zip(again.patches, fs.patches,
                                                                                     strict=True))
    # a CLS-only request is also served from the same files
    cls_only = extract_features(backbone, paths, tmp_path, size=32, patches=False, cache_dir=tmp_path / "c",
                                progress=False)
    assert cls_only.patches is None and torch.equal(cls_only.cls, fs.cls)


def test_key_changes_with_files_size_layer_and_backbone(tmp_path) -> None:
    paths = _images(tmp_path, 3)
    base = cache_key(paths, tmp_path, "fp", 224, 12)
    assert cache_key(paths, tmp_path, "fp", 224, 12) == base
    assert cache_key(paths[:2], tmp_path, "fp", 224, 12) != base
    assert cache_key(paths, tmp_path, "fp", 448, 12) != base
    assert cache_key(paths, tmp_path, "fp", 224, 11) != base
    assert cache_key(paths, tmp_path, "other", 224, 12) != base
    assert cache_key(paths, tmp_path, "fp", 224, 12, pixels="another recipe") != base
    Image.fromarray(np.zeros((9, 9, 3), np.uint8)).save(paths[0])  # edited image: new size on disk
    assert cache_key(paths, tmp_path, "fp", 224, 12) != base


def test_size_must_be_a_multiple_of_the_patch(tmp_path, backbone) -> None:
    with pytest.raises(ValueError):
        extract_features(backbone, _images(tmp_path, 1), tmp_path, size=40, cache_dir=tmp_path, progress=False)


def test_load_masks_keeps_class_ids_and_void(tmp_path) -> None:
    m = np.zeros((8, 8), np.uint8)
    m[:4, :4] = 3
    m[:, 7] = 255
    im = Image.fromarray(m, mode="P")
    im.putpalette([0, 0, 0, 255, 0, 0] * 128)
    im.save(tmp_path / "m.png")
    out = load_masks([tmp_path / "m.png"], 4)[0].numpy()
    assert out.shape == (4, 4)
    assert set(np.unique(out)) <= {0, 3, 255}
    assert out[0, 0] == 3 and out[3, 3] == 255 and out[3, 0] == 0


def test_cls_only_request_keeps_small_grids_for_later(tmp_path, backbone, monkeypatch) -> None:
    paths = _images(tmp_path, 3)
    first = extract_features(backbone, paths, tmp_path, size=32, patches=False, cache_dir=tmp_path / "c",
                             progress=False)
    assert first.patches is None
    monkeypatch.setattr(backbone, "forward_batch", lambda *a, **k: (_ for _ in ()).throw(AssertionError("re-run")))
    grids = extract_features(backbone, paths, tmp_path, size=32, patches=True, cache_dir=tmp_path / "c",
                             progress=False)
    assert [tuple(g.shape) for g in grids.patches] == [(1, 2, 32), (2, 2, 32), (2, 2, 32)]  # 40/48/56 x 56 px


def test_square_images_give_one_batchable_tensor(tmp_path, backbone) -> None:
    rng = np.random.default_rng(1)
    paths = []
    for i in range(3):
        p = tmp_path / f"sq{i}.png"
        Image.fromarray(rng.integers(0, 255, (48, 48, 3), dtype=np.uint8)).save(p)
        paths.append(p)
    fs = extract_features(backbone, paths, tmp_path, size=32, cache_dir=tmp_path / "c", progress=False)
    assert isinstance(fs.patches, torch.Tensor) and fs.patches.shape == (3, 2, 2, 32)
    _, _, g = backbone.forward_batch(backbone.preprocess_many([load_rgb(p) for p in paths], 32))
    torch.testing.assert_close(fs.patches.float(), g, atol=2e-2, rtol=1e-2)
