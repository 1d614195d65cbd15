"""The UI in real Chromium (Playwright): upload, click a patch, drag τ, switch tabs; screenshots saved.

Screenshots go to screenshots/ (gitignored) so a person can look at them after a run.
"""

from __future__ import annotations

import io
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from explorer import viz

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--disable-background-networking", "--disable-component-update", "--no-first-run"]
SHOTS = Path(__file__).resolve().parents[2] / "screenshots"
W, H = 320, 192  # upload size; displayed enlarged to 512×307


@pytest.fixture(scope="module")
def block_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Distinct random colour per 16-px block, so neighbouring patches have clearly different features."""
    rng = np.random.default_rng(7)
    blocks = rng.integers(0, 256, (H // 16, W // 16, 3), dtype=np.uint8)
    img = np.kron(blocks, np.ones((16, 16, 1), dtype=np.uint8))
    path = tmp_path_factory.mktemp("browser") / "blocks.png"
    Image.fromarray(img).save(path)
    return path


@pytest.fixture(scope="module")
def page(app_url: str):
    if not Path(CHROMIUM).exists() or shutil.which(CHROMIUM) is None:
        pytest.skip("Chromium not installed at /usr/bin/chromium (scripts/test.sh installs it)")
    sync_api = pytest.importorskip("playwright.sync_api")
    SHOTS.mkdir(exist_ok=True)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        pg = browser.new_page(viewport={"width": 1400, "height": 1000})
        pg.set_default_timeout(120_000)
        pg.goto(app_url, wait_until="domcontentloaded")
        pg.wait_for_selector("#input-image")
        yield pg
        browser.close()


def _wait_img(page, selector: str) -> None:
    page.wait_for_function(
        f"(() => {{ const i = document.querySelector('{selector} img'); return i && i.complete && i.naturalWidth > 0; }})()"
    )


def _fetch(page, selector: str) -> tuple[str, np.ndarray]:
    src = page.locator(f"{selector} img").first.get_attribute("src")
    body = page.request.get(src).body()
    return src, np.asarray(Image.open(io.BytesIO(body)).convert("RGB")).astype(np.float32)


def _content_box(page, selector: str) -> dict:
    """Where the picture really is inside its <img> (object-fit contain/scale-down letterboxes it)."""
    return page.eval_on_selector(f"{selector} img", """el => {
        const r = el.getBoundingClientRect(); const nw = el.naturalWidth, nh = el.naturalHeight;
        const fit = getComputedStyle(el).objectFit;
        let s = Math.min(r.width / nw, r.height / nh);
        if (fit === 'scale-down') s = Math.min(1, s);  // never upscaled
        if (fit !== 'contain' && fit !== 'scale-down') return {x: r.x, y: r.y, w: r.width, h: r.height};
        const w = nw * s, h = nh * s;
        return {x: r.x + (r.width - w) / 2, y: r.y + (r.height - h) / 2, w: w, h: h};
    }""")


def test_upload_click_drag_and_tabs(page, block_image: Path) -> None:
    page.set_input_files("#input-image input[type=file]", str(block_image))
    page.wait_for_function("document.querySelector('#status').innerText.includes('patches')")
    status = page.inner_text("#status")
    gh, gw = (int(v) for v in re.search(r"= (\d+)×(\d+) patches", status).groups())
    _wait_img(page, "#sim-view")
    page.screenshot(path=str(SHOTS / "1_uploaded.png"), full_page=True)

    # --- click a patch: the marker and the heatmap peak must sit on that patch
    row, col = gh // 2 + 1, (2 * gw) // 3
    box = _content_box(page, "#sim-view")
    page.mouse.click(box["x"] + (col + 0.5) / gw * box["w"], box["y"] + (row + 0.5) / gh * box["h"])
    page.wait_for_function(f"document.querySelector('#sim-info').innerText.includes('Patch (row {row}, col {col})')")
    page.wait_for_timeout(500)
    _, shown = _fetch(page, "#sim-view")
    base = viz.display_array(Image.open(block_image).convert("RGB"), 640, 512).astype(np.float32)
    dh, dw = base.shape[:2]
    assert shown.shape[:2] == (dh, dw)
    colour = (shown - 0.4 * base) / 0.6  # undo the 60/40 blend to recover the colour-map colour
    lut = viz.colormap_lut("inferno").astype(np.float32)
    heat = np.zeros((gh, gw))
    for r in range(gh):
        for c in range(gw):
            x0, y0, x1, y1 = viz.patch_to_pixels(r, c, r + 1, c + 1, (dw, dh), (gh, gw))
            cy, cx = (y0 + y1) // 2, (x0 + x1) // 2
            px = colour[cy - 1:cy + 2, cx - 1:cx + 2].reshape(-1, 3)
            heat[r, c] = np.median(np.argmin(((px[:, None, :] - lut[None]) ** 2).sum(-1), axis=1))
    assert np.unravel_index(np.argmax(heat), heat.shape) == (row, col)
    page.screenshot(path=str(SHOTS / "2_similarity_click.png"), full_page=True)

    # --- TokenCut: drag τ; the mask image and the text follow the slider
    page.get_by_role("tab", name="TokenCut").click()
    page.wait_for_function("document.querySelector('#tc-conf').innerText.includes('τ = 0.20')")
    _wait_img(page, "#tc-overlay")
    src_before, mask_before = _fetch(page, "#tc-overlay")
    slider = page.locator("#tau-slider input[type=range]")
    sb = slider.bounding_box()
    y = sb["y"] + sb["height"] / 2
    page.mouse.move(sb["x"] + sb["width"] * 0.2 / 0.6, y)
    page.mouse.down()
    for frac in np.linspace(0.2 / 0.6, 0.55 / 0.6, 12):
        page.mouse.move(sb["x"] + sb["width"] * frac, y)
        page.wait_for_timeout(40)
    page.mouse.up()
    page.wait_for_function("!document.querySelector('#tc-conf').innerText.includes('τ = 0.20')")
    page.wait_for_timeout(1500)  # let the last value land
    value = float(slider.input_value())
    assert value > 0.45
    page.wait_for_function(f"document.querySelector('#tc-conf').innerText.includes('τ = {value:.2f}')")
    src_after, mask_after = _fetch(page, "#tc-overlay")
    assert src_after != src_before
    page.screenshot(path=str(SHOTS / "3_tokencut_dragged.png"), full_page=True)

    # --- PCA and Gram tabs render
    page.get_by_role("tab", name="PCA").click()
    _wait_img(page, "#pca-view")
    _, pca_img = _fetch(page, "#pca-view")
    assert pca_img.shape[:2] == (dh, dw) and pca_img.std() > 5
    page.screenshot(path=str(SHOTS / "4_pca.png"), full_page=True)
    page.get_by_role("tab", name="Gram").click()
    page.wait_for_selector("#gram-plot .js-plotly-plot")
    assert "patch (row" in page.inner_text("#gram-info")
    page.screenshot(path=str(SHOTS / "5_gram.png"), full_page=True)


def test_bad_upload_shows_a_message(page, block_image: Path, tmp_path: Path) -> None:
    bad = tmp_path / "text.png"
    bad.write_text("definitely not a picture")
    page.get_by_role("tab", name="Similarity").click()
    page.set_input_files("#input-image input[type=file]", str(bad))
    page.wait_for_function("document.querySelector('#status').innerText.includes('not an image')")
    page.screenshot(path=str(SHOTS / "6_bad_upload.png"), full_page=True)
    assert "Traceback" not in page.content()
