"""Teaching through the launched app: the stateless API (gradio_client) and one real browser session
(Chromium) that clicks two classes and sees the overlay change. One app for the whole module
(``app_url``: the tiny random backbone, no shipped heads)."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from explorer.heads.registry import load_head_bytes

CHROMIUM = "/usr/bin/chromium"
SHOTS = Path(__file__).resolve().parents[2] / "screenshots"


@pytest.fixture(scope="module")
def client(app_url: str):
    gc = pytest.importorskip("gradio_client")
    return gc.Client(app_url, verbose=False)


@pytest.fixture(scope="module")
def backbone(tiny_model_dir: Path):
    from explorer.backbone import load_source

    return load_source(str(tiny_model_dir))


def solid(tmp: Path, name: str, rgb: tuple[int, int, int], noise: int = 10) -> Path:
    rng = np.random.default_rng(sum(rgb))
    img = np.clip(np.array(rgb)[None, None] + rng.integers(-noise, noise, (96, 128, 3)), 0, 255).astype(np.uint8)
    path = tmp / f"{name}.png"
    Image.fromarray(img).save(path)
    return path


def test_teach_segment_api_and_its_head_file(client, tiny_model_dir: Path, scene_image: Path, backbone) -> None:
    from gradio_client import handle_file

    img = handle_file(str(scene_image))  # 240x144: red disc centred (150, 70), r 40, on a green field
    marks = [{"image": 0, "x": 150, "y": 70, "class": "disc", "radius": 1},
             {"image": 0, "x": 20, "y": 20, "class": "field", "radius": 1},
             {"image": 0, "x": 225, "y": 130, "class": "field", "radius": 1}]
    overlay, areas, head_path = client.predict(img, str(tiny_model_dir), 448, 2, [img], json.dumps(marks),
                                               "disc, field", api_name="/teach_segment")
    assert list(areas) == ["disc", "field"] and sum(areas.values()) == pytest.approx(1.0, abs=1e-3)
    true_disc = np.pi * 40**2 / (240 * 144)  # 0.145
    assert 0.03 < areas["disc"] < 0.6, (areas, true_disc)
    assert Image.open(overlay).size == (512, 307)
    head = load_head_bytes(Path(head_path).read_bytes(), backbone, "segmentation")
    assert head.kind == "taught-segmentation" and head.class_names == ["disc", "field"]
    assert head.card["taught"] == "taught from 1 images / 3 marks"
    # bad input: a message, and the next call still works
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="outside"):
        client.predict(img, str(tiny_model_dir), 448, 2, [img], json.dumps([{"image": 0, "x": 999, "y": 5,
                                                                             "class": "disc"}]), "",
                       api_name="/teach_segment")
    with pytest.raises(AppError, match="two classes"):
        client.predict(img, str(tiny_model_dir), 448, 2, [img], json.dumps(marks[:1]), "",
                       api_name="/teach_segment")
    with pytest.raises(AppError, match="JSON"):
        client.predict(img, str(tiny_model_dir), 448, 2, [img], "{not json", "", api_name="/teach_segment")
    again = client.predict(img, str(tiny_model_dir), 448, 2, [img], json.dumps(marks), "disc, field",
                           api_name="/teach_segment")
    assert again[1] == areas  # deterministic: same marks, same head, same map


def test_teach_classify_api(client, tiny_model_dir: Path, tmp_path: Path, backbone) -> None:
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    red, green, blue = (handle_file(str(solid(tmp_path, n, c))) for n, c in
                        [("red", (220, 30, 30)), ("green", (30, 200, 40)), ("blue", (30, 40, 220))])
    top, head_path = client.predict(red, str(tiny_model_dir), 224, 2, [red, green, blue],
                                    json.dumps(["red", "green", "blue"]), api_name="/teach_classify")
    conf = {c["label"]: c["confidence"] for c in top["confidences"]}
    # one example per class -> nearest class mean: a training image is its own nearest mean (cosine 1)
    assert top["label"] == "red" and set(conf) == {"red", "green", "blue"}
    assert sum(conf.values()) == pytest.approx(1.0, abs=1e-3)
    head = load_head_bytes(Path(head_path).read_bytes(), backbone, "classification")
    assert head.kind == "taught-classification" and head.class_names == ["red", "green", "blue"]
    with pytest.raises(AppError, match="one class name per training image"):
        client.predict(red, str(tiny_model_dir), 224, 2, [red, green], json.dumps(["red"]),
                       api_name="/teach_classify")
    with pytest.raises(AppError, match="two classes"):
        client.predict(red, str(tiny_model_dir), 224, 2, [red], json.dumps(["red"]), api_name="/teach_classify")


@pytest.mark.browser
def test_browser_clicks_two_classes_and_the_overlay_changes(app_url: str, scene_image: Path) -> None:
    if not Path(CHROMIUM).exists() or shutil.which(CHROMIUM) is None:
        pytest.skip("Chromium not installed at /usr/bin/chromium (scripts/test.sh installs it)")
    sync_api = pytest.importorskip("playwright.sync_api")
    SHOTS.mkdir(exist_ok=True)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox",
                                                                     "--disable-dev-shm-usage"])
        page = browser.new_page(viewport={"width": 1400, "height": 1400})
        page.set_default_timeout(120_000)
        page.goto(app_url, wait_until="domcontentloaded")
        # Upload once the page's own load event has named the model: an upload racing the page's first
        # render was, once in CI, never picked up (the status kept the model line).
        page.wait_for_function("(() => { const s = document.querySelector('#status');"
                               " return s && s.innerText.includes('Model:'); })()")
        page.set_input_files("#input-image input[type=file]", str(scene_image))
        page.wait_for_function("document.querySelector('#status').innerText.includes('patches')")
        page.get_by_role("tab", name="Segmentation").click()
        page.wait_for_function("(() => { const i = document.querySelector('#seg-overlay img');"
                               " return i && i.complete && i.naturalWidth > 0; })()")
        before = _shown(page)

        def click_at(x: float, y: float) -> None:  # (x, y) in upload pixels (240x144)
            b = _content_box(page, "#seg-overlay")
            page.mouse.click(b["x"] + x / 240 * b["w"], b["y"] + y / 144 * b["h"])

        click_at(150, 70)  # "object" (the default class) on the red disc
        page.wait_for_function("document.querySelector('#seg-teach-note').innerText.includes('Marked')")
        page.locator("#seg-current-class label", has_text="background").click()
        page.wait_for_timeout(500)
        click_at(20, 20)  # "background" on the field
        try:
            page.wait_for_function("document.querySelector('#seg-teach-note').innerText.includes('background')")
            page.wait_for_function("document.querySelector('#seg-legend').innerText.includes('object')")
        finally:
            page.screenshot(path=str(SHOTS / "teach_segmentation.png"), full_page=True)
        page.wait_for_timeout(800)
        after = _shown(page)
        browser.close()
    assert before.shape == after.shape
    changed = np.abs(after.astype(int) - before.astype(int)).max(axis=2) > 40
    assert changed.mean() > 0.02  # the object's pixels are now painted


def _shown(page) -> np.ndarray:
    src = page.locator("#seg-overlay img").first.get_attribute("src")
    return np.asarray(Image.open(io.BytesIO(page.request.get(src).body())).convert("RGB"))


def _content_box(page, selector: str) -> dict:
    """Where the picture really is inside its <img> (object-fit letterboxes it)."""
    return page.eval_on_selector(f"{selector} img", """el => {
        const r = el.getBoundingClientRect(); const nw = el.naturalWidth, nh = el.naturalHeight;
        const fit = getComputedStyle(el).objectFit;
        let s = Math.min(r.width / nw, r.height / nh);
        if (fit === 'scale-down') s = Math.min(1, s);
        if (fit !== 'contain' && fit !== 'scale-down') return {x: r.x, y: r.y, w: r.width, h: r.height};
        const w = nw * s, h = nh * s;
        return {x: r.x + (r.width - w) / 2, y: r.y + (r.height - h) / 2, w: w, h: h};
    }""")
