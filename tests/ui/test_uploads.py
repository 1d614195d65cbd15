"""A client can make the server open only its own uploads and the bundled examples.

Two kinds of client are tried against the launched app: gradio_client (which uploads a file it can
read itself, so a path on *its* disk is a legitimate upload) and a bare HTTP client speaking the
documented `/gradio_api/call/<api_name>` protocol, which can name any server path in its payload.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import httpx
import pytest
from gradio import utils as gr_utils
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from explorer.ui.uploads import EXAMPLES_DIR, REFUSED, is_allowed_path


# ---------------------------------------------------------------- the rule, in-process
def test_paths_inside_the_roots_are_allowed(tmp_path: Path) -> None:
    upload = tmp_path / "uploads" / "abc" / "cat.png"
    upload.parent.mkdir(parents=True)
    upload.write_bytes(b"x")
    assert is_allowed_path(upload, [tmp_path / "uploads"])
    assert is_allowed_path(next(EXAMPLES_DIR.glob("*.jpg")))


@pytest.mark.parametrize("name", ["../secret.png", "abc/../../secret.png"])
def test_dotdot_out_of_the_roots_is_refused(tmp_path: Path, name: str) -> None:
    (tmp_path / "uploads" / "abc").mkdir(parents=True)
    (tmp_path / "secret.png").write_bytes(b"x")
    assert not is_allowed_path(f"{tmp_path / 'uploads'}/{name}", [tmp_path / "uploads"])


def test_a_symlink_out_of_the_roots_is_refused(tmp_path: Path) -> None:
    roots = [tmp_path / "uploads"]
    roots[0].mkdir()
    (tmp_path / "secret.png").write_bytes(b"x")
    (roots[0] / "link.png").symlink_to(tmp_path / "secret.png")
    assert not is_allowed_path(roots[0] / "link.png", roots)


@pytest.mark.parametrize("url", ["https://example.com/a.png", "http://127.0.0.1/a.png", "file:///etc/passwd",
                                 "data:image/png;base64,AAAA"])
def test_urls_are_refused(tmp_path: Path, url: str) -> None:
    assert not is_allowed_path(url, [tmp_path])


# ---------------------------------------------------------------- the launched app
def _call_raw(app_url: str, path: str) -> tuple[str, str]:
    """One /features call from a bare HTTP client whose image argument names `path`: (event, data)."""
    payload = {"data": [{"path": path, "meta": {"_type": "gradio.FileData"}}, "", 224, 2]}
    event_id = httpx.post(f"{app_url}/gradio_api/call/features", json=payload, timeout=60).json()["event_id"]
    text = httpx.get(f"{app_url}/gradio_api/call/features/{event_id}", timeout=120).text
    event = text.split("event: ")[1].split("\n")[0].strip()
    return event, text.split("data: ", 1)[1].strip()


@pytest.fixture(scope="module")
def server_files(tmp_path_factory: pytest.TempPathFactory, scene_image: Path) -> dict[str, str]:
    """A real image outside the upload folder, and a symlink to it planted inside the upload folder."""
    outside = tmp_path_factory.mktemp("server-only") / "private.png"
    outside.write_bytes(scene_image.read_bytes())
    planted = Path(gr_utils.get_upload_folder()) / f"planted-{uuid.uuid4().hex}"
    planted.mkdir(parents=True)
    (planted / "link.png").symlink_to(outside)
    yield {"outside": str(outside), "missing": str(outside.parent / "missing.png"),
           "dotdot": f"{gr_utils.get_upload_folder()}/../{os.path.relpath(outside, Path(gr_utils.get_upload_folder()).parent)}",
           "symlink": str(planted / "link.png")}
    (planted / "link.png").unlink()
    planted.rmdir()


@pytest.mark.parametrize("kind", ["outside", "dotdot", "symlink"])
def test_a_server_path_is_refused_like_a_missing_one(app_url: str, server_files: dict, kind: str) -> None:
    event, data = _call_raw(app_url, server_files[kind])
    missing_event, missing_data = _call_raw(app_url, server_files["missing"])
    assert event == missing_event == "error"
    assert "Model:" not in data  # the view never ran, so nothing of the file came back
    # The refusal reads the same whether or not the path exists (only the echoed path differs).
    assert data.replace(os.path.realpath(server_files[kind]), "P").replace(server_files[kind], "P") == \
        missing_data.replace(server_files["missing"], "P")


def test_a_url_is_refused_before_anything_is_fetched(app_url: str) -> None:
    client = Client(app_url, verbose=False)
    with pytest.raises(AppError, match=REFUSED.split("(")[0].strip()):
        client.predict({"path": "https://example.com/cat.png", "meta": {"_type": "gradio.FileData"}},
                       "", 224, 2, api_name="/features")


def test_an_upload_still_works_after_refusals(app_url: str, scene_image: Path) -> None:
    client = Client(app_url, verbose=False)
    status, summary = client.predict(handle_file(str(scene_image)), "", 224, 2, api_name="/features")
    assert summary["image_size"] == [144, 240], status
