"""Segmentation tab: the segmentation head's class map over the image, a legend, an opacity slider.

The class map is computed once per (features, head) at display resolution and memoised on the
cached features; the opacity slider only re-blends colours (~1 ms), it never runs the head or
the backbone again.
"""

from __future__ import annotations

import colorsys
import html
from functools import lru_cache
from typing import Any

import cv2
import gradio as gr
import numpy as np

from explorer.heads.segmentation import load_segmentation, predict
from explorer.ui.classification import (
    entry_and_backbone,
    head_features,
    head_note,
    lookup_head,
    recorded_metric_line,
)
from explorer.ui.common import Inputs, guard, image_output
from explorer.ui.service import ExplorerService

DEFAULT_OPACITY = 0.55


@lru_cache(maxsize=8)
def class_palette(n: int) -> np.ndarray:
    """uint8[n, 3] distinct colours; index 0 (background) is black and never painted.

    Golden-ratio hue steps keep neighbouring class ids far apart in colour.
    """
    out = np.zeros((max(n, 1), 3), np.uint8)
    for i in range(1, n):
        h = (0.08 + (i - 1) * 0.618034) % 1.0
        s, v = (0.85, 0.95) if i % 2 else (0.6, 0.8)
        out[i] = np.rint(np.array(colorsys.hsv_to_rgb(h, s, v)) * 255)
    return out


def blend_classes(base: np.ndarray, classes: np.ndarray, palette: np.ndarray, opacity: float) -> np.ndarray:
    """Paint non-background pixels of ``classes`` (same H×W as ``base``) with their colour at ``opacity``."""
    colour = palette[classes]
    mixed = cv2.addWeighted(colour, float(opacity), base, 1.0 - float(opacity), 0.0)
    out = base.copy()
    fg = (classes > 0).astype(np.uint8)
    cv2.copyTo(mixed, fg, out)
    return out


def legend_html(class_names: list[str], classes: np.ndarray, palette: np.ndarray) -> str:
    """Swatches of the classes present (largest area first) with their share of the image."""
    counts = np.bincount(classes.ravel(), minlength=len(class_names))
    total = max(1, int(classes.size))
    items = []
    for k in np.argsort(-counts, kind="stable"):
        if counts[k] == 0:
            continue
        r, g, b = (int(c) for c in palette[k])
        swatch = "transparent;border:1px dashed #888" if k == 0 else f"rgb({r},{g},{b})"
        items.append(
            f'<span style="display:inline-flex;align-items:center;gap:4px;margin-right:12px">'
            f'<span style="width:14px;height:14px;border-radius:3px;background:{swatch}"></span>'
            f"{html.escape(class_names[k])} {100 * counts[k] / total:.1f}%</span>"
        )
    return f'<div class="seg-legend" style="font-size:13px;line-height:1.9">{"".join(items)}</div>'


def segmentation_view(
    svc: ExplorerService, image: Any, model: str, size: float, layer: float, opacity: float
) -> tuple[np.ndarray, str, str]:
    """Class-colour overlay at display resolution, an HTML legend and a markdown note.

    Without a usable head: the plain image, an empty legend, and the note says why (train command).
    """
    entry, backbone = entry_and_backbone(svc, image, model)
    found = lookup_head(svc, backbone, "segmentation", "segmentation", load_segmentation)
    if found.head is None:
        return entry.display, "", found.message
    head = found.head
    p = head_features(svc, image, model, head.card)
    dw, dh = entry.display_wh
    classes = p.view.memo(("seg-map", found.key, (dh, dw)), lambda: predict(head, p.features.patches, (dh, dw)))
    palette = class_palette(len(head.class_names))
    opacity = DEFAULT_OPACITY if opacity is None else float(np.clip(opacity, 0.0, 1.0))
    overlay = blend_classes(entry.display, classes, palette, opacity)
    legend = legend_html(head.class_names, classes, palette)
    note = f"{head_note(p, head.card)} {recorded_metric_line(head.card, 'miou', 'mIoU')}".strip()
    return overlay, legend, note


def build_tab(inp: Inputs) -> None:
    """Segmentation tab: overlay, legend, opacity slider (re-blend only)."""
    svc = inp.service
    with gr.Tab("Segmentation", id="segmentation"):
        gr.Markdown("A segmentation head on the frozen patch grid: every pixel coloured by its class.")
        opacity = gr.Slider(0.0, 1.0, value=DEFAULT_OPACITY, step=0.05, label="Opacity", elem_id="seg-opacity")
        overlay = image_output("Segmentation", height=480, elem_id="seg-overlay")
        legend = gr.HTML(elem_id="seg-legend")
        note = gr.Markdown(elem_id="seg-note")

    def segment(image: Any, model: str, size: float, layer: float, opacity_value: float) -> tuple:
        return segmentation_view(svc, image, model, size, layer, opacity_value)

    fn = guard(segment)
    opacity.input(fn, inputs=[*inp.base, opacity], outputs=[overlay, legend, note], api_name="segment",
                  api_description="Segmentation overlay at the given opacity, a legend (HTML) and a note.",
                  trigger_mode="always_last", show_progress="hidden")
    inp.on_new_features(segment, [*inp.base, opacity], [overlay, legend, note])
