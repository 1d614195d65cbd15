"""Shared UI plumbing: the input panel's components, error handling, the "new features" hook.

Each tab module only declares components and says which view function answers which event;
this module keeps the cross-cutting rules in one place: user errors become a plain message
(never a traceback), and stale chained refreshes are skipped when the upload was bad.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import gradio as gr

from explorer.ui.policy import redact_paths
from explorer.ui.service import ExplorerService, UserError
from explorer.ui.uploads import accept_only_uploads, check_upload

log = logging.getLogger("explorer.ui")


def safe_image(**kwargs: Any) -> gr.Image:
    """A gr.Image input whose upload path goes to our loader instead of being opened by Pillow.

    Why: gr.Image's own preprocessing calls `PIL.Image.open` first, so a zero-byte, text or
    truncated upload dies inside Gradio with a generic "Error"; `explorer.imageio` gives a clear
    sentence for each case instead. (An instance override, not a subclass: subclassing a Gradio
    component makes Gradio write a .pyi stub next to this module.) Only the client's own uploads
    and the bundled examples are ever opened (`explorer.ui.uploads`).
    """
    image = accept_only_uploads(gr.Image(type="filepath", **kwargs))
    original = image.preprocess

    def preprocess(payload: Any) -> str | None:
        if payload is None:
            return None
        path = getattr(payload, "path", None)
        if path:
            return check_upload(path)  # second check: what reaches the loader is an upload
        return original(payload)  # data: URLs (rare) keep Gradio's decoding

    image.preprocess = preprocess  # type: ignore[method-assign]
    return image


def checked_by_service(component: gr.Slider | gr.Dropdown) -> gr.Slider | gr.Dropdown:
    """Let a slider's or dropdown's raw value through; `ExplorerService` checks it against the model asked for.

    Why: Gradio checks an API value against the component's startup bounds and choices, so a
    call naming a 24-layer model was refused above the start model's depth ("Value 12 is greater
    than maximum value 6"), and an off-list model got Gradio's wording instead of the allow-list
    sentence. The service, which knows the model a call names, is the one place that decides.
    """
    def preprocess(payload: Any) -> Any:
        return payload

    component.preprocess = preprocess  # type: ignore[method-assign]
    return component


@dataclass
class Refresh:
    """A view to re-render whenever the features change (new image, size, layer or model)."""

    fn: Callable[..., Any]
    inputs: Sequence[Any]
    outputs: Sequence[Any]


@dataclass
class Inputs:
    """Components of the left-hand panel that every tab reads, plus the refresh registry."""

    service: ExplorerService
    image: gr.Image
    model: gr.Dropdown
    size: gr.Slider
    layer: gr.Slider
    status: gr.Markdown
    key: gr.State
    refreshes: list[Refresh] = field(default_factory=list)

    @property
    def base(self) -> list[Any]:
        """The four inputs every view takes first: image, model, size, layer."""
        return [self.image, self.model, self.size, self.layer]

    def on_new_features(
        self, fn: Callable[..., Any], inputs: Sequence[Any], outputs: Sequence[Any], with_key: bool = False
    ) -> None:
        """Register `fn(*inputs)` to re-render `outputs` after the features change.

        An empty image key (a failed upload) skips the refresh; `with_key=True` passes the key
        as the first argument (a tab that must notice a *new image*, not just a new layer).
        """
        n_out = len(outputs)

        def refresh(key: str, *args: Any) -> Any:
            if not key:
                return gr.skip() if n_out == 1 else tuple(gr.skip() for _ in range(n_out))
            return fn(key, *args) if with_key else fn(*args)

        self.refreshes.append(Refresh(guard(refresh), [self.key, *inputs], list(outputs)))


def guard(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn UserError into gr.Error (a plain toast / API error) and hide tracebacks of the rest."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except UserError as err:
            raise gr.Error(str(err), print_exception=False) from err
        except Exception as err:  # noqa: BLE001 - the server must keep serving
            log.exception("view %s failed", getattr(fn, "__name__", fn))
            # The log has the details; the message never shows a server path (every visitor sees it).
            text = redact_paths(f"Something went wrong ({type(err).__name__}: {err}).")
            raise gr.Error(text, print_exception=False) from err

    return wrapper


def image_output(label: str, **kw: Any) -> gr.Image:
    """A read-only image output; JPEG keeps the per-frame encode cheap for live sliders."""
    return gr.Image(label=label, interactive=False, format="jpeg", buttons=["download", "fullscreen"], **kw)
