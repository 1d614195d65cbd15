"""PCA tab: the first three principal components of the patch features shown as RGB."""

from __future__ import annotations

from typing import Any

import cv2
import gradio as gr
import numpy as np

from explorer import viz
from explorer.analysis import pca_rgb
from explorer.heads.taught import TaughtSegmentationHead, foreground_mask
from explorer.ui.classification import TeachSession, head_features, session_state, taught_head
from explorer.ui.common import Inputs, guard, image_output
from explorer.ui.service import ExplorerService, Prepared

MASK_SOURCES = ("TokenCut mask", "taught segmentation")


def pca_view(
    svc: ExplorerService, image: Any, model: str, size: float, layer: float, foreground_only: bool, tau: float,
    mask_source: str = MASK_SOURCES[0], session: TeachSession | None = None,
) -> tuple[np.ndarray, str]:
    """PCA-RGB image at display size; with `foreground_only` the PCA is fitted on a foreground mask: the
    TokenCut mask at τ, or (like DINOv3's PCA notebook) the taught two-class segmentation's foreground."""
    p = svc.prepare(image, model, size, layer)
    mask = None
    note = f"PCA fitted on all {p.view.grid[0] * p.view.grid[1]} patches."
    taught = taught_foreground(svc, image, model, p, session) if foreground_only and mask_source == MASK_SOURCES[1] \
        else None
    if isinstance(taught, str):
        note = f"{taught} PCA fitted on the TokenCut mask instead. "
    if isinstance(taught, np.ndarray):
        mask = taught
        note = f"PCA fitted on the {int(mask.sum())} foreground patches of the taught segmentation; background black."
    elif foreground_only:
        cut = p.view.tokencut(tau)
        mask = cut.mask
        note = (note if isinstance(taught, str) else "") + \
            f"PCA fitted on the {int(mask.sum())} foreground patches of the TokenCut mask (τ = {tau:.2f}); background black."
        if not cut.confident:
            note += " ⚠️ TokenCut found no clear object here, so this mask may be meaningless."
    if mask is not None and int(mask.sum()) < 2:
        note = "The foreground mask has fewer than 2 patches; PCA fitted on all patches instead."
    rgb = pca_rgb(p.view.patches, mask)
    return viz.grid_image(rgb, p.entry.display_wh, smooth=False), note


def taught_foreground(svc: ExplorerService, image: Any, model: str, p: Prepared,
                      session: TeachSession | None) -> np.ndarray | str:
    """The taught head's foreground on this image, on the PCA's patch grid, or why there is none."""
    head = taught_head(session, "segmentation", p.backbone) if session is not None else ""
    if not isinstance(head, TaughtSegmentationHead):
        return (head or "Nothing taught yet: mark object and background in the Segmentation tab first.")
    own = head_features(svc, image, model, head.size, head.layer)  # the head is served on its own pixels
    mask = foreground_mask(head, own.features)
    if mask is None:
        return "The taught segmentation has no class called background."
    h, w = p.view.grid
    if mask.shape != (h, w):  # taught at another size or layer: map its cells onto this grid
        mask = cv2.resize(mask.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST).astype(bool)
    return mask


def build_tab(inp: Inputs, tau: gr.Slider) -> None:
    """PCA tab; `tau` is the TokenCut tab's slider (the foreground mask comes from there)."""
    svc = inp.service
    with gr.Tab("PCA", id="pca"):
        gr.Markdown("The three leading principal components of the patch features as red, green and blue: "
                    "patches with similar features get similar colours.")
        with gr.Row():
            fg = gr.Checkbox(label="Foreground only (fit the PCA on a foreground mask)", value=False)
            source = gr.Radio(list(MASK_SOURCES), value=MASK_SOURCES[0], label="Foreground from")
        view = image_output("PCA of patch features", height=480, elem_id="pca-view")
        info = gr.Markdown(elem_id="pca-info")

    state = session_state(inp)

    def pca(image: Any, model: str, size: float, layer: float, foreground_only: bool, tau: float,
            mask_source: str = MASK_SOURCES[0], session: TeachSession | None = None) -> tuple:
        return pca_view(svc, image, model, size, layer, foreground_only, tau, mask_source, session)

    fg.change(guard(pca), inputs=[*inp.base, fg, tau, source], outputs=[view, info], api_name="pca",
              api_description="PCA-RGB of the patch features; optionally fitted on the TokenCut foreground.")
    source.change(guard(pca), inputs=[*inp.base, fg, tau, source, state], outputs=[view, info],
                  api_visibility="private")
    def follow_tau(image: Any, model: str, size: float, layer: float, foreground_only: bool, tau_value: float,
                   mask_source: str, session: TeachSession) -> tuple:
        """A new τ changes the TokenCut mask, so a foreground-only PCA on it follows."""
        if not foreground_only or image is None or mask_source != MASK_SOURCES[0]:
            return gr.skip(), gr.skip()
        return pca_view(svc, image, model, size, layer, foreground_only, tau_value, mask_source, session)

    tau.release(guard(follow_tau), inputs=[*inp.base, fg, tau, source, state], outputs=[view, info],
                api_visibility="private", trigger_mode="always_last", show_progress="hidden")
    inp.on_new_features(pca, [*inp.base, fg, tau, source, state], [view, info])
