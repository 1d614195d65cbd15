"""The app: the input panel on the left, one tab per module on the right, and the event wiring.

Adding a tab = one module with `build_tab(inp: Inputs)` + one line in `build_tabs` below.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import gradio as gr

from explorer.backbone import BUNDLED_DIR, catalog_choices
from explorer.ui import classification, compare, detection, gram, pca, segmentation, similarity, tokencut
from explorer.ui.common import Inputs, checked_by_service, guard, safe_image
from explorer.ui.policy import ModelPolicy
from explorer.ui.service import DEFAULT_SIZE, SIZES, ExplorerService, Notify, UserError

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLES_DIR = REPO_ROOT / "assets" / "examples"
# Gradio's sweep of its temp files (uploads and rendered frames): (every, older than) seconds.
DELETE_CACHE_LOCAL = (3600, 3600)
LOADING = "⏳ Loading the model … the first view waits for it."
PROGRESS = gr.Progress()  # a marker default: Gradio hands each call its own tracker in its place
DELETE_CACHE_PUBLIC = (600, 1800)  # strangers upload all day: a decoded upload stays usable from memory

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


def features_view(
    svc: ExplorerService, image: Any, model: str, size: float, layer: float, notify: Notify | None = None
) -> tuple[str, dict, str]:
    """Run (or fetch) the features; never raises so the status line can show what went wrong.

    Returns (status markdown, summary dict, image key); the key is "" when the request failed,
    which tells the chained tab refreshes to skip. `notify` hears of a model load or forward.
    """
    load = svc.load_model(model, notify)
    model_line = _model_line(load)
    if load.backbone is None:
        return model_line, {"error": load.message}, ""
    if image is None:
        return f"{model_line}\n\nUpload an image or pick an example.", {}, ""
    try:
        p = svc.prepare(image, model, size, layer, notify)
    except UserError as err:
        return f"{model_line}\n\n⚠️ **{err}**", {"error": str(err)}, ""
    f = p.features
    h, w = f.grid
    oh, ow = p.entry.image_hw
    notes = "; ".join(p.entry.notes)
    status = (f"{model_line}\n\nImage {ow}×{oh} → model input "
              f"{f.input_size[1]}×{f.input_size[0]} px = {h}×{w} patches, layer {f.layer}/{p.backbone.num_layers}."
              + (f" Note: {notes}." if notes else ""))
    summary = {
        "model_id": f.model_id, "layer": f.layer, "num_layers": p.backbone.num_layers,
        "grid": [h, w], "input_size": list(f.input_size), "image_size": list(f.image_size),
        "patch_size": f.patch_size, "num_registers": int(f.registers.shape[0]), "dim": f.dim,
        "notes": p.entry.notes,
    }
    return status, summary, p.entry.key


def folder_num_layers(source: str) -> int | None:
    """Depth of a bundled or folder model read from its config.json, without importing transformers."""
    folder = BUNDLED_DIR if source == "bundled" else Path(source).expanduser()
    try:
        value = json.loads((folder / "config.json").read_text()).get("num_hidden_layers")
    except (OSError, ValueError, AttributeError):
        return None
    return int(value) if isinstance(value, int) and value > 0 else None


def progress_notify(progress: gr.Progress) -> Notify:
    """A `Notify` that shows the step in Gradio's progress indicator (steps of unknown total)."""
    return lambda message: progress((0, None), desc=message)


def _model_line(load: Any) -> str:
    if load.backbone is None:
        return f"❌ **No backbone loaded.** {load.message}"
    bb = load.backbone
    fell = " (⚠️ fell back: the requested source could not be loaded)" if load.fell_back else ""
    convnext = bb.family == "dinov3-convnext"
    tokens = f"{bb.num_registers} registers" if bb.has_registers else "no register tokens"
    if convnext:
        tokens += " (a ConvNeXt: its pooled token stands in for the CLS)"
    unit = "stages" if convnext else "layers"
    text = f"✅ Model: **{bb.model_id}** — {bb.num_layers} {unit}, {bb.hidden_size}-d, patch {bb.patch_size}, " \
           f"{tokens}, on {bb.device.type} ({bb.precision}){fell}."
    if load.fell_back or getattr(load, "requested", "") == "auto":
        text += f"\n\n{load.message}"  # which model "auto" chose, and why
    return text


def model_choices(svc: ExplorerService, source: str) -> tuple[list[tuple[str, str]], bool]:
    """(label, source) pairs for the model box, and whether free text is allowed.

    Local mode lists the whole catalogue (labels carry parameters, download size, memory, CPU time,
    and which sources need HF_TOKEN); public mode only the allow-list, labelled from the catalogue.
    """
    if svc.policy.public:
        labels = dict(catalog_choices())
        return [(labels.get(s, s), s) for s in svc.policy.allowed], False
    listed = catalog_choices()
    if source not in {value for _, value in listed}:
        listed = [(source, source), *listed]
    return listed, True


def build_app(service: ExplorerService | None = None, default_source: str | None = None,
              public: bool = False) -> gr.Blocks:
    """The whole Blocks app. The default model is loaded here so the layer picker has its range.

    `public` (or the service's policy) restricts the model box to the allow-list; sliders and the
    model box pass raw values so the service checks them against the model each call names.
    """
    source = default_source or (service.default_source if service else None) or "bundled"
    svc = service or ExplorerService(source, policy=ModelPolicy.from_env(public, source))
    public = svc.policy.public
    load = svc.loaded(source)
    num_layers = folder_num_layers(source) if load is None else None
    if load is None and num_layers is None:
        load = svc.load_model(source)  # a hub or timm source: its depth is known once it is loaded
    if load is not None:
        num_layers = load.backbone.num_layers if load.backbone else 12
    status_text = _model_line(load) if load is not None else LOADING
    examples = sorted(str(p) for p in EXAMPLES_DIR.glob("*.jpg"))
    choices, custom = model_choices(svc, source)
    model_info = ("the models this server offers" if public else
                  "pick one (parameters, download, RAM, CPU ms at 448 px) or type a local folder, hub id or timm name")

    with gr.Blocks(title="DINOv3 Explorer", delete_cache=DELETE_CACHE_PUBLIC if public else DELETE_CACHE_LOCAL) as demo:
        gr.Markdown(INTRO)
        with gr.Row():
            with gr.Column(scale=1, min_width=320):
                image = safe_image(label="Image", sources=["upload", "clipboard"], height=300,
                                  elem_id="input-image")
                if examples:
                    gr.Examples(examples, inputs=image, label="Examples (CC0 / public domain)")
                model = checked_by_service(gr.Dropdown(choices, value=source, allow_custom_value=custom,
                                                       label="Model", info=model_info))
                size = checked_by_service(gr.Slider(SIZES[0], SIZES[1], value=DEFAULT_SIZE, step=SIZES[2],
                                                    label="Resolution (longer side, px)"))
                layer = checked_by_service(gr.Slider(1, num_layers, value=num_layers, step=1,
                                                     label="Layer (1 … last)"))
                status = gr.Markdown(status_text, elem_id="status")
                summary = gr.JSON(label="Features", visible=False)
                key = gr.State("")
                stats = gr.JSON(visible=False)
                stats_btn = gr.Button(visible=False)
            with gr.Column(scale=2):
                inp = Inputs(svc, image, model, size, layer, status, key)
                with gr.Tabs():
                    build_tabs(inp)

        def features(image: Any, model: str, size: float, layer: float, progress: gr.Progress = PROGRESS) -> tuple:
            return features_view(svc, image, model, size, layer, progress_notify(progress))

        def on_model(source_value: str, layer_value: float | None,
                     progress: gr.Progress = PROGRESS) -> tuple:
            res = svc.load_model(source_value, progress_notify(progress))
            n = res.backbone.num_layers if res.backbone else 12
            return _model_line(res), gr.update(maximum=n, value=n)

        def on_page_load(layer_value: float | None) -> tuple:
            """Each visit: the start model's line and layer range (waits if it is still loading)."""
            res = svc.load_model(source)
            if res.backbone is None:
                return _model_line(res), gr.skip()
            n = res.backbone.num_layers
            return _model_line(res), gr.update(maximum=n, value=min(int(layer_value or n), n))

        demo.load(guard(on_page_load), inputs=[layer], outputs=[status, layer], api_visibility="private",
                  show_progress="minimal")

        def server_stats() -> dict:
            return svc.stats()

        stats_btn.click(server_stats, None, stats, api_name="server_stats", api_visibility="undocumented")
        feat = gr.on([image.change, size.release, layer.release], guard(features), inputs=inp.base,
                     outputs=[status, summary, key], api_name="features",
                     api_description="Run/fetch the backbone features; returns status, a summary and the image key.",
                     trigger_mode="always_last")
        model_evt = model.change(guard(on_model), inputs=[model, layer], outputs=[status, layer],
                                 api_visibility="private")
        model_feat = model_evt.then(guard(features), inputs=inp.base, outputs=[status, summary, key],
                                    api_visibility="private")
        for dep in (feat, model_feat):
            for r in inp.refreshes:
                dep.then(r.fn, inputs=list(r.inputs), outputs=list(r.outputs), api_visibility="private",
                         show_progress="hidden")
    return demo
