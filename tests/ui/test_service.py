"""ExplorerService in-process: the allow-list choke point, per-model layer ranges, byte budgets,
single-flight forwards, uploads that outlive their temp file, and locks that let τ pass a k-means."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import explorer.ui.service as service_module
from explorer.backbone import Backbone, MemoryBudget, nbytes
from explorer.backbone.cache import MB
from explorer.ui.layout import features_view
from explorer.ui.policy import ModelPolicy
from explorer.ui.service import ExplorerService, UserError, check_size
from tests.conftest import make_tiny_model

ALLOWED = ("tiny", "bundled")


@pytest.fixture(scope="module")
def shallow() -> Backbone:
    return Backbone.from_model(make_tiny_model(seed=0), "tiny-2-layers")


@pytest.fixture(scope="module")
def deep() -> Backbone:
    return Backbone.from_model(make_tiny_model(seed=1, num_hidden_layers=4), "tiny-4-layers")


@pytest.fixture()
def svc(shallow: Backbone, deep: Backbone) -> ExplorerService:
    return ExplorerService("tiny", preloaded={"tiny": shallow, "deep": deep})


def picture(path: Path, seed: int, hw: tuple[int, int] = (96, 160)) -> Path:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (*hw, 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture()
def loads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every source the service tries to load (nothing should reach the loader when refused)."""
    calls: list[str] = []

    def fake_load_source(source: str, device=None):
        calls.append(source)
        raise service_module.SourceUnavailable(f"'{source}' is not available in this test.")

    monkeypatch.setattr(service_module, "load_source", fake_load_source)
    monkeypatch.setattr(service_module, "load_backbone", lambda s, device=None: fake_load_source(s))
    return calls


# ------------------------------------------------------------ public mode: the allow-list choke point
@pytest.mark.parametrize("source", ["/etc", "/no/such/folder", "../pretrained/dinov3-explorer-tiny", "~/models",
                                    "facebook/dinov3-vit7b16-pretrain-lvd1689m", "timm:vit_7b_patch16_dinov3",
                                    "https://example.com/model"])
def test_public_refuses_off_list_sources_before_loading(shallow: Backbone, loads: list[str], source: str,
                                                        tmp_path: Path) -> None:
    svc = ExplorerService("tiny", preloaded={"tiny": shallow}, policy=ModelPolicy(True, ALLOWED))
    result = svc.load_model(source)
    assert result.backbone is None and "is not on this server's allow-list" in result.message
    assert loads == []  # nothing was read, loaded or downloaded
    with pytest.raises(UserError, match="allow-list"):
        svc.prepare(str(picture(tmp_path / "a.png", 0)), source, 448, None)
    assert loads == [] and len(svc.images) == 0  # refused before the upload was even decoded


def test_public_message_never_tells_whether_a_path_exists(shallow: Backbone, tmp_path: Path, loads: list[str]) -> None:
    svc = ExplorerService("tiny", preloaded={"tiny": shallow}, policy=ModelPolicy(True, ALLOWED))
    real = tmp_path / "model"
    real.mkdir()
    (real / "config.json").write_text("{}")
    there, missing = svc.load_model(str(real)).message, svc.load_model(str(tmp_path / "nothing")).message
    assert there == missing and str(tmp_path) not in there


def test_public_allows_listed_sources(shallow: Backbone, loads: list[str]) -> None:
    svc = ExplorerService("tiny", preloaded={"tiny": shallow}, policy=ModelPolicy(True, ALLOWED))
    assert svc.load_model("tiny").backbone is shallow
    result = svc.load_model("bundled")  # listed: the loader is asked (and here it fails, falling back)
    assert loads == ["bundled"] and "allow-list" not in result.message
    assert result.backbone is shallow and result.fell_back


def test_public_failure_messages_hide_server_paths(shallow: Backbone, monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(source: str, device=None):
        raise service_module.SourceUnavailable("The bundled model is missing from '/srv/app/pretrained/x'.")

    monkeypatch.setattr(service_module, "load_source", fail)
    svc = ExplorerService("tiny", preloaded={"tiny": shallow}, policy=ModelPolicy(True, ALLOWED))
    assert "/srv" not in svc.load_model("bundled").message
    local = ExplorerService("tiny", preloaded={"tiny": shallow})
    assert "/srv/app/pretrained/x" in local.load_model("bundled").message  # locally, the owner sees it


def test_local_mode_still_loads_any_source(shallow: Backbone, loads: list[str]) -> None:
    svc = ExplorerService("tiny", preloaded={"tiny": shallow})
    svc.load_model("/some/folder")
    assert loads == ["/some/folder"]


# ------------------------------------------------------------ layers and sizes follow the model asked for
def test_every_layer_of_the_model_named(svc: ExplorerService, tmp_path: Path, deep: Backbone) -> None:
    path = str(picture(tmp_path / "a.png", 1))
    for layer in (1, 2, 3, 4):
        assert svc.prepare(path, "deep", 224, layer).features.layer == layer
    assert svc.prepare(path, "deep", 224, -1).features.layer == 4
    assert svc.prepare(path, "deep", 224, None).features.layer == 4
    assert svc.prepare(path, "tiny", 224, None).features.layer == 2
    with pytest.raises(UserError, match=r"Layer 3 is out of range for tiny-2-layers, which has 2 layers"):
        svc.prepare(path, "tiny", 224, 3)
    for bad in (0, 5, -5, 2.5):
        with pytest.raises(UserError, match="out of range"):
            svc.prepare(path, "deep", 224, bad)


def test_sizes_out_of_range_are_refused_not_clamped(svc: ExplorerService, tmp_path: Path) -> None:
    path = str(picture(tmp_path / "a.png", 1))
    with pytest.raises(UserError, match="Resolution 1000 px is out of range"):
        svc.prepare(path, "tiny", 1000, None)
    assert check_size(230) == 224 and check_size(None) == 448
    status, summary, key = features_view(svc, path, "deep", 100, 4)
    assert "out of range" in summary["error"] and key == ""


# ------------------------------------------------------------ memory: bytes, not entries
def test_views_store_is_bounded_in_bytes_and_keeps_serving(shallow: Backbone, tmp_path: Path) -> None:
    svc = ExplorerService("tiny", preloaded={"tiny": shallow}, budget=MemoryBudget(1 * MB))
    held = svc.prepare(str(picture(tmp_path / "0.png", 0)), "tiny", 224, None)
    held.view.graph()
    for i in range(1, 25):  # a flood of distinct uploads, far over 1 MB of images and views
        p = svc.prepare(str(picture(tmp_path / f"{i}.png", i)), "tiny", 224, None)
        p.view.tokencut(0.2)
        assert svc.budget.used - svc._pinned.bytes <= 1 * MB
    assert svc.forwards == 25 and len(svc.views) < 25
    # The first request's view was evicted long ago; what it holds is still whole.
    assert held.view.tokencut(0.3).mask.shape == held.view.grid


def test_a_grown_view_is_remeasured(svc: ExplorerService, tmp_path: Path) -> None:
    p = svc.prepare(str(picture(tmp_path / "a.png", 2)), "tiny", 448, None)
    key = next(iter(svc.views._items))
    before = svc.views._meta[key][0]
    graph = p.view.graph()
    assert svc.views._meta[key][0] >= before + graph.affinity.nbytes
    assert svc.views._meta[key][0] == nbytes(p.view)


def test_a_loaded_model_counts(svc: ExplorerService, shallow: Backbone, deep: Backbone) -> None:
    weights = sum(t.numel() * t.element_size() for t in [*shallow.model.parameters(), *shallow.model.buffers()])
    weights += sum(t.numel() * t.element_size() for t in [*deep.model.parameters(), *deep.model.buffers()])
    assert svc._pinned.bytes == weights and svc.budget.used >= weights


# ------------------------------------------------------------ concurrency
def test_two_requests_for_a_new_image_share_one_forward(svc: ExplorerService, shallow: Backbone,
                                                        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = str(picture(tmp_path / "a.png", 3))
    calls = []
    real = shallow.forward_batch

    def slow(*args, **kwargs):
        calls.append(1)
        time.sleep(0.3)  # the second request arrives while the first forward runs
        return real(*args, **kwargs)

    monkeypatch.setattr(shallow, "forward_batch", slow)
    out: list = []
    threads = [threading.Thread(target=lambda: out.append(svc.prepare(path, "tiny", 448, None))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(out) == 4 and len(calls) == 1 and svc.forwards == 1
    assert all(p.view is out[0].view for p in out)


def test_upload_deleted_by_the_cache_sweep_still_answers(svc: ExplorerService, tmp_path: Path) -> None:
    path = picture(tmp_path / "upload.png", 4)
    first = svc.prepare(str(path), "tiny", 448, None)
    path.unlink()  # Gradio's delete_cache removed the temp file; later events still send its path
    assert svc.prepare(str(path), "tiny", 448, None).view is first.view
    assert svc.prepare(str(path), "tiny", 224, None).features.grid != first.features.grid
    gone = tmp_path / "never-decoded.png"
    with pytest.raises(UserError, match="upload the image again"):
        svc.prepare(str(gone), "tiny", 448, None)


def test_a_replaced_file_at_one_path_is_a_new_image(svc: ExplorerService, tmp_path: Path) -> None:
    path = tmp_path / "same-name.png"
    a = svc.prepare(str(picture(path, 5)), "tiny", 448, None)
    time.sleep(0.01)
    b = svc.prepare(str(picture(path, 6, (64, 64))), "tiny", 448, None)
    assert a.entry.key != b.entry.key and b.entry.image_hw == (64, 64)


def test_image_sizes_are_height_width(svc: ExplorerService, tmp_path: Path) -> None:
    p = svc.prepare(str(picture(tmp_path / "a.png", 7, (96, 160))), "tiny", 448, None)
    assert p.entry.image_hw == (96, 160) == p.features.image_size
    assert p.entry.display_hw == (p.entry.display.shape[0], p.entry.display.shape[1])
    assert p.entry.display_wh == p.entry.display_hw[::-1]


def test_a_tau_move_does_not_wait_behind_a_gram_ordering(svc: ExplorerService, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    view = svc.prepare(str(picture(tmp_path / "a.png", 8)), "tiny", 448, None).view
    ordering, release = threading.Event(), threading.Event()

    def blocked_order(patches, method):
        ordering.set()
        release.wait(20)
        return np.arange(patches.shape[0] * patches.shape[1])

    monkeypatch.setattr(service_module, "gram_order", blocked_order)
    worker = threading.Thread(target=view.order, args=("kmeans",))
    worker.start()
    assert ordering.wait(10)
    try:
        cut = view.tokencut(0.2)  # would deadlock-wait for 20 s under one lock per view
        assert not release.is_set() and cut.mask.shape == view.grid
    finally:
        release.set()
        worker.join(20)


def test_stats_report_forwards_and_memory(svc: ExplorerService, tmp_path: Path) -> None:
    path = str(picture(tmp_path / "a.png", 9))
    for size, layer in ((448, None), (448, 1), (224, None), (448, None)):
        svc.prepare(path, "tiny", size, layer)
    stats = svc.stats()
    assert stats["forwards"] == 3 and stats["memory"]["stores"]["features"]["entries"] == 3


def test_a_failing_source_falls_back_while_the_start_model_loads(shallow: Backbone,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The fallback joins the start model's load instead of waiting for it under the load lock."""
    def slow_fail(source: str, device=None):
        time.sleep(0.3)  # the start model's background load begins meanwhile
        raise service_module.SourceUnavailable(f"'{source}' is not available in this test.")

    def start_model(source: str, device=None):
        return service_module.LoadResult(shallow, "Loaded tiny.", False, source)

    monkeypatch.setattr(service_module, "load_source", slow_fail)
    monkeypatch.setattr(service_module, "load_backbone", start_model)
    svc = ExplorerService("tiny")
    got: list = []
    worker = threading.Thread(target=lambda: got.append(svc.load_model("elsewhere/model")))
    worker.start()
    time.sleep(0.1)
    svc.load_in_background()
    worker.join(20)
    assert got and got[0].backbone is shallow and got[0].fell_back and "Fell back to tiny-2-layers" in got[0].message


def test_pairwise_views_refuse_grids_past_the_largest_vit_grid() -> None:
    """A ConvNeXt stage-1 grid (112×112 at 448 px) would need 600 MB per P×P matrix: refused with a message."""
    import torch

    from explorer.backbone import Features
    from explorer.ui.service import MAX_PAIRWISE_CELLS, FeatureView, UserError

    largest = FeatureView(Features.from_grid(torch.randn(56, 56, 4)))
    assert largest.grid[0] * largest.grid[1] == MAX_PAIRWISE_CELLS
    largest.pairwise_ok("TokenCut")  # the 896-px ViT grid is served
    finer = FeatureView(Features.from_grid(torch.randn(57, 56, 4)))
    for build in (finer.graph, finer.gram, lambda: finer.order("pca")):
        with pytest.raises(UserError, match="57×56 = 3192 grid cells"):
            build()
