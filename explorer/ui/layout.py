"""The app: the input panel on the left, one tab per module on the right, and the event wiring.

Adding a tab = one module with `build_tab(inp: Inputs)` + one line in `build_tabs` below.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr

from explorer.backbone import DEFAULT_HUB_ID
from explorer.ui import classification, compare, detection, gram, pca, segmentation, similarity, tokencut
from explorer.ui.common import Inputs, guard, safe_image
from explorer.ui.service import DEFAULT_SIZE, SIZES, ExplorerService, UserError

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLES_DIR = REPO_ROOT / "assets" / "examples"
MODEL_CHOICES = ["bundled", DEFAULT_HUB_ID, "timm:vit_small_patch16_dinov3.lvd1689m"]

INTRO = """# DINOv3 Explorer
Upload a photo (or pick an example): the backbone runs **once**, then every click and slider below
answers from the cached features. Tabs: **Similarity** (click a patch), **PCA**, **Gram**, **TokenCut**,
and the task heads: **Detection**, **Segmentation**, **Classification**."""


def build_tabs(inp: Inputs) -> None:
    """One line per tab. Task-head tabs (detection, segmentation, classification) go at the marked place."""
    similarity.build_tab(inp)
    tau = tokencut.build_tab(inp)
    pca.build_tab(inp, tau)
    gram.build_tab(inp)
    compare.build_tab(inp)
    # --- Task-head tabs: add `explorer/ui/<name>.py` with `build_tab(inp)` and one line here.
    detection.build_tab(inp)
    segmentation.build_tab(inp)
    classification.build_tab(inp)


def features_view(svc: ExplorerService, image: Any, model: str, size: float, layer: float) -> tuple[str, dict, str]:
    """Run (or fetch) the features; never raises so the status line can show what went wrong.

    Returns (status markdown, summary dict, image key); the key is "" when the request failed,
    which tells the chained tab refreshes to skip.
    """
    load = svc.load_model(model)
    model_line = _model_line(load)
    if image is None:
        return f"{model_line}\n\nUpload an image or pick an example.", {}, ""
    try:
        p = svc.prepare(image, model, size, layer)
    except UserError as err:
        return f"{model_line}\n\n⚠️ **{err}**", {"error": str(err)}, ""
    f = p.features
    h, w = f.grid
    notes = "; ".join(p.entry.notes)
    status = (f"{model_line}\n\nImage {p.entry.original_size[0]}×{p.entry.original_size[1]} → model input "
              f"{f.input_size[1]}×{f.input_size[0]} px = {h}×{w} patches, layer {f.layer}/{p.backbone.num_layers}."
              + (f" Note: {notes}." if notes else ""))
    summary = {
        "model_id": f.model_id, "layer": f.layer, "num_layers": p.backbone.num_layers,
        "grid": [h, w], "input_size": list(f.input_size), "image_size": list(f.image_size),
        "patch_size": f.patch_size, "num_registers": int(f.registers.shape[0]), "dim": f.dim,
        "notes": p.entry.notes,
    }
    return status, summary, p.entry.key


def _model_line(load: Any) -> str:
    if load.backbone is None:
        return f"❌ **No backbone loaded.** {load.message}"
    bb = load.backbone
    fell = " (⚠️ fell back: the requested source could not be loaded)" if load.fell_back else ""
    text = f"✅ Model: **{bb.model_id}** — {bb.num_layers} layers, {bb.hidden_size}-d, patch {bb.patch_size}, " \
           f"{bb.num_registers} registers, on {bb.device.type}{fell}."
    if load.fell_back:
        text += f"\n\n{load.message}"
    return text


def build_app(service: ExplorerService | None = None, default_source: str | None = None) -> gr.Blocks:
    """The whole Blocks app. The default model is loaded here so the layer picker has its range."""
    svc = service or ExplorerService(default_source)
    source = default_source or svc.default_source
    load = svc.load_model(source)
    num_layers = load.backbone.num_layers if load.backbone else 12
    examples = sorted(str(p) for p in EXAMPLES_DIR.glob("*.jpg"))
    choices = MODEL_CHOICES if source in MODEL_CHOICES else [source, *MODEL_CHOICES]

    # Every rendered frame is a file in Gradio's cache; sweep files older than an hour, hourly.
    with gr.Blocks(title="DINOv3 Explorer", delete_cache=(3600, 3600)) as demo:
        gr.Markdown(INTRO)
        with gr.Row():
            with gr.Column(scale=1, min_width=320):
                image = safe_image(label="Image", sources=["upload", "clipboard"], height=300,
                                  elem_id="input-image")
                if examples:
                    gr.Examples(examples, inputs=image, label="Examples (CC0 / public domain)")
                model = gr.Dropdown(choices, value=source, allow_custom_value=True, label="Model",
                                    info="bundled · a local folder path · a hub id (needs HF_TOKEN) · timm:<name>")
                size = gr.Slider(SIZES[0], SIZES[1], value=DEFAULT_SIZE, step=SIZES[2],
                                 label="Resolution (longer side, px)")
                layer = gr.Slider(1, num_layers, value=num_layers, step=1, label="Layer (1 … last)")
                status = gr.Markdown(_model_line(load), elem_id="status")
                summary = gr.JSON(label="Features", visible=False)
                key = gr.State("")
            with gr.Column(scale=2):
                inp = Inputs(svc, image, model, size, layer, status, key)
                with gr.Tabs():
                    build_tabs(inp)

        def features(image: Any, model: str, size: float, layer: float) -> tuple:
            return features_view(svc, image, model, size, layer)

        def on_model(source_value: str) -> tuple:
            res = svc.load_model(source_value)
            n = res.backbone.num_layers if res.backbone else 12
            return _model_line(res), gr.update(maximum=n, value=n)

        feat = gr.on([image.change, size.release, layer.release], guard(features), inputs=inp.base,
                     outputs=[status, summary, key], api_name="features",
                     api_description="Run/fetch the backbone features; returns status, a summary and the image key.",
                     trigger_mode="always_last")
        model_evt = model.change(guard(on_model), inputs=[model], outputs=[status, layer], api_visibility="private")
        model_feat = model_evt.then(guard(features), inputs=inp.base, outputs=[status, summary, key],
                                    api_visibility="private")
        for dep in (feat, model_feat):
            for r in inp.refreshes:
                dep.then(r.fn, inputs=list(r.inputs), outputs=list(r.outputs), api_visibility="private",
                         show_progress="hidden")
    return demo
