"""PCA tab: the first three principal components of the patch features shown as RGB."""

from __future__ import annotations

from typing import Any

import gradio as gr
import numpy as np

from explorer import viz
from explorer.analysis import pca_rgb
from explorer.ui.common import Inputs, guard, image_output
from explorer.ui.service import ExplorerService


def pca_view(
    svc: ExplorerService, image: Any, model: str, size: float, layer: float, foreground_only: bool, tau: float
) -> tuple[np.ndarray, str]:
    """PCA-RGB image at display size; with `foreground_only` the PCA is fitted on the TokenCut mask."""
    p = svc.prepare(image, model, size, layer)
    mask = None
    note = f"PCA fitted on all {p.view.grid[0] * p.view.grid[1]} patches."
    if foreground_only:
        cut = p.view.tokencut(tau)
        mask = cut.mask
        n = int(mask.sum())
        note = f"PCA fitted on the {n} foreground patches of the TokenCut mask (τ = {tau:.2f}); background black."
        if not cut.confident:
            note += " ⚠️ TokenCut found no clear object here, so this mask may be meaningless."
        if n < 2:
            note = "The TokenCut mask has fewer than 2 patches; PCA fitted on all patches instead."
    rgb = pca_rgb(p.view.patches, mask)
    return viz.grid_image(rgb, p.entry.display_wh, smooth=False), note


def build_tab(inp: Inputs, tau: gr.Slider) -> None:
    """PCA tab; `tau` is the TokenCut tab's slider (the foreground mask comes from there)."""
    svc = inp.service
    with gr.Tab("PCA", id="pca"):
        gr.Markdown("The three leading principal components of the patch features as red, green and blue: "
                    "patches with similar features get similar colours.")
        fg = gr.Checkbox(label="Foreground only (fit the PCA on the TokenCut mask)", value=False)
        view = image_output("PCA of patch features", height=480, elem_id="pca-view")
        info = gr.Markdown(elem_id="pca-info")

    def pca(image: Any, model: str, size: float, layer: float, foreground_only: bool, tau: float) -> tuple:
        return pca_view(svc, image, model, size, layer, foreground_only, tau)

    fg.change(guard(pca), inputs=[*inp.base, fg, tau], outputs=[view, info], api_name="pca",
              api_description="PCA-RGB of the patch features; optionally fitted on the TokenCut foreground.")
    def follow_tau(image: Any, model: str, size: float, layer: float, foreground_only: bool, tau_value: float) -> tuple:
        """A new τ changes the foreground mask, so a foreground-only PCA follows it."""
        if not foreground_only or image is None:
            return gr.skip(), gr.skip()
        return pca_view(svc, image, model, size, layer, foreground_only, tau_value)

    tau.release(guard(follow_tau), inputs=[*inp.base, fg, tau], outputs=[view, info], api_visibility="private",
                trigger_mode="always_last", show_progress="hidden")
    inp.on_new_features(pca, [*inp.base, fg, tau], [view, info])
