"""Detection / Segmentation / Classification tabs on tiny heads trained for a tiny random backbone.

The heads are trained here with the heads' own train functions on a few random patch grids and
saved in a temporary heads root (``ExplorerService(heads_dir=...)``); the view functions are the
exact functions the Gradio events (and api_names) call.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from explorer.backbone import Backbone
from explorer.heads import detection as det
from explorer.heads import segmentation as seg
from explorer.heads.io import default_heads_dir, make_card, train_command
from explorer.heads.probe import save_probe, topk, train_probe
from explorer.ui.classification import classification_view
from explorer.ui.detection import MIN_THRESHOLD, detection_view
from explorer.ui.segmentation import segmentation_view
from explorer.ui.service import ExplorerService
from explorer.viz import class_palette
from tests.conftest import make_tiny_model

MODEL_ID = "tiny-heads-test"
UPLOAD = (576, 448)  # (W, H): inside the display range, so display size == upload size
PROBE_CLASSES = [f"class{i}" for i in range(8)]
SEG_CLASSES = ["background", "disc", "square"]
DET_CLASSES = ["disc", "square"]


@pytest.fixture(scope="module")
def backbone() -> Backbone:
    return Backbone.from_model(make_tiny_model(seed=0), MODEL_ID)


@pytest.fixture(scope="module")
def heads_root(tmp_path_factory: pytest.TempPathFactory, backbone: Backbone) -> Path:
    """probe + segmentation + detection heads for `backbone`, trained on random 4x4 grids (d = 32)."""
    root = tmp_path_factory.mktemp("heads")
    out = default_heads_dir(MODEL_ID, root)
    g = torch.Generator().manual_seed(0)
    d = backbone.hidden_size
    rng = np.random.default_rng(0)

    probe = train_probe(rng.normal(size=(40, d)), np.arange(40) % 8, PROBE_CLASSES, max_iter=200)
    probe.card = make_card("probe", backbone, PROBE_CLASSES, 224, layer=backbone.num_layers)
    save_probe(probe, out)

    head = seg.new_head("linear", d, SEG_CLASSES)
    grids = torch.randn(6, 4, 4, d, generator=g)
    masks = torch.from_numpy(rng.integers(0, 3, (6, 64, 64)).astype(np.uint8))
    seg.train_segmentation(head, grids, masks, epochs=2, batch_size=3)
    head.card = make_card("segmentation", backbone, SEG_CLASSES, 224, layer=backbone.num_layers)
    seg.save_segmentation(head, out)

    targets = [{"boxes": np.array([[8.0, 8.0, 40.0, 40.0]], np.float32), "labels": np.array([i % 2])}
               for i in range(8)]
    dhead = det.train_detection(torch.randn(8, 4, 4, d, generator=g), targets, kind="dense",
                                class_names=DET_CLASSES, input_size=(64, 64), epochs=3, batch_size=4,
                                config={"hidden": 16}, device="cpu", progress=False)
    # A random few-step head scores everything near its prior; spread the class biases so the
    # threshold slider has boxes on both sides of a cut (the test is about the tab, not the head).
    with torch.no_grad():
        dhead.model.cls_out.bias.copy_(torch.tensor([2.0, 0.0]))
    det.save(dhead, out, backbone)
    return root


@pytest.fixture()
def svc(backbone: Backbone, heads_root: Path) -> ExplorerService:
    other = Backbone.from_model(make_tiny_model(seed=1), MODEL_ID)  # same id, other weights
    bare = Backbone.from_model(make_tiny_model(seed=0), "no-heads-model")
    return ExplorerService("tiny", preloaded={"tiny": backbone, "other": other, "bare": bare}, heads_dir=heads_root)


@pytest.fixture()
def upload(tmp_path: Path, request: pytest.FixtureRequest) -> Path:
    """A fresh random picture per test, so each test's first view really runs the backbone."""
    rng = np.random.default_rng(abs(hash(request.node.name)) % 2**32)
    img = rng.integers(0, 255, (UPLOAD[1], UPLOAD[0], 3), dtype=np.uint8)
    path = tmp_path / "upload.png"
    Image.fromarray(img).save(path)
    return path


@pytest.fixture()
def forwards(backbone: Backbone):
    """Counts backbone forward passes (a pre-hook on the wrapped transformers model)."""
    calls = []
    handle = backbone.model.register_forward_pre_hook(lambda *_: calls.append(1))
    yield calls
    handle.remove()


def test_classify_top5_matches_the_probe(svc: ExplorerService, upload: Path, backbone: Backbone) -> None:
    label, note = classification_view(svc, str(upload), "tiny", 448, 1)
    probs = list(label.values())
    assert len(label) == 5 and set(label) <= set(PROBE_CLASSES)
    assert probs == sorted(probs, reverse=True) and sum(probs) <= 1 + 1e-9 and min(probs) > 0
    # Reference: the probe on the head's own features (card size 224, last layer), not the sliders'.
    from explorer.heads.probe import load_probe
    head = load_probe(default_heads_dir(MODEL_ID, svc.heads_dir), backbone)
    feats = backbone.extract(svc.image(str(upload)).image, 224, backbone.num_layers)
    ref = topk(head, feats, 5)
    assert list(label) == [name for name, _ in ref]
    assert probs == pytest.approx([p for _, p in ref])
    assert "224" in note and f"layer {backbone.num_layers}/" in note


def test_segment_overlay_legend_and_opacity(svc: ExplorerService, upload: Path, backbone: Backbone,
                                            forwards: list) -> None:
    over, legend, note = segmentation_view(svc, str(upload), "tiny", 448, 2, 0.5)
    assert over.shape == (UPLOAD[1], UPLOAD[0], 3)
    assert "seg-legend" in legend and any(name in legend for name in SEG_CLASSES)
    n_fwd = len(forwards)
    assert n_fwd == 1  # one forward at the head's size; everything after is cached
    # Reference class map: the head on the same features, at display size.
    head = seg.load_segmentation(default_heads_dir(MODEL_ID, svc.heads_dir), backbone)
    feats = backbone.extract(svc.image(str(upload)).image, 224, backbone.num_layers)
    classes = seg.predict(head, feats.patches, (UPLOAD[1], UPLOAD[0]))
    base = svc.image(str(upload)).display.astype(int)
    assert np.array_equal(over[classes == 0], base[classes == 0].astype(np.uint8))  # background untouched
    fg = classes > 0
    assert fg.any()
    want = np.rint(0.5 * class_palette(3)[classes[fg]] + 0.5 * base[fg])
    assert np.abs(over[fg].astype(int) - want).max() <= 1
    # Opacity 0 shows the image; 1 shows pure class colours. No forward for either.
    zero, _, _ = segmentation_view(svc, str(upload), "tiny", 448, 2, 0.0)
    full, _, _ = segmentation_view(svc, str(upload), "tiny", 448, 2, 1.0)
    assert np.array_equal(zero, base.astype(np.uint8))
    assert np.array_equal(full[fg], class_palette(3)[classes[fg]])
    assert len(forwards) == n_fwd


def test_detect_boxes_inside_and_threshold_needs_no_forward(svc: ExplorerService, upload: Path,
                                                            backbone: Backbone, forwards: list) -> None:
    _, _, low = detection_view(svc, str(upload), "tiny", 448, 2, MIN_THRESHOLD)
    assert len(forwards) == 1
    assert low, "the biased tiny head should give boxes at the lowest threshold"
    for d in low:
        x0, y0, x1, y1 = d["box_xyxy"]
        assert 0 <= x0 <= x1 <= UPLOAD[0] and 0 <= y0 <= y1 <= UPLOAD[1]
        assert d["label"] in DET_CLASSES and d["score"] >= MIN_THRESHOLD
    scores = [d["score"] for d in low]
    assert scores == sorted(scores, reverse=True)  # best first
    cut = float(np.median(scores)) + 1e-4
    img_hi, text, high = detection_view(svc, str(upload), "tiny", 448, 2, cut)
    assert 0 < len(low) - len(high) and all(d["score"] >= cut for d in high)
    assert f"{len(high)} object" in text or (not high and "No object" in text)
    assert img_hi.shape == (UPLOAD[1], UPLOAD[0], 3)
    assert len(forwards) == 1  # the slider only filtered and redrew
    # Reference: the head itself at that threshold gives the same number of boxes.
    head = det.load_detection(default_heads_dir(MODEL_ID, svc.heads_dir), backbone)
    feats = backbone.extract(svc.image(str(upload)).image, 224, backbone.num_layers)
    ref = det.predict(head, feats.patches, feats.input_size, score_threshold=cut)[0]
    assert len(ref["scores"]) == len(high)


@pytest.mark.parametrize("view,kind", [(classification_view, "probe"), (segmentation_view, "segmentation"),
                                       (detection_view, "detection")])
def test_no_heads_shows_the_train_command(svc: ExplorerService, upload: Path, view, kind: str) -> None:
    args = (svc, str(upload), "bare", 448, 2) + ((0.5,) if view is not classification_view else ())
    out = view(*args)
    text = out[1] if view is classification_view else (out[2] if view is segmentation_view else out[1])
    assert train_command(kind, "no-heads-model") in text and "No " in text


@pytest.mark.parametrize("view", [classification_view, segmentation_view, detection_view])
def test_mismatched_head_is_refused(svc: ExplorerService, upload: Path, view) -> None:
    args = (svc, str(upload), "other", 448, 2) + ((0.5,) if view is not classification_view else ())
    out = view(*args)
    text = out[1] if view is not segmentation_view else out[2]
    assert "trained for another backbone" in text and "fingerprint" in text
    assert "Traceback" not in text
    if view is classification_view:
        assert out[0] == {}
    else:  # the plain image, nothing painted, no boxes
        assert np.array_equal(out[0], svc.image(str(upload)).display)
        assert (out[1] == "") if view is segmentation_view else (out[2] == [])


def test_api_names_answer_on_the_launched_app(app_url: str, tiny_model_dir: Path, scene_image: Path) -> None:
    """One gradio_client call per api_name: the tiny served model has no heads, so each says so."""
    client_mod = pytest.importorskip("gradio_client")
    client = client_mod.Client(app_url, verbose=False)
    names = set(client.view_api(print_info=False, return_format="dict")["named_endpoints"])
    assert {"/detect", "/segment", "/classify"} <= names
    args = [client_mod.handle_file(str(scene_image)), str(tiny_model_dir), 448, 2]
    model_id = svc_model_id(tiny_model_dir)
    image, text, dets = client.predict(*args, 0.3, api_name="/detect")
    assert train_command("detection", model_id) in text and dets == []
    assert Image.open(image).size == (512, 307)  # the 240×144 upload at display size, unpainted
    image, legend, note = client.predict(*args, 0.5, api_name="/segment")
    assert train_command("segmentation", model_id) in note and legend == ""
    label, note = client.predict(*args, api_name="/classify")
    assert train_command("probe", model_id) in note
    assert not (label or {}).get("confidences")


def svc_model_id(model_dir: Path) -> str:
    """The model id the app gives a local folder (what the train command must name)."""
    return ExplorerService(str(model_dir)).backbone(str(model_dir)).model_id


def test_parallel_refreshes_share_one_forward(svc: ExplorerService, upload: Path, forwards: list) -> None:
    """After a new upload the three head tabs refresh at once; they must share one backbone pass."""
    import threading

    barrier = threading.Barrier(3)
    errors: list[BaseException] = []

    def run(view, *extra) -> None:
        barrier.wait()
        try:
            view(svc, str(upload), "tiny", 448, 2, *extra)
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=run, args=a) for a in
               [(classification_view,), (segmentation_view, 0.5), (detection_view, 0.3)]]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(forwards) == 1


def test_recorded_metric_prefers_the_test_split() -> None:
    from explorer.ui.classification import recorded_metric_line

    card = {"metrics": {"val": {"miou": 0.744}, "test": {"miou": 0.738}, "other": {"top1": 0.5}}}
    assert recorded_metric_line(card, "miou", "mIoU") == "mIoU measured on the test split: 73.8%."
    assert recorded_metric_line({"metrics": {"val": {"top1": 0.17}}}, "top1", "Top-1") == \
        "Top-1 measured on the val split: 17.0%."
    assert recorded_metric_line({"metrics": {}}, "top1", "Top-1") == ""


def test_teach_by_clicks_then_segment_detect_and_pick_heads(svc: ExplorerService, backbone: Backbone,
                                                            tmp_path: Path, forwards: list) -> None:
    """Clicks label patches from the cached features (no extra forward); the taught head paints the
    object, gives its box in the Detection tab, and the Head picker switches between taught and shipped."""
    from explorer.ui.classification import TeachSession
    from explorer.ui.detection import detection_view
    from explorer.ui.segmentation import teach_click

    img = np.zeros((UPLOAD[1], UPLOAD[0], 3), np.uint8)
    img[..., 1] = 160
    img[128:320, 192:384] = (220, 30, 30)  # a red square on green: 12x12 patches at 448 px... (W 576 -> 448)
    path = tmp_path / "square.png"
    Image.fromarray(img).save(path)
    s = TeachSession()
    teach_click(svc, s, str(path), "tiny", 448, 2, "object", 1, (288, 224))
    n_fwd = len(forwards)
    teach_click(svc, s, str(path), "tiny", 448, 2, "background", 1, (40, 40))
    teach_click(svc, s, str(path), "tiny", 448, 2, "background", 1, (540, 420))
    with pytest.raises(Exception, match="outside"):
        teach_click(svc, s, str(path), "tiny", 448, 2, "object", 1, (9999, 5))
    assert len(s.seg.marks) == 3 and len(forwards) == n_fwd == 1  # the first click's forward only
    s.choice["segmentation"] = "taught"
    over, legend, note = segmentation_view(svc, str(path), "tiny", 448, 2, 0.5, s)
    assert "object" in legend and "taught from 1 images / 3 marks" in note
    base = svc.image(str(path)).display
    painted = np.abs(over.astype(int) - base.astype(int)).max(axis=2) > 30
    square = np.zeros(painted.shape, bool)
    square[128:320, 192:384] = True
    assert painted[square].mean() > 0.8 and painted[~square].mean() < 0.1
    _, text, dets = detection_view(svc, str(path), "tiny", 448, 2, 0.3, s)
    assert "taught segmentation" in text and [d["label"] for d in dets] == ["object"]
    x0, y0, x1, y1 = dets[0]["box_xyxy"]
    assert abs(x0 - 192) <= 24 and abs(y0 - 128) <= 24 and abs(x1 - 384) <= 24 and abs(y1 - 320) <= 24
    _, _, none = detection_view(svc, str(path), "tiny", 448, 2, 0.99, s)
    assert none == []  # the slider filters the taught boxes by their mean probability
    s.choice["segmentation"] = "shipped"
    _, legend_shipped, note_shipped = segmentation_view(svc, str(path), "tiny", 448, 2, 0.5, s)
    assert "Shipped head" in note_shipped and any(c in legend_shipped for c in SEG_CLASSES)
    assert len(forwards) == 2  # + the shipped head's own 224-px features
