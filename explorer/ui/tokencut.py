"""TokenCut tab: object discovery by normalised cut, live under the τ slider."""

from __future__ import annotations

from typing import Any

import gradio as gr
import numpy as np
import pandas as pd

from explorer import viz
from explorer.ui.common import Inputs, guard, image_output
from explorer.ui.service import ExplorerService, warm_tokencut

DEFAULT_TAU = 0.2
SWEEP_TAUS = tuple(round(0.05 * i, 2) for i in range(1, 11))  # 0.05 … 0.50


def tokencut_view(
    svc: ExplorerService, image: Any, model: str, size: float, layer: float, tau: float
) -> tuple[np.ndarray, np.ndarray, str]:
    """Mask + box overlay, eigenvector map and a confidence line for threshold τ.

    This is exactly what the τ slider calls: features and the τ-independent affinity come from
    the caches, so only the eigen-solve and two small renders run per move.
    """
    p = svc.prepare(image, model, size, layer)
    tau = float(DEFAULT_TAU if tau is None else tau)
    cut = p.view.tokencut(tau)
    grid = p.view.grid
    overlay = viz.mask_overlay(p.entry.display, cut.mask)
    overlay = viz.draw_box(overlay, cut.box, grid)
    overlay = viz.mark_patch(overlay, cut.seed[0], cut.seed[1], grid)
    ev = cut.eigenvector
    m = float(np.abs(ev).max()) or 1.0
    eig = viz.colorize(ev, "RdBu_r", vmin=-m, vmax=m, size=p.entry.display_wh, smooth=False)
    area = 100.0 * float(cut.mask.mean())
    r0, c0, r1, c1 = cut.box
    stats = (f"τ = {tau:.2f} · object {area:.1f}% of the image · box rows {r0}–{r1 - 1}, cols {c0}–{c1 - 1} · "
             f"Ncut {cut.ncut:.3f} · eigengap {cut.eigengap:.3f}")
    if cut.confident:
        text = f"**Object found.** {stats}"
    else:
        reason = cut.message.removeprefix("No clear object").lstrip(":. ").rstrip(".")
        text = f"⚠️ **No clear object** — {reason}. {stats}"
    return overlay, eig, text


def tokencut_sweep_view(
    svc: ExplorerService, image: Any, model: str, size: float, layer: float
) -> pd.DataFrame:
    """TokenCut at every τ in SWEEP_TAUS: how stable is the object as the threshold moves?"""
    p = svc.prepare(image, model, size, layer)
    rows = []
    for tau in SWEEP_TAUS:
        cut = p.view.tokencut(tau)
        rows.append({
            "tau": tau,
            "object_%": round(100.0 * float(cut.mask.mean()), 1),
            "ncut": round(float(cut.ncut), 4),
            "eigengap": round(float(cut.eigengap), 4),
            "confident": bool(cut.confident),
            "box (r0,c0,r1,c1)": str(tuple(int(v) for v in cut.box)),
        })
    return pd.DataFrame(rows)


def build_tab(inp: Inputs) -> gr.Slider:
    """TokenCut tab; returns the τ slider (the PCA tab's foreground mask uses it too)."""
    svc = inp.service
    with gr.Tab("TokenCut", id="tokencut"):
        gr.Markdown("TokenCut splits the patch graph (edges where cosine > τ) by a normalised cut; the seed "
                    "patch (largest eigenvector entry) picks the object side. Drag τ: it updates live.")
        tau = gr.Slider(0.0, 0.6, value=DEFAULT_TAU, step=0.01, label="τ (graph threshold)", elem_id="tau-slider")
        with gr.Row():
            overlay = image_output("Mask, box and seed", height=420, elem_id="tc-overlay")
            eig = image_output("Second eigenvector (red = object side)", height=420, elem_id="tc-eig")
        conf = gr.Markdown(elem_id="tc-conf")
        sweep_btn = gr.Button("Sweep τ")
        table = gr.Dataframe(label="τ sweep", interactive=False, elem_id="tc-sweep",
                             headers=["tau", "object_%", "ncut", "eigengap", "confident", "box (r0,c0,r1,c1)"])

    def tokencut(image: Any, model: str, size: float, layer: float, tau: float) -> tuple:
        return tokencut_view(svc, image, model, size, layer, tau)

    def tokencut_sweep(image: Any, model: str, size: float, layer: float) -> pd.DataFrame:
        return tokencut_sweep_view(svc, image, model, size, layer)

    fn = guard(tokencut)
    # The last value always wins: while a solve runs, intermediate slider values are dropped.
    tau.input(fn, inputs=[*inp.base, tau], outputs=[overlay, eig, conf], api_name="tokencut",
              api_description="TokenCut mask/box overlay, eigenvector map and confidence at threshold tau.",
              trigger_mode="always_last", show_progress="hidden")
    sweep_btn.click(guard(tokencut_sweep), inputs=inp.base, outputs=[table],
                    api_name="tokencut_sweep", api_description="TokenCut at tau = 0.05 … 0.50.")
    def refresh(image: Any, model: str, size: float, layer: float, tau_value: float) -> tuple:
        out = tokencut_view(svc, image, model, size, layer, tau_value)
        warm_tokencut(svc, svc.prepare(image, model, size, layer).view, float(tau_value or DEFAULT_TAU))
        return out

    inp.on_new_features(refresh, [*inp.base, tau], [overlay, eig, conf])
    return tau
