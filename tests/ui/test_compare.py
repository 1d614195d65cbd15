"""Compare tab through a launched app (gradio_client) and in Chromium, on two tiny backbones of different shape.

A: hidden 32, patch 16, 4 registers. B: hidden 48, patch 14, no registers, LayerScale 1 — so the same pixel falls in
different patches of different grids. Both are saved with `save_pretrained`, loaded through the real
folder loader and preloaded into the service; the references are a *second* load of the same folders
(`load_source`), so they share no module and no cache with what the app serves.
"""

from __future__ import annotations

import io
import shutil
import zlib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from explorer import viz
from explorer.analysis import gram_loss, patch_similarity, tokencut
from explorer.backbone import Backbone, Features, load_source
from explorer.imageio import load_image
from explorer.ui.compare import session_forwards
from explorer.ui.layout import build_app
from explorer.ui.service import DEFAULT_SIZE, DISPLAY_MAX_SIDE, DISPLAY_MIN_SIDE, ExplorerService
from tests.conftest import make_tiny_model
from tests.ui.conftest import free_port
from tests.ui.test_browser import _content_box, _wait_img

A, B = "tiny16", "tiny14"
# B's LayerScale 1 (not 1e-5) makes its two layers differ, so a test can tell which layer answered.
CONFIGS = {A: dict(seed=0), B: dict(seed=1, hidden_size=48, intermediate_size=96, patch_size=14, num_register_tokens=0,
                                    layerscale_value=1.0)}
SIZE, LAYER = 224, 2
W, H = 320, 192  # upload (W, H); shown enlarged to 512×307
CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    dirs = {}
    for name, cfg in CONFIGS.items():
        dirs[name] = tmp_path_factory.mktemp(name)
        make_tiny_model(**cfg).save_pretrained(dirs[name], safe_serialization=True)
    return dirs


@pytest.fixture(scope="module")
def served(model_dirs: dict[str, Path]) -> dict[str, Backbone]:
    return {name: load_source(str(d)) for name, d in model_dirs.items()}


@pytest.fixture(scope="module")
def reference(model_dirs: dict[str, Path]) -> dict[str, Backbone]:
    return {name: load_source(str(d)) for name, d in model_dirs.items()}


@pytest.fixture(scope="module")
def app(served: dict[str, Backbone]) -> Iterator[tuple[str, ExplorerService]]:
    svc = ExplorerService(A, preloaded=dict(served))
    demo = build_app(svc, A)
    port = free_port()
    demo.queue(default_concurrency_limit=2).launch(server_name="127.0.0.1", server_port=port,
                                                   prevent_thread_lock=True, show_error=True)
    yield f"http://127.0.0.1:{port}", svc
    demo.close()


@pytest.fixture(scope="module")
def client(app: tuple[str, ExplorerService]):
    from gradio_client import Client

    return Client(app[0], verbose=False)


@pytest.fixture()
def forwards(served: dict[str, Backbone]) -> Iterator[Counter]:
    """Forward passes of each served model, counted by a pre-hook on the transformers module itself."""
    counts: Counter = Counter()
    handles = [bb.model.register_forward_pre_hook(lambda *_, n=name: counts.update([n])) for name, bb in served.items()]
    yield counts
    for h in handles:
        h.remove()


def blocks_image(path: Path, seed: int) -> Path:
    """A distinct random colour per 8-px block: neighbouring patches differ in both grids (14 and 16 px)."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, (H // 8, W // 8, 3), dtype=np.uint8)
    Image.fromarray(np.kron(blocks, np.ones((8, 8, 1), dtype=np.uint8))).save(path)
    return path


@pytest.fixture()
def upload(tmp_path: Path, request: pytest.FixtureRequest) -> Path:
    """A fresh image per test (its own seed), so every test starts with no cached features for it."""
    return blocks_image(tmp_path / "blocks.png", seed=zlib.crc32(request.node.name.encode()))


def ref_features(reference: dict[str, Backbone], name: str, path: Path, size: int = SIZE,
                 layer: int = LAYER) -> Features:
    return reference[name].extract(load_image(path), size=size, layer=layer)


def read(path: str) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB")).astype(np.float32)


def decode_heat(overlay: np.ndarray, base: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """Colour-map index (0…255) at each patch centre, undoing the 60/40 blend over the image."""
    colour = (overlay - 0.4 * base) / 0.6
    lut = viz.colormap_lut("inferno").astype(np.float32)
    dh, dw = base.shape[:2]
    heat = np.zeros(grid)
    for r in range(grid[0]):
        for c in range(grid[1]):
            x0, y0, x1, y1 = viz.patch_to_pixels(r, c, r + 1, c + 1, (dw, dh), grid)
            cy, cx = (y0 + y1) // 2, (x0 + x1) // 2
            px = colour[cy - 1:cy + 2, cx - 1:cx + 2].reshape(-1, 3)
            heat[r, c] = np.median(np.argmin(((px[:, None, :] - lut[None]) ** 2).sum(-1), axis=1))
    return heat


def scaled(sim: np.ndarray) -> np.ndarray:
    return (sim - sim.min()) / (sim.max() - sim.min()) * 255.0


def test_similarity_click_maps_through_each_grid(client, reference, upload: Path, forwards: Counter) -> None:
    from gradio_client import handle_file

    x, y = 250, 60
    img_a, img_b, info_a, info_b = client.predict(handle_file(str(upload)), A, SIZE, LAYER, B, LAYER, x, y,
                                                  api_name="/compare_similarity")
    base = viz.display_array(load_image(upload), DISPLAY_MAX_SIDE, DISPLAY_MIN_SIDE).astype(np.float32)
    grids = []
    for name, shown, info in ((A, img_a, info_a), (B, img_b, info_b)):
        f = ref_features(reference, name, upload)
        gh, gw = f.grid
        row, col = int(y * gh / H), int(x * gw / W)  # the patch holding pixel (x, y) in this model's grid
        assert f"Patch (row {row}, col {col}) of the {gh}×{gw} grid" in info
        heat = decode_heat(read(shown), base, f.grid)
        want = scaled(patch_similarity(f.patches, row, col))
        wrong = scaled(patch_similarity(f.patches, row, (col + 1) % gw))  # the neighbouring click
        err, err_wrong = np.abs(heat - want).mean(), np.abs(heat - wrong).mean()
        assert err < 6 and err_wrong > 4 * err, (name, err, err_wrong)
        grids.append(f.grid)
    assert grids[0] != grids[1]  # the two models really disagree on the grid
    assert forwards == {A: 1, B: 1}


def test_gram_loss_equals_gram_loss_of_both_features(client, reference, upload: Path, forwards: Counter) -> None:
    from gradio_client import handle_file

    loss, text = client.predict(handle_file(str(upload)), A, SIZE, LAYER, B, LAYER, api_name="/compare_gram_loss")
    fa, fb = ref_features(reference, A, upload), ref_features(reference, B, upload)
    assert loss == pytest.approx(gram_loss(fa.patches, fb.patches), rel=1e-6)
    assert loss > 0
    assert f"resampled to A's {fa.grid[0]}×{fa.grid[1]}" in text
    assert forwards == {A: 1, B: 1}

    # B's own layer: layer_b = 1 is B's first block, whatever A's layer is.
    loss1, text1 = client.predict(handle_file(str(upload)), A, SIZE, LAYER, B, 1, api_name="/compare_gram_loss")
    assert loss1 == pytest.approx(gram_loss(fa.patches, ref_features(reference, B, upload, layer=1).patches), rel=1e-6)
    assert loss1 != pytest.approx(loss, rel=1e-5) and "layer 1)" in text1  # 10× the match tolerance


def test_one_forward_per_model_and_image_across_every_view(client, app, upload: Path, forwards: Counter,
                                                           tmp_path: Path) -> None:
    from gradio_client import handle_file

    image = handle_file(str(upload))
    client.predict(image, A, SIZE, LAYER, api_name="/features")  # the main panel: A's forward
    client.predict(image, A, SIZE, LAYER, 10, 10, api_name="/similarity")
    assert forwards == {A: 1}
    ab = (image, A, SIZE, LAYER, B, LAYER)
    for x, y in ((10, 10), (300, 180)):
        client.predict(*ab, x, y, api_name="/compare_similarity")
    for tau in (0.1, 0.3):
        client.predict(*ab, tau, api_name="/compare_tokencut")
    client.predict(*ab, True, 0.2, api_name="/compare_pca")
    client.predict(*ab, "cluster", api_name="/compare_gram")
    client.predict(*ab, api_name="/compare_gram_loss")
    assert forwards == {A: 1, B: 1}

    # The benchmark's counter agrees with the module hooks on a new image: one forward per backbone.
    forwards.clear()
    assert session_forwards(app[1], str(blocks_image(tmp_path / "other.png", seed=99)), A, B, SIZE) == 2
    assert forwards == {A: 1, B: 1}


def test_tokencut_pca_gram_follow_each_model(client, reference, upload: Path) -> None:
    from gradio_client import handle_file

    image = handle_file(str(upload))
    ab = (image, A, SIZE, LAYER, B, LAYER)
    fa, fb = ref_features(reference, A, upload), ref_features(reference, B, upload)
    _, _, text_a, text_b = client.predict(*ab, 0.3, api_name="/compare_tokencut")
    for f, text in ((fa, text_a), (fb, text_b)):
        cut = tokencut(f.patches, 0.3)
        assert "τ = 0.30" in text and f"object {100 * float(cut.mask.mean()):.1f}%" in text
    pca_a, pca_b, note_a, note_b = client.predict(*ab, False, 0.2, api_name="/compare_pca")
    assert read(pca_a).shape == read(pca_b).shape == (307, 512, 3)
    assert f"all {fa.grid[0] * fa.grid[1]} patches" in note_a and f"all {fb.grid[0] * fb.grid[1]} patches" in note_b
    _, _, info_a, info_b = client.predict(*ab, "pca", api_name="/compare_gram")
    assert f"{fa.grid[0]}×{fa.grid[1]} grid" in info_a and f"{fb.grid[0]}×{fb.grid[1]} grid" in info_b


def test_bad_second_model_or_layer_is_one_message_and_server_keeps_serving(client, upload: Path) -> None:
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    image = handle_file(str(upload))
    with pytest.raises(AppError, match="Model B has 2 layers: pick a layer from 1 to 2"):
        client.predict(image, A, SIZE, LAYER, B, 7, api_name="/compare_gram_loss")
    with pytest.raises(AppError) as err:
        client.predict(image, A, SIZE, LAYER, "no-such-model-xyz", LAYER, api_name="/compare_gram_loss")
    assert "could not be loaded as asked" in str(err.value) and "\n" not in str(err.value).strip()
    loss, _ = client.predict(image, A, SIZE, LAYER, B, LAYER, api_name="/compare_gram_loss")
    assert loss > 0


@pytest.mark.browser
def test_browser_compare_tab_two_heatmaps(app, reference, tmp_path: Path) -> None:
    if shutil.which(CHROMIUM) is None:
        pytest.skip("Chromium not installed at /usr/bin/chromium (scripts/test.sh installs it)")
    sync_api = pytest.importorskip("playwright.sync_api")
    shots = Path(__file__).resolve().parents[2] / "screenshots"
    shots.mkdir(exist_ok=True)
    upload = blocks_image(tmp_path / "browser.png", seed=5)
    grids = {name: ref_features(reference, name, upload, DEFAULT_SIZE).grid for name in (A, B)}  # the UI's size
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox",
                                                                    "--disable-dev-shm-usage"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(120_000)
        page.goto(app[0], wait_until="domcontentloaded")
        page.set_input_files("#input-image input[type=file]", str(upload))
        page.wait_for_function("document.querySelector('#status').innerText.includes('patches')")
        page.get_by_role("tab", name="Compare").click()
        box_b = page.locator("#cmp-model-b input")
        box_b.fill(B)
        box_b.press("Enter")
        page.wait_for_function("document.querySelector('#cmp-status').innerText.includes('patch 14')")
        gh, gw = grids[B]
        page.wait_for_function(f"document.querySelector('#cmp-sim-info-b').innerText.includes('{gh}×{gw} grid')")

        # Click pixel (x, y) of the upload on A's image: both sides answer, each on its own grid.
        x, y = 250, 60
        _wait_img(page, "#cmp-sim-a")  # the first render may still be on its way on a busy machine
        img = _content_box(page, "#cmp-sim-a")
        page.mouse.click(img["x"] + (x + 0.5) / W * img["w"], img["y"] + (y + 0.5) / H * img["h"])
        for side, name in (("a", A), ("b", B)):
            gh, gw = grids[name]
            want = f"Patch (row {int(y * gh / H)}, col {int(x * gw / W)}) of the {gh}×{gw} grid"
            page.wait_for_function(f"document.querySelector('#cmp-sim-info-{side}').innerText.includes('{want}')")
        page.wait_for_timeout(500)
        for side in "ab":
            src = page.locator(f"#cmp-sim-{side} img").first.get_attribute("src")
            shown = np.asarray(Image.open(io.BytesIO(page.request.get(src).body())).convert("RGB"))
            assert shown.shape == (307, 512, 3)
        page.get_by_role("button", name="Compute Gram loss").click()
        b_id = app[1].backbone(B).model_id
        page.wait_for_function(f"document.querySelector('#cmp-loss-text').innerText.includes('vs B: {b_id} layer')")
        page.screenshot(path=str(shots / "compare_tab.png"), full_page=True)
        browser.close()
