"""Which files a client may make the server open: its own uploads and the bundled examples, nothing else.

Why here and not in the image loader: Gradio resolves a file argument *before* a component's
`preprocess` runs — a client can name any server path (`{"path": "/root/x.png"}`) or a URL in its
payload, and Gradio copies that file (or downloads that URL) into its cache, after which the path
looks like an upload. So the check sits on the component's own resource hook, which Gradio calls
with the client's raw path, before anything is read or fetched.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import gradio as gr
from gradio import utils as gr_utils

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLES_DIR = REPO_ROOT / "assets" / "examples"

# One message for every refusal: it must not tell a stranger whether a server path exists.
REFUSED = "Only files uploaded to this app (or its bundled examples) can be opened."


def upload_roots() -> list[Path]:
    """Folders a client's file argument may point into: Gradio's upload folder and the examples."""
    return [Path(os.path.realpath(gr_utils.get_upload_folder())), Path(os.path.realpath(EXAMPLES_DIR))]


def is_allowed_path(path: str | Path, roots: Iterable[Path] | None = None) -> bool:
    """True when `path`, with `..` and every symlink resolved, lies inside one of `roots`."""
    text = str(path)
    if "://" in text or text.startswith("data:"):
        return False
    real = Path(os.path.realpath(text))
    return any(real == root or root in real.parents for root in (roots or upload_roots()))


def check_upload(path: str | Path | None) -> str | None:
    """The path unchanged when a client may open it; else `gr.Error(REFUSED)`."""
    if path is None:
        return None
    if not is_allowed_path(path):
        raise gr.Error(REFUSED, print_exception=False)
    return str(path)


def accept_only_uploads(component: Any) -> Any:
    """Make a file-taking Gradio component refuse server paths and URLs named by a client.

    Gradio routes every file argument through the component's `move_resource_to_block_cache`
    (sync and async); wrapping both on this instance refuses a path before it is copied and a URL
    before it is downloaded. Files the app writes itself (outputs) do not pass through here.
    """
    gradio_move = component.move_resource_to_block_cache
    gradio_async_move = component.async_move_resource_to_block_cache

    def checked_move(url_or_file_path: str | Path | None) -> str | None:
        return gradio_move(check_upload(url_or_file_path))

    async def checked_async_move(url_or_file_path: str | Path | None) -> str | None:
        return await gradio_async_move(check_upload(url_or_file_path))

    component.move_resource_to_block_cache = checked_move
    component.async_move_resource_to_block_cache = checked_async_move
    return component
