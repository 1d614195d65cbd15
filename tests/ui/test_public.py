"""A public app (started as on a Hugging Face Space: SPACE_ID set) through gradio_client.

Every endpoint takes a `model` string; off the allow-list it is refused with one sentence that
never repeats a path, whether or not that path exists, and nothing is loaded.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.ui.conftest import launched_app

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

REFUSED = "is not on this server's allow-list"


@pytest.fixture(scope="module")
def public_app(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    env = {"DINOV3_MODEL": str(tiny_model_dir), "SPACE_ID": "tests/dinov3-explorer", "DINOV3_MODELS": "bundled"}
    log_dir = tmp_path_factory.mktemp("public-applog")
    with launched_app(log_dir, env) as (url, _):
        yield url, log_dir / "app.log"


@pytest.fixture(scope="module")
def client(public_app: tuple[str, Path]) -> Client:
    return Client(public_app[0], verbose=False)


def test_model_box_offers_only_the_allow_list(public_app: tuple[str, Path], tiny_model_dir: Path) -> None:
    config = httpx.get(public_app[0] + "/config", timeout=30).json()
    box = next(c["props"] for c in config["components"] if c.get("props", {}).get("label") == "Model")
    assert [c[1] for c in box["choices"]] == [str(tiny_model_dir), "bundled"]
    assert box["allow_custom_value"] is False


def test_the_start_model_serves(client: Client, tiny_model_dir: Path, scene_image: Path) -> None:
    status, summary = client.predict(handle_file(str(scene_image)), str(tiny_model_dir), 448, 2, api_name="/features")
    assert summary["grid"] == [17, 28], status


@pytest.mark.parametrize("api_name, extra", [("/features", ()), ("/tokencut", (0.2,)), ("/similarity", (5, 5)),
                                             ("/pca", (True, 0.2)), ("/tokencut_sweep", ())])
def test_every_endpoint_refuses_a_server_path(client: Client, scene_image: Path, deep_model_dir: Path,
                                              tmp_path: Path, api_name: str, extra: tuple) -> None:
    """A real model folder on the server and a missing one get the very same answer."""
    answers = []
    for source in (str(deep_model_dir), str(tmp_path / "no-such-model"), "../pretrained/dinov3-explorer-tiny"):
        args = (handle_file(str(scene_image)), source, 448, 2, *extra)
        if api_name == "/features":  # /features reports in its status and summary instead of raising
            status, summary = client.predict(*args, api_name=api_name)
            text = summary["error"]
            assert source not in status
        else:
            with pytest.raises(AppError) as err:
                client.predict(*args, api_name=api_name)
            text = str(err.value)
        assert REFUSED in text and source not in text
        answers.append(text)
    assert len(set(answers)) == 1


def test_unknown_hub_id_is_refused_by_name_and_not_fetched(client: Client, public_app: tuple[str, Path],
                                                           scene_image: Path) -> None:
    hub_id = "facebook/dinov3-vit7b16-pretrain-lvd1689m"
    with pytest.raises(AppError, match=f"'{hub_id}' {REFUSED}. Choose one of: .*bundled"):
        client.predict(handle_file(str(scene_image)), hub_id, 448, 2, 0.2, api_name="/tokencut")
    assert hub_id not in public_app[1].read_text()  # no loader logged a try for it


def test_refusal_leaves_the_server_serving(client: Client, tiny_model_dir: Path, scene_image: Path) -> None:
    with pytest.raises(AppError, match=REFUSED):
        client.predict(handle_file(str(scene_image)), "timm:vit_7b_patch16_dinov3.lvd1689m", 448, 2, 0.2,
                       api_name="/tokencut")
    overlay, eig, text = client.predict(handle_file(str(scene_image)), str(tiny_model_dir), 448, 2, 0.2,
                                        api_name="/tokencut")
    assert "τ = 0.20" in text
