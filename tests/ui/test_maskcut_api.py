"""The launched app's /maskcut endpoint through gradio_client, against MaskCut run in-process."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from explorer.analysis import MaskCutter, TokenCutGraph, box_to_pixels
from explorer.imageio import load_image

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

SIZE = 448


@pytest.fixture(scope="module")
def client(app_url: str) -> Client:
    return Client(app_url, verbose=False)


@pytest.fixture(scope="module")
def local_graph(tiny_backbone, scene_image: Path):
    feats = tiny_backbone.extract(load_image(scene_image), SIZE, None)
    return feats, TokenCutGraph.from_patches(feats.patches)


def _args(model_dir: Path, scene_image: Path) -> list:
    return [handle_file(str(scene_image)), str(model_dir), SIZE, 2]


def _pixel_boxes(feats, boxes) -> list[list[float]]:
    return [[round(v, 1) for v in box_to_pixels(b, feats.patch_size, feats.input_size, (144, 240))] for b in boxes]


@pytest.mark.parametrize("tau,n", [(0.2, 3), (0.3, 5)])
def test_maskcut_agrees_with_the_library(client: Client, tiny_model_dir: Path, scene_image: Path,
                                         local_graph, tau: float, n: int) -> None:
    overlay, objects = client.predict(*_args(tiny_model_dir, scene_image), tau, n, api_name="/maskcut")
    feats, graph = local_graph
    expected = MaskCutter(graph).run(tau, n).objects
    assert 1 <= len(objects) <= n
    assert [o["box_xyxy"] for o in objects] == _pixel_boxes(feats, [o.box for o in expected])
    assert [o["ncut"] for o in objects] == [round(o.ncut, 4) for o in expected]
    assert [o["area"] for o in objects] == [round(o.area, 4) for o in expected]
    for o in objects:  # boxes lie inside the 240×144 upload
        x0, y0, x1, y1 = o["box_xyxy"]
        assert 0 <= x0 < x1 <= 240 and 0 <= y0 < y1 <= 144
    img = Image.open(overlay)
    assert img.size == (512, 307)  # drawn on the display copy


def test_n_one_is_tokencut(client: Client, tiny_model_dir: Path, scene_image: Path, local_graph) -> None:
    _, objects = client.predict(*_args(tiny_model_dir, scene_image), 0.2, 1, api_name="/maskcut")
    feats, graph = local_graph
    cut = graph.solve(0.2)
    assert objects == [{"box_xyxy": _pixel_boxes(feats, [cut.box])[0], "ncut": round(cut.ncut, 4),
                        "area": round(float(cut.mask.mean()), 4)}]


@pytest.mark.parametrize("n", [0, 9, 2.5e9])
def test_bad_n_is_a_plain_message_and_the_server_keeps_serving(client: Client, tiny_model_dir: Path,
                                                               scene_image: Path, n: float) -> None:
    with pytest.raises(AppError, match="number of objects|less than minimum|greater than maximum"):
        client.predict(*_args(tiny_model_dir, scene_image), 0.2, n, api_name="/maskcut")
    _, objects = client.predict(*_args(tiny_model_dir, scene_image), 0.2, 2, api_name="/maskcut")
    assert objects and np.isfinite(objects[0]["ncut"])
