"""Gram tab: the P×P cosine Gram matrix, reordered to show structure, and the Gram loss."""

from __future__ import annotations

from typing import Any

import gradio as gr
import numpy as np

from explorer import viz
from explorer.analysis import gram_loss as analysis_gram_loss
from explorer.ui.common import Inputs, guard, image_output
from explorer.ui.service import DEFAULT_SIZE, ExplorerService

ORDERS = ["pca", "cluster"]
COMPARE = ["another layer", "another resolution", "another model"]
PLOT_SIDE = 320  # the heatmap is block-averaged to at most this many rows/cols for the browser


def gram_view(
    svc: ExplorerService, image: Any, model: str, size: float, layer: float, order: str, row: float | None
) -> tuple[Any, np.ndarray, str]:
    """Plotly heatmap of the reordered Gram matrix, the image with the chosen row's patch marked.

    `row` indexes the *reordered* matrix (what the plot shows); the image overlay is that row,
    i.e. the cosine similarity of its patch to every patch.
    """
    p = svc.prepare(image, model, size, layer)
    order = order if order in ORDERS else "pca"
    gram = p.view.gram()
    perm = p.view.order(order)
    n = gram.shape[0]
    r = int(np.clip(0 if row is None else int(row), 0, n - 1))
    patch = int(perm[r])
    h, w = p.view.grid
    pr, pc = divmod(patch, w)
    reordered = p.view.memo(("gram_reordered", order), lambda: gram[np.ix_(perm, perm)])
    fig = viz.gram_figure(reordered, highlight=r, max_side=PLOT_SIDE)
    values = gram[patch].reshape(h, w)
    img = viz.heatmap_overlay(p.entry.display, values, "RdBu_r", alpha=0.6, vmin=-1.0, vmax=1.0)
    img = viz.mark_patch(img, pr, pc, p.view.grid)
    info = (f"Row {r} of {n} (ordered by {order}) is patch (row {pr}, col {pc}) of the {h}×{w} grid; "
            "the image shows that row: its cosine to every patch (blue −1 … red +1).")
    return fig, img, info


def gram_loss_view(
    svc: ExplorerService,
    image: Any,
    model: str,
    size: float,
    layer: float,
    compare: str,
    other_layer: float | None,
    other_size: float | None,
    other_model: str | None,
) -> tuple[float, str]:
    """Gram loss between the current features (A) and a second set (B) the user picks."""
    a = svc.prepare(image, model, size, layer)
    if compare == "another layer":
        b = svc.prepare(image, model, size, other_layer)
        what = f"layer {a.features.layer} vs layer {b.features.layer}"
    elif compare == "another resolution":
        b = svc.prepare(image, model, other_size or DEFAULT_SIZE, layer)
        what = f"{a.features.input_size[1]}×{a.features.input_size[0]} px vs {b.features.input_size[1]}×{b.features.input_size[0]} px"
    elif compare == "another model":
        b = svc.prepare(image, other_model or model, size, layer)
        what = f"{a.features.model_id} vs {b.features.model_id}"
    else:
        raise gr.Error(f"Choose one of {COMPARE}.")
    loss = analysis_gram_loss(a.features.patches, b.features.patches)
    ha, wa = a.features.grid
    hb, wb = b.features.grid
    resampled = "" if (ha, wa) == (hb, wb) else f" B ({hb}×{wb}) was resampled to A's {ha}×{wa} grid."
    text = (f"**Gram loss** ({what}) = **{loss:.5f}** — mean squared difference of the two cosine Gram "
            f"matrices (0 = same patch-similarity structure, max 4).{resampled}")
    return loss, text


def build_tab(inp: Inputs) -> None:
    svc = inp.service
    with gr.Tab("Gram", id="gram"):
        gr.Markdown("The Gram matrix holds the cosine similarity of every pair of patches — the structure "
                    "DINOv3's Gram anchoring keeps stable. Patches are reordered so blocks (parts, objects) show.")
        with gr.Row():
            order = gr.Radio(ORDERS, value="pca", label="Order patches by")
            row = gr.Slider(0, 3135, value=0, step=1, label="Row (reordered patch index)")
        with gr.Row():
            plot = gr.Plot(label="Gram matrix", elem_id="gram-plot")
            img = image_output("The chosen row on the image", height=420, elem_id="gram-view")
        info = gr.Markdown(elem_id="gram-info")
        with gr.Accordion("Gram loss between two feature sets", open=True):
            with gr.Row():
                compare = gr.Radio(COMPARE, value="another layer", label="Compare the current features with")
                other_layer = gr.Number(value=1, precision=0, label="other layer")
                other_size = gr.Number(value=224, precision=0, label="other resolution (px)")
                other_model = gr.Textbox(value="", label="other model source", placeholder="folder, hub id or timm:id")
            btn = gr.Button("Compute Gram loss")
            loss_num = gr.Number(label="Gram loss", interactive=False)
            loss_md = gr.Markdown()

    view_inputs = [*inp.base, order, row]
    def gram(image: Any, model: str, size: float, layer: float, order: str, row: float) -> tuple:
        return gram_view(svc, image, model, size, layer, order, row)

    def gram_loss(image: Any, model: str, size: float, layer: float, compare: str, other_layer: float,
                  other_size: float, other_model: str) -> tuple:
        return gram_loss_view(svc, image, model, size, layer, compare, other_layer, other_size, other_model)

    fn = guard(gram)
    gr.on([order.change, row.release], fn, inputs=view_inputs, outputs=[plot, img, info], api_name="gram",
          api_description="Reordered Gram matrix (plotly) and the chosen row shown on the image.",
          trigger_mode="always_last")
    row.input(fn, inputs=view_inputs, outputs=[plot, img, info], api_visibility="private",
              trigger_mode="always_last", show_progress="hidden")
    btn.click(guard(gram_loss),
              inputs=[*inp.base, compare, other_layer, other_size, other_model], outputs=[loss_num, loss_md],
              api_name="gram_loss", api_description="Gram loss between the current features and another layer, "
              "resolution or model.")

    def refresh(image: Any, model: str, size: float, layer: float, order: str, row: float) -> tuple:
        fig, im, text = gram_view(svc, image, model, size, layer, order, row)
        n = svc.prepare(image, model, size, layer).view.grid
        return fig, im, text, gr.update(maximum=n[0] * n[1] - 1)

    inp.on_new_features(refresh, view_inputs, [plot, img, info, row])
