"""Compare tab: two backbones side by side on one image (Similarity, TokenCut, PCA, Gram, Gram loss).

A is the main panel's model and layer; B is picked here. Each side is answered by the single-model
tab's own view function on that model's cached features (`svc.prepare`), so each backbone runs once
per (image, size, layer) and a click, τ or ordering change runs none. Clicks are pixels of the upload;
each side maps them through its own patch grid, so patch-14 and patch-16 models line up.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import gradio as gr
import numpy as np

from explorer import viz
from explorer.analysis import gram_loss
from explorer.ui.common import Inputs, guard, image_output
from explorer.ui.gram import ORDERS, PLOT_SIDE
from explorer.ui.pca import pca_view
from explorer.ui.service import ExplorerService, UserError
from explorer.ui.similarity import similarity_view
from explorer.ui.tokencut import DEFAULT_TAU, tokencut_view

View = Callable[..., tuple]


def check_pair(svc: ExplorerService, model_a: str, layer_a: float | None, model_b: str,
               layer_b: float | None) -> None:
    """Refuse a B that fell back to a stand-in (A vs a stand-in is no comparison) and a layer a model lacks."""
    load_b = svc.load_model(model_b)
    if load_b.fell_back:
        raise UserError(f"Model B could not be loaded as asked: {load_b.message} Pick another model B.")
    for side, model, layer in (("A", model_a, layer_a), ("B", model_b, layer_b)):
        n = svc.backbone(model).num_layers
        if layer not in (None, "", 0) and not 1 <= int(layer) <= n:
            raise UserError(f"Model {side} has {n} layers: pick a layer from 1 to {n} (or leave it empty for the last).")


def last_if_empty(layer: float | str | None) -> float | None:
    """The tab's layer boxes read empty (which a Number may send as 0) as "the model's last layer"."""
    return None if layer in (None, "", 0) else layer


def side_by_side(view: View, svc: ExplorerService, image: Any, model_a: str, size: float, layer_a: float | None,
                 model_b: str, layer_b: float | None, *args: Any) -> tuple:
    """`view(svc, image, model, size, layer, *args)` for A and for B, outputs paired: (a0, b0, a1, b1, …)."""
    check_pair(svc, model_a, layer_a, model_b, layer_b)
    layer_a, layer_b = last_if_empty(layer_a), last_if_empty(layer_b)
    a = view(svc, image, model_a, size, layer_a, *args)
    b = view(svc, image, model_b, size, layer_b, *args)
    return tuple(v for pair in zip(a, b, strict=True) for v in pair)


def mask_view(svc: ExplorerService, image: Any, model: str, size: float, layer: float | None,
              tau: float) -> tuple[np.ndarray, str]:
    """TokenCut mask + box overlay and its text (the eigenvector map stays in the TokenCut tab)."""
    overlay, _, text = tokencut_view(svc, image, model, size, layer, tau)
    return overlay, text


def gram_plot_view(svc: ExplorerService, image: Any, model: str, size: float, layer: float | None,
                   order: str) -> tuple[Any, str]:
    """The reordered Gram matrix alone (the Gram tab's view also renders a row on the image)."""
    p = svc.prepare(image, model, size, layer)
    order = order if order in ORDERS else "pca"
    gram, perm = p.view.gram(), p.view.order(order)
    reordered = p.view.memo(("gram_reordered", order), lambda: gram[np.ix_(perm, perm)])
    h, w = p.view.grid
    fig = viz.gram_figure(reordered, max_side=PLOT_SIDE, title=f"{p.features.model_id}, layer {p.features.layer}")
    return fig, f"{h}×{w} grid = {h * w} patches, ordered by {order}."


def compare_gram_loss_view(svc: ExplorerService, image: Any, model_a: str, size: float, layer_a: float | None,
                           model_b: str, layer_b: float | None) -> tuple[float, str]:
    """Gram loss between A's and B's patch features (B resampled to A's grid by `gram_loss`)."""
    check_pair(svc, model_a, layer_a, model_b, layer_b)
    a = svc.prepare(image, model_a, size, last_if_empty(layer_a)).features
    b = svc.prepare(image, model_b, size, last_if_empty(layer_b)).features
    loss = gram_loss(a.patches, b.patches)
    resampled = "" if a.grid == b.grid else f" B's {b.grid[0]}×{b.grid[1]} grid was resampled to A's {a.grid[0]}×{a.grid[1]}."
    text = (f"**Gram loss** (A: {a.model_id} layer {a.layer} vs B: {b.model_id} layer {b.layer}) = **{loss:.5f}** — "
            f"mean squared difference of the two cosine Gram matrices (0 = same patch-similarity structure, max 4).{resampled}")
    return loss, text


def model_b_line(svc: ExplorerService, model_b: str) -> str:
    """One status line for B; never raises, so a bad source is shown rather than thrown."""
    load = svc.load_model(model_b)
    if load.fell_back:
        return f"❌ **Model B could not be loaded as asked.** {load.message}"
    bb = load.backbone
    return f"B: **{bb.model_id}** — {bb.num_layers} layers, {bb.hidden_size}-d, patch {bb.patch_size}, {bb.num_registers} registers."


def compare_session(svc: ExplorerService, image: Any, model_a: str, model_b: str, size: float) -> None:
    """Every compare view once, as a user opening the tab and using each control does."""
    base = (svc, image, model_a, size, None, model_b, None)
    side_by_side(similarity_view, *base, None, None)
    side_by_side(mask_view, *base, DEFAULT_TAU)
    side_by_side(pca_view, *base, False, DEFAULT_TAU)
    side_by_side(gram_plot_view, *base, "pca")
    compare_gram_loss_view(*base)


@contextmanager
def counting_forwards(svc: ExplorerService, *models: str) -> Iterator[Counter]:
    """Count `Backbone.forward_batch` calls per source while the block runs (for benchmarks)."""
    counts: Counter = Counter()
    patched = []
    for source in dict.fromkeys(models):
        bb = svc.backbone(source)
        if "forward_batch" in vars(bb):
            continue  # the same backbone under two names: already counted
        original = bb.forward_batch

        def counted(*args: Any, _source: str = source, _original: Callable = original, **kw: Any) -> Any:
            counts[_source] += 1
            return _original(*args, **kw)

        bb.forward_batch = counted  # type: ignore[method-assign]
        patched.append(bb)
    try:
        yield counts
    finally:
        for bb in patched:
            del bb.forward_batch


def session_forwards(svc: ExplorerService, image: Any, model_a: str, model_b: str, size: float) -> int:
    """Backbone forwards one compare session costs on a fresh image: 2 (one per backbone)."""
    with counting_forwards(svc, model_a, model_b) as counts:
        compare_session(svc, image, model_a, model_b, size)
    return sum(counts.values())


def build_tab(inp: Inputs) -> None:
    """Compare tab: a second model picker and each view for A and B side by side."""
    svc = inp.service

    def pair(make: Callable[[str], Any]) -> tuple[Any, Any]:
        with gr.Row():
            return make("a"), make("b")

    with gr.Tab("Compare", id="compare") as tab:
        gr.Markdown("Two backbones on the same image: **A** is the model of the left panel, **B** the one picked "
                    "here. Each runs once per image; clicks and sliders answer from the cached features.")
        with gr.Row():
            model_b = gr.Dropdown(list(inp.model.choices), value=inp.model.value,
                                  allow_custom_value=not inp.service.policy.public, label="Model B",
                                  elem_id="cmp-model-b")
            layer_b = gr.Number(None, precision=0, label="Layer of B (empty = last)", elem_id="cmp-layer-b")
        status_b = gr.Markdown(elem_id="cmp-status")

        gr.Markdown("### Similarity — click either image")
        sim = pair(lambda s: image_output(f"{s.upper()}: similarity to the clicked patch", height=320,
                                          elem_id=f"cmp-sim-{s}"))
        sim_info = pair(lambda s: gr.HTML(elem_id=f"cmp-sim-info-{s}"))
        with gr.Row():
            x = gr.Number(None, label="x (pixels of the upload)", precision=0, minimum=0)
            y = gr.Number(None, label="y (pixels of the upload)", precision=0, minimum=0)

        gr.Markdown("### TokenCut at the same τ")
        tau = gr.Slider(0.0, 0.6, value=DEFAULT_TAU, step=0.01, label="τ (graph threshold)", elem_id="cmp-tau")
        cut = pair(lambda s: image_output(f"{s.upper()}: mask, box and seed", height=320, elem_id=f"cmp-tc-{s}"))
        cut_text = pair(lambda s: gr.Markdown(elem_id=f"cmp-tc-text-{s}"))

        gr.Markdown("### PCA")
        fg = gr.Checkbox(label="Foreground only (fit each PCA on its own TokenCut mask at τ)", value=False)
        pca = pair(lambda s: image_output(f"{s.upper()}: PCA of patch features", height=320, elem_id=f"cmp-pca-{s}"))
        pca_note = pair(lambda s: gr.Markdown(elem_id=f"cmp-pca-note-{s}"))

        gr.Markdown("### Gram matrices")
        order = gr.Radio(ORDERS, value="pca", label="Order patches by (both)")
        plot = pair(lambda s: gr.Plot(label=f"{s.upper()}: Gram matrix", elem_id=f"cmp-gram-{s}"))
        plot_info = pair(lambda s: gr.Markdown(elem_id=f"cmp-gram-info-{s}"))

        gr.Markdown("### Gram loss between A and B")
        loss_btn = gr.Button("Compute Gram loss")
        loss = gr.Number(label="Gram loss", interactive=False, elem_id="cmp-loss")
        loss_text = gr.Markdown(elem_id="cmp-loss-text")
        opened = gr.State(False)  # refresh on new features only once the tab has been looked at
        shown_key = gr.State("")  # the image the click point belongs to

    ab = [*inp.base, model_b, layer_b]
    sim_out, cut_out = [*sim, *sim_info], [*cut, *cut_text]
    pca_out, plot_out = [*pca, *pca_note], [*plot, *plot_info]
    views = [*sim_out, *cut_out, *pca_out, *plot_out]

    # API handlers: named parameters, so gradio_client callers can pass them by name.
    def similarity(image: Any, model_a: str, size: float, layer_a: float, model_b: str, layer_b: float | None,
                   x: float | None, y: float | None) -> tuple:
        return side_by_side(similarity_view, svc, image, model_a, size, layer_a, model_b, layer_b, x, y)

    def tokencut(image: Any, model_a: str, size: float, layer_a: float, model_b: str, layer_b: float | None,
                 tau: float) -> tuple:
        return side_by_side(mask_view, svc, image, model_a, size, layer_a, model_b, layer_b, tau)

    def pca_ab(image: Any, model_a: str, size: float, layer_a: float, model_b: str, layer_b: float | None,
               foreground_only: bool, tau: float) -> tuple:
        return side_by_side(pca_view, svc, image, model_a, size, layer_a, model_b, layer_b, foreground_only, tau)

    def gram(image: Any, model_a: str, size: float, layer_a: float, model_b: str, layer_b: float | None,
             order: str) -> tuple:
        return side_by_side(gram_plot_view, svc, image, model_a, size, layer_a, model_b, layer_b, order)

    def gram_loss_ab(image: Any, model_a: str, size: float, layer_a: float, model_b: str,
                     layer_b: float | None) -> tuple:
        return compare_gram_loss_view(svc, image, model_a, size, layer_a, model_b, layer_b)

    def on_select(image: Any, model: str, size: float, layer: float, mb: str, lb: float | None,
                  evt: gr.SelectData) -> tuple:
        """A click on either overlay (both are shown at the display size of the one upload)."""
        ox, oy = svc.prepare(image, model, size, last_if_empty(layer)).to_original(*evt.index[:2])
        return *similarity(image, model, size, layer, mb, lb, ox, oy), round(ox), round(oy)

    def follow_tau(image: Any, model: str, size: float, layer: float, mb: str, lb: float | None, fg_only: bool,
                   t: float) -> tuple:
        """A new τ changes the masks, so a foreground-only PCA follows it."""
        if image is None or not fg_only:
            return tuple(gr.skip() for _ in pca_out)
        return pca_ab(image, model, size, layer, mb, lb, fg_only, t)

    for view in sim:
        view.select(guard(on_select), inputs=ab, outputs=[*sim_out, x, y], api_visibility="private",
                    trigger_mode="always_last", show_progress="hidden")
    gr.on([x.submit, y.submit], guard(similarity), inputs=[*ab, x, y], outputs=sim_out,
          api_name="compare_similarity",
          api_description="Similarity heatmaps of A and B to the patch under pixel (x, y) of the image.")
    tau.input(guard(tokencut), inputs=[*ab, tau], outputs=cut_out, api_name="compare_tokencut",
              api_description="TokenCut mask/box overlays and texts of A and B at the same tau.",
              trigger_mode="always_last", show_progress="hidden")
    tau.release(guard(follow_tau), inputs=[*ab, fg, tau], outputs=pca_out, api_visibility="private",
                trigger_mode="always_last", show_progress="hidden")
    fg.change(guard(pca_ab), inputs=[*ab, fg, tau], outputs=pca_out, api_name="compare_pca",
              api_description="PCA-RGB images and notes of A and B.")
    order.change(guard(gram), inputs=[*ab, order], outputs=plot_out, api_name="compare_gram",
                 api_description="Reordered Gram matrices (plotly) of A and B, same ordering method.")
    loss_btn.click(guard(gram_loss_ab), inputs=ab, outputs=[loss, loss_text],
                   api_name="compare_gram_loss",
                   api_description="Gram loss between A's and B's patch features (B resampled to A's grid).")

    # Whole-tab renders: B or its layer changed, the tab was opened, or (once opened) the main features changed.
    def render(image: Any, model: str, size: float, layer: float, mb: str, lb: float | None, xx: float | None,
               yy: float | None, t: float, fg_only: bool, o: str) -> tuple:
        if image is None:
            return tuple(gr.skip() for _ in views)
        a_b = (image, model, size, layer, mb, lb)
        return (*similarity(*a_b, xx, yy), *tokencut(*a_b, t), *pca_ab(*a_b, fg_only, t), *gram(*a_b, o))

    def show(key: str, last_key: str, image: Any, model: str, size: float, layer: float, mb: str, lb: float | None,
             xx: float | None, yy: float | None, *rest: Any) -> tuple:
        """`render`; a new image starts at its centre (the old click point means nothing there)."""
        if key != last_key:
            oh, ow = svc.image(image).image_hw
            xx, yy = ow // 2, oh // 2
        return *render(image, model, size, layer, mb, lb, xx, yy, *rest), xx, yy, key

    def on_model_b(mb: str) -> tuple:
        load = svc.load_model(mb)
        return model_b_line(svc, mb), (None if load.fell_back else load.backbone.num_layers)

    def on_open(key: str, *args: Any) -> tuple:
        shown = show(key, *args) if key else tuple(gr.skip() for _ in shown_out)
        return True, model_b_line(svc, args[5]), *shown

    def on_new_features(key: str, is_open: bool, *args: Any) -> tuple:
        return show(key, *args) if is_open else tuple(gr.skip() for _ in shown_out)

    render_in = [*ab, x, y, tau, fg, order]
    shown_out = [*views, x, y, shown_key]
    model_b.change(guard(on_model_b), inputs=[model_b], outputs=[status_b, layer_b], api_visibility="private").then(
        guard(render), inputs=render_in, outputs=views, api_visibility="private")
    gr.on([layer_b.submit, layer_b.blur], guard(render), inputs=render_in, outputs=views,
          api_visibility="private", trigger_mode="always_last")
    tab.select(guard(on_open), inputs=[inp.key, shown_key, *render_in], outputs=[opened, status_b, *shown_out],
               api_visibility="private")
    inp.on_new_features(on_new_features, [opened, shown_key, *render_in], shown_out, with_key=True)
