"""The app in-process: offline start without a model, one forward per image, bad uploads."""

from __future__ import annotations

import io
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
from PIL import Image

from explorer.ui import gram, pca, similarity, tokencut
from explorer.ui.layout import build_app, features_view
from explorer.ui.service import ExplorerService, clamp_size


@pytest.fixture()
def svc(tiny_backbone) -> ExplorerService:
    return ExplorerService("tiny", preloaded={"tiny": tiny_backbone})


@pytest.fixture()
def picture(tmp_path: Path) -> Path:
    rng = np.random.default_rng(3)
    p = tmp_path / "pic.png"
    Image.fromarray(rng.integers(0, 255, (96, 160, 3), dtype=np.uint8)).save(p)
    return p


def test_offline_start_without_any_backbone(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import explorer.backbone.sources as sources

    monkeypatch.setattr(sources, "BUNDLED_DIR", tmp_path / "missing-bundled-model")
    svc = ExplorerService("bundled")
    demo = build_app(svc, "bundled")
    assert isinstance(demo, gr.Blocks)
    status, summary, key = features_view(svc, None, "bundled", 448, 12)
    assert "No backbone loaded" in status and "HF_TOKEN" in status and key == ""
    status, summary, key = features_view(svc, str(tmp_path), "bundled", 448, 12)
    assert "No backbone loaded" in status


def test_every_view_reuses_one_forward(svc: ExplorerService, picture: Path, tiny_backbone, monkeypatch) -> None:
    calls = []
    real = tiny_backbone.forward_batch
    monkeypatch.setattr(tiny_backbone, "forward_batch", lambda *a, **k: calls.append(1) or real(*a, **k))
    tiny_backbone.cache._items.clear()
    args = (str(picture), "tiny", 448, 2)
    features_view(svc, *args)
    for tau in (0.1, 0.2, 0.35, 0.5):
        tokencut.tokencut_view(svc, *args, tau)
    for x, y in ((5, 5), (80, 40), (159, 95)):
        similarity.similarity_view(svc, *args, x, y)
    pca.pca_view(svc, *args, True, 0.2)
    gram.gram_view(svc, *args, "pca", 7)
    tokencut.tokencut_sweep_view(svc, *args)
    assert len(calls) == 1


def test_other_layer_and_size_are_new_forwards(svc: ExplorerService, picture: Path, tiny_backbone) -> None:
    tiny_backbone.cache._items.clear()
    a = svc.prepare(str(picture), "tiny", 448, 2)
    b = svc.prepare(str(picture), "tiny", 448, 1)
    c = svc.prepare(str(picture), "tiny", 224, 2)
    assert a.features.layer == 2 and b.features.layer == 1
    assert c.features.grid != a.features.grid
    assert svc.prepare(str(picture), "tiny", 448, 2).view is a.view


@pytest.mark.parametrize(
    "payload,message",
    [
        (b"", "empty"),
        (b"GIF89a not really", "not an image"),
        (None, "too small"),  # filled in below: a 1×1 PNG
    ],
)
def test_bad_uploads_give_messages_and_service_keeps_working(
    svc: ExplorerService, picture: Path, tmp_path: Path, payload: bytes | None, message: str
) -> None:
    bad = tmp_path / "bad.png"
    if payload is None:
        buf = io.BytesIO()
        Image.new("RGB", (1, 1)).save(buf, format="PNG")
        payload = buf.getvalue()
    bad.write_bytes(payload)
    status, summary, key = features_view(svc, str(bad), "tiny", 448, 2)
    assert message in status and key == "" and message in summary["error"]
    status, summary, key = features_view(svc, str(picture), "tiny", 448, 2)
    assert key and summary["grid"] == [17, 28]


def test_clicks_in_display_pixels_map_to_upload_pixels(svc: ExplorerService, tmp_path: Path) -> None:
    big = tmp_path / "big.png"
    Image.new("RGB", (1280, 640), (90, 90, 90)).save(big)  # displayed at 640×320
    p = svc.prepare(str(big), "tiny", 448, 2)
    assert p.entry.display_wh == (640, 320)
    assert p.to_original(320, 160) == (640, 320)
    assert p.patch_at(*p.to_original(639, 319)) == (p.view.grid[0] - 1, p.view.grid[1] - 1)


def test_clamp_size() -> None:
    assert clamp_size(100) == 224 and clamp_size(5000) == 896 and clamp_size(450) == 448 and clamp_size(None) == 448


def test_tau_table_fills_every_slider_value(svc: ExplorerService, picture: Path) -> None:
    from explorer.ui.tau_table import TAU_GRID, warm_tokencut

    view = svc.prepare(str(picture), "tiny", 448, 2).view
    solved = warm_tokencut(svc, view, 0.2).result(timeout=120)
    assert solved == len(TAU_GRID) and all(view.has_tokencut(t) for t in TAU_GRID)
    direct = view.graph().solve(0.37)
    np.testing.assert_array_equal(view.tokencut(0.37).mask, direct.mask)
