"""TokenCut tab: object discovery by normalised cut, live under the τ slider; MaskCut for N > 1."""

from __future__ import annotations

from typing import Any

import gradio as gr
import numpy as np
import pandas as pd

from explorer import viz
from explorer.analysis import MaskCutter, box_to_pixels
from explorer.ui.common import Inputs, guard, image_output
from explorer.ui.service import ExplorerService, Prepared, UserError
from explorer.ui.tau_table import slider_tokencut, warm_tokencut

DEFAULT_TAU = 0.2
SWEEP_TAUS = tuple(round(0.05 * i, 2) for i in range(1, 11))  # 0.05 … 0.50
MAX_OBJECTS = 8


def tokencut_view(
    svc: ExplorerService, image: Any, model: str, size: float, layer: float, tau: float
) -> tuple[np.ndarray, np.ndarray, str]:
    """Mask + box overlay, eigenvector map and a confidence line for threshold τ.

    This is exactly what the τ slider calls: features and the τ-independent affinity come from
    the caches, so only the eigen-solve (usually already in the τ table) and two renders run.
    """
    p = svc.prepare(image, model, size, layer)
    tau = float(DEFAULT_TAU if tau is None else tau)
    cut = slider_tokencut(svc, p.view, tau)
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


def _objects_n(n: Any) -> int:
    try:
        k = int(round(float(n)))
    except (TypeError, ValueError) as err:
        raise UserError(f"The number of objects must be a whole number from 1 to {MAX_OBJECTS}.") from err
    if not 1 <= k <= MAX_OBJECTS:
        raise UserError(f"The number of objects must be from 1 to {MAX_OBJECTS} (got {k}).")
    return k


def _tau(tau: Any) -> float:
    try:
        t = float(DEFAULT_TAU if tau is None else tau)
    except (TypeError, ValueError) as err:
        raise UserError("τ must be a number between 0 and 1.") from err
    if not 0.0 <= t < 1.0:
        raise UserError(f"τ must be between 0 and 1 (got {t}).")
    return t


def _cutter(p: Prepared) -> MaskCutter:
    graph = p.view.graph()  # outside memo: memo holds the view's lock while it makes the value
    return p.view.memo("maskcut", lambda: MaskCutter(graph))


def maskcut_view(
    svc: ExplorerService, image: Any, model: str, size: float, layer: float, tau: float, n: float
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Up to N objects drawn in distinct colours with their Ncut, and their boxes in upload pixels.

    N = 1 is TokenCut itself (the τ table's cut); N ≥ 2 is MaskCut, whose rounds are cached per τ,
    so moving N or revisiting a τ reruns only the rounds not yet cut.
    """
    k, tau = _objects_n(n), _tau(tau)
    p = svc.prepare(image, model, size, layer)
    f = p.features
    if k == 1:
        cut = slider_tokencut(svc, p.view, tau)
        items = [(cut.mask, cut.box, cut.ncut)]
    else:
        items = [(o.mask, o.box, o.ncut) for o in _cutter(p).run(tau, k).objects]
    grid = p.view.grid
    labels = [f"{i + 1}: Ncut {ncut:.2f}" for i, (_, _, ncut) in enumerate(items)]
    overlay = viz.draw_objects(p.entry.display, [m for m, _, _ in items], [b for _, b, _ in items], labels, grid)
    image_hw = p.entry.image_hw
    objects = [{
        "box_xyxy": [round(v, 1) for v in box_to_pixels(box, f.patch_size, f.input_size, image_hw)],
        "ncut": round(float(ncut), 4),
        "area": round(float(mask.mean()), 4),
    } for mask, box, ncut in items]
    return overlay, objects


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
                    "patch (largest eigenvector entry) picks the object side. Drag τ: it updates live. "
                    "With N > 1, MaskCut cuts again with the objects found so far removed, up to N objects.")
        with gr.Row():
            tau = gr.Slider(0.0, 0.6, value=DEFAULT_TAU, step=0.01, label="τ (graph threshold)", elem_id="tau-slider")
            n = gr.Slider(1, MAX_OBJECTS, value=1, step=1, label="N objects (1 = TokenCut, more = MaskCut)",
                          elem_id="maskcut-n")
        with gr.Row():
            overlay = image_output("Mask, box and seed", height=420, elem_id="tc-overlay")
            eig = image_output("Second eigenvector (red = object side)", height=420, elem_id="tc-eig")
        conf = gr.Markdown(elem_id="tc-conf")
        objects = gr.JSON(label="Objects (box in upload pixels, Ncut, area fraction)", elem_id="tc-objects")
        sweep_btn = gr.Button("Sweep τ")
        table = gr.Dataframe(label="τ sweep", interactive=False, elem_id="tc-sweep",
                             headers=["tau", "object_%", "ncut", "eigengap", "confident", "box (r0,c0,r1,c1)"])

    def tokencut(image: Any, model: str, size: float, layer: float, tau: float) -> tuple:
        return tokencut_view(svc, image, model, size, layer, tau)

    def maskcut(image: Any, model: str, size: float, layer: float, tau: float, n: float) -> tuple:
        return maskcut_view(svc, image, model, size, layer, tau, n)

    def follow(image: Any, model: str, size: float, layer: float, tau: float, n: float) -> tuple:
        """After a τ move: redraw the objects; with N = 1 the TokenCut overlay already shows them."""
        drawn, objs = maskcut_view(svc, image, model, size, layer, tau, n)
        return (gr.skip() if _objects_n(n) == 1 else drawn), objs

    def tokencut_sweep(image: Any, model: str, size: float, layer: float) -> pd.DataFrame:
        return tokencut_sweep_view(svc, image, model, size, layer)

    # The last value always wins: while a solve runs, intermediate slider values are dropped.
    tau.input(guard(tokencut), inputs=[*inp.base, tau], outputs=[overlay, eig, conf], api_name="tokencut",
              api_description="TokenCut mask/box overlay, eigenvector map and confidence at threshold tau.",
              trigger_mode="always_last", show_progress="hidden").then(
        guard(follow), inputs=[*inp.base, tau, n], outputs=[overlay, objects], api_visibility="private",
        show_progress="hidden")
    n.input(guard(maskcut), inputs=[*inp.base, tau, n], outputs=[overlay, objects], api_name="maskcut",
            api_description="MaskCut: up to n objects at threshold tau; overlay and a list of "
                            "{box_xyxy (upload pixels), ncut, area}. n = 1 is TokenCut.",
            trigger_mode="always_last", show_progress="hidden")
    sweep_btn.click(guard(tokencut_sweep), inputs=inp.base, outputs=[table],
                    api_name="tokencut_sweep", api_description="TokenCut at tau = 0.05 … 0.50.")

    def refresh(image: Any, model: str, size: float, layer: float, tau_value: float, n_value: float) -> tuple:
        tau_value = float(DEFAULT_TAU if tau_value is None else tau_value)
        out = tokencut_view(svc, image, model, size, layer, tau_value)
        drawn, objs = maskcut_view(svc, image, model, size, layer, tau_value, n_value or 1)
        warm_tokencut(svc, svc.prepare(image, model, size, layer).view, tau_value)
        return (out[0] if _objects_n(n_value or 1) == 1 else drawn), out[1], out[2], objs

    inp.on_new_features(refresh, [*inp.base, tau, n], [overlay, eig, conf, objects])
    return tau
