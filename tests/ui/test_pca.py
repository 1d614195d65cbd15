"""The PCA view's foreground: the TokenCut mask, or the taught two-class segmentation (DINOv3's PCA notebook)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from explorer.analysis import pca_rgb
from explorer.heads.taught import foreground_mask
from explorer.ui.classification import TeachSession, taught_head
from explorer.ui.pca import MASK_SOURCES, pca_view
from explorer.ui.service import ExplorerService


@pytest.fixture(scope="module")
def picture(tmp_path_factory: pytest.TempPathFactory) -> str:
    rng = np.random.default_rng(0)
    img = (rng.integers(60, 120, (128, 192, 3))).astype(np.uint8)
    img[32:96, 64:160] = (230, 40, 40)
    path = tmp_path_factory.mktemp("pca") / "scene.png"
    Image.fromarray(img).save(path)
    return str(path)


def test_taught_foreground_is_the_mask_the_pca_is_fitted_on(tiny_backbone, picture: str) -> None:
    svc = ExplorerService("tiny", preloaded={"tiny": tiny_backbone})
    p = svc.prepare(picture, "tiny", 224, None)
    session = TeachSession()
    h, w = p.view.grid
    centre, corner = (h // 2) * w + w // 2, 0
    session.seg.add_mark(p.entry.key, p.features, np.array([centre]), "object")
    session.seg.add_mark(p.entry.key, p.features, np.array([corner]), "background")
    head = taught_head(session, "segmentation", p.backbone)
    expected = foreground_mask(head, p.features)
    assert expected is not None and 2 <= expected.sum() < expected.size  # a real split, not all one class

    shown, note = pca_view(svc, picture, "tiny", 224, None, True, 0.2, MASK_SOURCES[1], session)
    reference = pca_rgb(p.view.patches, expected)  # independent: the library's PCA on the head's own mask
    assert "taught segmentation" in note and f"{int(expected.sum())} foreground" in note
    from explorer import viz
    assert np.array_equal(shown, viz.grid_image(reference, p.entry.display_wh, smooth=False))


def test_without_a_taught_head_the_tokencut_mask_is_used_and_said(tiny_backbone, picture: str) -> None:
    svc = ExplorerService("tiny", preloaded={"tiny": tiny_backbone})
    shown, note = pca_view(svc, picture, "tiny", 224, None, True, 0.2, MASK_SOURCES[1], TeachSession())
    p = svc.prepare(picture, "tiny", 224, None)
    assert "Nothing taught yet" in note and "TokenCut mask" in note
    from explorer import viz
    expected = viz.grid_image(pca_rgb(p.view.patches, p.view.tokencut(0.2).mask), p.entry.display_wh, smooth=False)
    assert np.array_equal(shown, expected)
