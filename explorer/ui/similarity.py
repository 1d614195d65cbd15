"""Similarity tab: click a patch, see how much every other patch looks like it."""

from __future__ import annotations

from typing import Any

import gradio as gr
import numpy as np

from explorer import viz
from explorer.analysis import patch_similarity
from explorer.ui.common import Inputs, guard, image_output
from explorer.ui.service import ExplorerService

CMAP = "inferno"


def similarity_view(
    svc: ExplorerService, image: Any, model: str, size: float, layer: float, x: float | None, y: float | None
) -> tuple[np.ndarray, str]:
    """Heatmap of cosine similarity to the patch under pixel (x, y) of the uploaded image.

    (x, y) are pixel coordinates of the upload as the user sees it (upright); None means the
    image centre. Returns the overlay at display resolution and a one-line description.
    """
    p = svc.prepare(image, model, size, layer)
    oh, ow = p.entry.image_hw
    x = ow / 2 if x is None else float(x)
    y = oh / 2 if y is None else float(y)
    row, col = p.patch_at(x, y)
    sim = patch_similarity(p.view.patches, row, col)
    lo, hi = float(sim.min()), float(sim.max())
    out = viz.heatmap_overlay(p.entry.display, sim, CMAP, alpha=0.6, vmin=lo, vmax=hi)
    out = viz.mark_patch(out, row, col, p.view.grid)
    h, w = p.view.grid
    info = (
        f"Patch (row {row}, col {col}) of the {h}×{w} grid, at pixel ({x:.0f}, {y:.0f}). "
        f"{viz.legend_html(CMAP, lo, hi, 'cosine similarity')}"
    )
    return out, info


def build_tab(inp: Inputs) -> None:
    """Similarity tab: the overlay is itself the click target."""
    svc = inp.service
    with gr.Tab("Similarity", id="similarity"):
        gr.Markdown("Click anywhere on the image: every patch is coloured by its cosine similarity to the clicked one.")
        view = image_output("Similarity to the clicked patch (click the image)", height=480, elem_id="sim-view")
        info = gr.HTML(elem_id="sim-info")
        with gr.Row():
            x = gr.Number(None, label="x (pixels of the upload)", precision=0, minimum=0)
            y = gr.Number(None, label="y (pixels of the upload)", precision=0, minimum=0)
        shown_key = gr.State("")  # the image key the overlay was last rendered for

    def on_select(image: Any, model: str, size: float, layer: float, evt: gr.SelectData) -> tuple:
        """A click on the displayed overlay: convert display pixels to upload pixels, then render."""
        p = svc.prepare(image, model, size, layer)
        ox, oy = p.to_original(*evt.index[:2])
        out, text = similarity_view(svc, image, model, size, layer, ox, oy)
        return out, text, round(ox), round(oy)

    view.select(guard(on_select), inputs=inp.base, outputs=[view, info, x, y], api_visibility="private",
                trigger_mode="always_last", show_progress="hidden")
    def similarity(image: Any, model: str, size: float, layer: float, x: float | None, y: float | None) -> tuple:
        return similarity_view(svc, image, model, size, layer, x, y)

    gr.on(
        [x.submit, y.submit],
        guard(similarity),
        inputs=[*inp.base, x, y],
        outputs=[view, info],
        api_name="similarity",
        api_description="Cosine-similarity heatmap to the patch under pixel (x, y) of the image.",
    )
    def refresh(key: str, image: Any, model: str, size: float, layer: float, xx: float | None, yy: float | None,
                last_key: str) -> tuple:
        """New features: keep the clicked point for the same image (new layer/size), else the centre."""
        if key != last_key:
            oh, ow = svc.prepare(image, model, size, layer).entry.image_hw
            xx, yy = ow // 2, oh // 2
        out, text = similarity_view(svc, image, model, size, layer, xx, yy)
        return out, text, xx, yy, key

    inp.on_new_features(refresh, [*inp.base, x, y, shown_key], [view, info, x, y, shown_key], with_key=True)
