"""The launched app through gradio_client: every api_name answers, and agrees with the library."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from explorer import analysis, viz
from explorer.imageio import load_image

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

SIZE = 448
DISPLAY = (512, 307)  # (W, H): the 240×144 upload enlarged to the 512-px minimum display side


@pytest.fixture(scope="module")
def client(app_url: str) -> Client:
    return Client(app_url, verbose=False)


@pytest.fixture(scope="module")
def local(tiny_backbone, scene_image: Path):
    """The same model and image in-process: the reference the server must agree with."""
    image = load_image(scene_image)
    return tiny_backbone.extract(image, SIZE, None), image


def _args(model_dir: Path, scene_image: Path, layer: int = 2) -> list:
    return [handle_file(str(scene_image)), str(model_dir), SIZE, layer]


def test_api_lists_every_view(client: Client) -> None:
    names = set(client.view_api(print_info=False, return_format="dict")["named_endpoints"])
    for name in ["/features", "/similarity", "/pca", "/gram", "/gram_loss", "/tokencut", "/tokencut_sweep"]:
        assert name in names


def test_features_summary(client: Client, tiny_model_dir: Path, scene_image: Path, local) -> None:
    status, summary = client.predict(*_args(tiny_model_dir, scene_image), api_name="/features")
    feats, _ = local
    assert summary["grid"] == list(feats.grid) == [17, 28]  # 240×144 at 448: non-square grid
    assert summary["num_registers"] == 4 and summary["num_layers"] == 2
    assert summary["model_id"] == feats.model_id
    assert feats.model_id in status and "17×28 patches" in status


def test_similarity_click_maps_to_the_right_patch(client: Client, tiny_model_dir: Path, scene_image: Path) -> None:
    x, y = 150, 70
    out, info = client.predict(*_args(tiny_model_dir, scene_image), x, y, api_name="/similarity")
    row, col = int(np.floor(y / 144 * 17)), int(np.floor(x / 240 * 28))
    assert f"Patch (row {row}, col {col})" in info
    img = np.asarray(Image.open(out).convert("RGB")).astype(int)
    assert img.shape == (DISPLAY[1], DISPLAY[0], 3)
    # The cyan marker (0, 255, 255) surrounds exactly that patch.
    cyan = (img[..., 0] < 90) & (img[..., 1] > 180) & (img[..., 2] > 180)
    ys, xs = np.nonzero(cyan)
    assert viz.pixel_to_patch(xs.mean(), ys.mean(), DISPLAY, (17, 28)) == (row, col)


def test_tokencut_matches_the_library(client: Client, tiny_model_dir: Path, scene_image: Path, local) -> None:
    overlay, eig, text = client.predict(*_args(tiny_model_dir, scene_image), 0.3, api_name="/tokencut")
    feats, _ = local
    ref = analysis.tokencut(feats.patches, tau=0.3)
    area = re.search(r"object ([0-9.]+)% of the image", text)
    assert area and float(area.group(1)) == pytest.approx(100 * ref.mask.mean(), abs=0.06)
    r0, c0, r1, c1 = ref.box
    assert f"box rows {r0}–{r1 - 1}, cols {c0}–{c1 - 1}" in text
    assert ("Object found" in text) == bool(ref.confident)
    for path in (overlay, eig):
        assert Image.open(path).size == DISPLAY


def test_tokencut_sweep_table(client: Client, tiny_model_dir: Path, scene_image: Path, local) -> None:
    table = client.predict(*_args(tiny_model_dir, scene_image), api_name="/tokencut_sweep")
    headers, rows = table["headers"], table["data"]
    assert headers[0] == "tau" and len(rows) == 10
    feats, _ = local
    for row in rows:
        ref = analysis.tokencut(feats.patches, tau=float(row[0]))
        assert row[1] == pytest.approx(round(100 * ref.mask.mean(), 1))


def test_pca_foreground_only(client: Client, tiny_model_dir: Path, scene_image: Path, local) -> None:
    out, note = client.predict(*_args(tiny_model_dir, scene_image), True, 0.3, api_name="/pca")
    feats, _ = local
    mask = analysis.tokencut(feats.patches, tau=0.3).mask
    img = np.asarray(Image.open(out).convert("RGB")).astype(int)
    assert img.shape == (DISPLAY[1], DISPLAY[0], 3)
    # Background patches are painted black: check the centre pixel of every background patch.
    for r, c in zip(*np.nonzero(~mask), strict=True):
        x0, y0, x1, y1 = viz.patch_to_pixels(r, c, r + 1, c + 1, DISPLAY, feats.grid)
        assert img[(y0 + y1) // 2, (x0 + x1) // 2].max() < 40
    assert f"{int(mask.sum())} foreground patches" in note


def test_gram_row_is_the_reordered_patch(client: Client, tiny_model_dir: Path, scene_image: Path, local) -> None:
    plot, img, info = client.predict(*_args(tiny_model_dir, scene_image), "pca", 10, api_name="/gram")
    feats, _ = local
    perm = analysis.gram_order(feats.patches, "pca")
    pr, pc = divmod(int(perm[10]), feats.grid[1])
    assert f"patch (row {pr}, col {pc})" in info
    fig = json.loads(plot["plot"])
    z = fig["data"][0]["z"]  # plotly >= 6 ships arrays as {"dtype", "bdata", "shape"}
    shape = tuple(int(v) for v in str(z["shape"]).split(",")) if isinstance(z, dict) else np.shape(z)
    p = feats.grid[0] * feats.grid[1]
    step = int(np.ceil(p / 320))
    assert shape == (p // step, p // step)


def test_gram_loss_two_resolutions(client: Client, tiny_model_dir: Path, scene_image: Path, local, tiny_backbone) -> None:
    loss, text = client.predict(*_args(tiny_model_dir, scene_image), "another resolution", 1, 224, "",
                                api_name="/gram_loss")
    feats, image = local
    other = tiny_backbone.extract(image, 224, None)
    assert loss == pytest.approx(analysis.gram_loss(feats.patches, other.patches), rel=1e-4)
    assert "resampled" in text


def test_bad_upload_then_good_request(client: Client, tiny_model_dir: Path, scene_image: Path, tmp_path: Path) -> None:
    bad = tmp_path / "notes.png"
    bad.write_text("this is text, not a PNG")
    status, summary = client.predict(handle_file(str(bad)), str(tiny_model_dir), SIZE, 2, api_name="/features")
    assert "not an image" in status and "error" in summary
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(AppError, match="empty"):
        client.predict(handle_file(str(empty)), str(tiny_model_dir), SIZE, 2, 0.2, api_name="/tokencut")
    status, summary = client.predict(*_args(tiny_model_dir, scene_image), api_name="/features")
    assert summary["grid"] == [17, 28]


def test_api_follows_the_model_it_names(client: Client, tiny_model_dir: Path, deep_model_dir: Path,
                                        scene_image: Path) -> None:
    """The app started on a 2-layer model; a call naming a 4-layer one gets every one of its layers."""
    status, summary = client.predict(handle_file(str(scene_image)), str(deep_model_dir), SIZE, 4, api_name="/features")
    assert summary["layer"] == 4 and summary["num_layers"] == 4, status
    out, info = client.predict(handle_file(str(scene_image)), str(deep_model_dir), SIZE, 3, 10, 10,
                               api_name="/similarity")
    assert Image.open(out).size == DISPLAY and "Patch (row 1, col 1)" in info  # y 10/144·17, x 10/240·28
    with pytest.raises(AppError, match="Layer 5 is out of range .* which has 4 layers"):
        client.predict(handle_file(str(scene_image)), str(deep_model_dir), SIZE, 5, 0.2, api_name="/tokencut")
    with pytest.raises(AppError, match="Layer 3 is out of range .* which has 2 layers"):
        client.predict(*_args(tiny_model_dir, scene_image, 3), 0.2, api_name="/tokencut")
    with pytest.raises(AppError, match="Resolution 1000 px is out of range"):
        client.predict(handle_file(str(scene_image)), str(deep_model_dir), 1000, 4, 0.2, api_name="/tokencut")


def test_one_forward_per_image_size_layer_model(client: Client, tiny_model_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "fresh.png"
    Image.fromarray(np.random.default_rng(11).integers(0, 255, (64, 96, 3), dtype=np.uint8)).save(path)

    def forwards() -> int:
        return client.predict(api_name="/server_stats")["forwards"]

    start = forwards()
    for size, layer in ((SIZE, 2), (SIZE, 2), (224, 2), (SIZE, 1), (SIZE, 2)):
        client.predict(handle_file(str(path)), str(tiny_model_dir), size, layer, api_name="/features")
    client.predict(handle_file(str(path)), str(tiny_model_dir), SIZE, 2, 0.2, api_name="/tokencut")
    assert forwards() - start == 3


def test_a_client_that_leaves_mid_request_does_not_break_the_server(
    app_url: str, deep_model_dir: Path, tiny_model_dir: Path, scene_image: Path, tmp_path: Path
) -> None:
    big = tmp_path / "big.png"
    Image.fromarray(np.random.default_rng(12).integers(0, 255, (900, 1400, 3), dtype=np.uint8)).save(big)
    leaving = Client(app_url, verbose=False)
    job = leaving.submit(handle_file(str(big)), str(deep_model_dir), 896, 4, api_name="/features")
    time.sleep(0.5)
    job.cancel()
    leaving.close()
    fresh = Client(app_url, verbose=False)
    status, summary = fresh.predict(handle_file(str(big)), str(deep_model_dir), 896, 4, api_name="/features")
    assert summary["input_size"] == [576, 896]
    status, summary = fresh.predict(*_args(tiny_model_dir, scene_image), api_name="/features")
    assert summary["grid"] == [17, 28]
