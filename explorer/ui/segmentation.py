"""Segmentation tab: a class map over the image from the shipped head or one taught here by clicking.

Teaching is by clicks on the picture (``gr.Image.select`` gives the pixel): each click labels the patch under
it (or a square brush of patches) with the current class. Clicks rather than ``gr.ImageEditor`` brush
layers because a click maps to exactly one original-image pixel (display -> original -> patch, the same
mapping the Similarity tab uses), each click is one undoable mark, it works on touch screens, and a script
can send the same points to ``/teach_segment``.

The class map of a shipped head is computed once per (features, head) and memoised; the opacity slider
only re-blends colours. A taught head is refitted only when the marks change (logistic regression on the
labelled patches' cached features: never a second forward).
"""

from __future__ import annotations

import json
from typing import Any

import gradio as gr
import numpy as np

from explorer import viz
from explorer.heads.base import Head
from explorer.heads.taught import (
    BACKGROUND_NAMES,
    DEFAULT_CLASSES,
    SegmentationTeacher,
    TaughtSegmentationHead,
    TeachError,
    brush_patches,
    mask_patches,
    parse_class_list,
    upsample,
)
from explorer.ui.classification import (
    HEAD_CHOICES,
    TeachSession,
    entry_and_backbone,
    features_for,
    head_features,
    head_file,
    head_file_row,
    head_note,
    pick_head,
    read_uploaded_head,
    recorded_metric_line,
    session_state,
    taught_head,
    teach_size_layer,
)
from explorer.ui.common import Inputs, guard, image_output
from explorer.ui.service import ExplorerService, Prepared, UserError
from explorer.ui.uploads import accept_only_uploads

DEFAULT_OPACITY = 0.55
MAX_BRUSH = 4  # patches around the clicked one


def taught_palette(class_names: list[str]) -> np.ndarray:
    """Colour of taught class k = ``class_palette(K + 1)[k + 1]`` (index 0 of the palette is black)."""
    return np.asarray(viz.class_palette(len(class_names) + 1)[1:])


def background_index(class_names: list[str]) -> int | None:
    return next((k for k, n in enumerate(class_names) if n.strip().lower() in BACKGROUND_NAMES), None)


def taught_maps(head: TaughtSegmentationHead, p: Prepared) -> tuple[np.ndarray, np.ndarray]:
    """(class map ``uint8[H, W]``, probabilities ``[H, W, K]``) at display size, from cached features."""
    dw, dh = p.entry.display_wh
    return upsample(head.patch_proba(p.features), (dh, dw))


def draw_marks(base: np.ndarray, teacher: SegmentationTeacher, image_key: str) -> np.ndarray:
    """The marks made on this image, as dots at their patch centres in the class colour."""
    marks = [m for m in teacher.marks if m.image_key == image_key]
    if not marks:
        return base
    H, W = base.shape[:2]
    pal = taught_palette(teacher.classes)
    pts, cols = [], []
    for m in marks:
        h, w = m.grid
        k = teacher.classes.index(m.class_name) if m.class_name in teacher.classes else 0
        for i in m.patches.tolist():
            r, c = divmod(i, w)
            pts.append(((c + 0.5) * W / w, (r + 0.5) * H / h))
            cols.append(tuple(int(v) for v in pal[k]))
    return viz.draw_points(base, pts, cols, radius=max(2, round(min(H / h, W / w) / 5)))


def segmentation_view(
    svc: ExplorerService, image: Any, model: str, size: float, layer: float, opacity: float,
    session: TeachSession | None = None,
) -> tuple[np.ndarray, str, str]:
    """Class-colour overlay at display resolution (with the session's marks), an HTML legend, a note.

    Without a usable head: the plain image (with marks), an empty legend, and the note says why.
    """
    entry, backbone = entry_and_backbone(svc, image, model)
    opacity = DEFAULT_OPACITY if opacity is None else float(np.clip(opacity, 0.0, 1.0))
    picked = pick_head(svc, backbone, "segmentation", session)
    marked = (lambda img: draw_marks(img, session.seg, entry.key)) if session is not None else (lambda img: img)
    if picked.head is None:
        return marked(entry.display), "", picked.message
    head = picked.head
    p = features_for(svc, image, model, head)
    if isinstance(head, TaughtSegmentationHead):
        classes, proba = taught_maps(head, p)
        pal, bg = taught_palette(head.class_names), background_index(head.class_names)
        overlay = viz.blend_classes(entry.display, classes, pal, opacity, skip=bg)
        legend = viz.class_legend_html(head.class_names, classes, pal, background=bg)
        counts = session.seg.counts() if session is not None and picked.source == "taught" else {}
        taught = ", ".join(f"{c}: {n}" for c, n in counts.items())
        fg = ""
        if bg is not None and len(head.class_names) == 2:
            fg = f" Foreground mask: {100 * float((classes != bg).mean()):.1f}% of the image."
        note = f"{head_note(p, head, picked.source)}{fg}" + (f"\n\nLabelled patches — {taught}." if taught else "")
        return marked(overlay), legend, note
    dw, dh = entry.display_wh
    classes = p.view.memo(("seg-map", picked.key, (dh, dw)), lambda: _shipped_map(head, p, (dh, dw)))
    palette = viz.class_palette(len(head.class_names))
    overlay = viz.blend_classes(entry.display, classes, palette, opacity)
    legend = viz.class_legend_html(head.class_names, classes, palette)
    note = f"{head_note(p, head, picked.source)} {recorded_metric_line(head.card, 'miou', 'mIoU')}".strip()
    return marked(overlay), legend, note


def _shipped_map(head: Head, p: Prepared, out_hw: tuple[int, int]) -> np.ndarray:
    from explorer.heads.segmentation import predict

    return predict(head, p.features.patches, out_hw)  # type: ignore[arg-type]


# ---------------------------------------------------------------- teaching
def teach_click(svc: ExplorerService, session: TeachSession, image: Any, model: str, size: float, layer: float,
                class_name: str, radius: float, xy_display: tuple[float, float]) -> str:
    """One click at display pixel (x, y): label the patches under the brush with ``class_name``."""
    entry, _ = entry_and_backbone(svc, image, model)
    x, y = float(xy_display[0]), float(xy_display[1])
    dw, dh = entry.display_wh
    if not (0 <= x < dw and 0 <= y < dh):
        raise UserError("That click is outside the image.")
    s, lay = teach_size_layer(session.seg, size, layer)
    p = head_features(svc, image, model, s, lay)
    row, col = p.patch_at(*p.to_original(x, y))
    try:
        mark = session.seg.add_mark(entry.key, p.features, brush_patches(p.features.grid, row, col,
                                                                          int(np.clip(radius or 0, 0, MAX_BRUSH))),
                                    class_name)
    except TeachError as err:
        raise UserError(str(err)) from err
    return f"Marked {len(mark.patches)} patch{'es' if len(mark.patches) != 1 else ''} as {mark.class_name!r}."


def teach_segment_api(svc: ExplorerService, image: Any, model: str, size: float, layer: float,
                      train_images: list[Any] | None, marks_json: str, classes_text: str,
                      opacity: float = DEFAULT_OPACITY) -> tuple[np.ndarray, dict[str, float], str]:
    """Stateless teaching. ``marks_json``: a JSON list of ``{"image": i, "x": .., "y": .., "class": name,
    "radius": r}`` (original-image pixels of training image i) or ``{"image": i, "class": name, "mask":
    [[0/1, ...], ...]}`` (a mask over image i, any resolution). Returns the query image's overlay, the
    per-class area fractions and the head file."""
    files = [f for f in (train_images or []) if f]
    if not files:
        raise UserError("Give at least one training image.")
    try:
        marks = json.loads(marks_json or "[]")
    except json.JSONDecodeError as err:
        raise UserError("marks must be JSON: a list of {image, x, y, class} or {image, class, mask}.") from err
    if not isinstance(marks, list) or not marks:
        raise UserError("Give at least one mark (a labelled point or mask).")
    session = TeachSession()
    names = parse_class_list(classes_text) if classes_text else []
    for m in marks:
        if isinstance(m, dict) and str(m.get("class", "")).strip() and str(m["class"]).strip() not in names:
            names.append(str(m["class"]).strip())
    try:
        session.seg.set_classes(names or list(DEFAULT_CLASSES))
    except TeachError as err:
        raise UserError(str(err)) from err
    for m in marks:
        if not isinstance(m, dict):
            raise UserError("Each mark must be an object with image, class and x/y or mask.")
        try:
            i = int(m.get("image", 0))
            f = files[i]
        except (ValueError, TypeError, IndexError) as err:
            raise UserError(f"Mark {m!r:.60} names no training image (there are {len(files)}).") from err
        s, lay = teach_size_layer(session.seg, size, layer)
        p = head_features(svc, f, model, s, lay)
        try:
            if "mask" in m:
                mask = np.asarray(m["mask"], dtype=np.float32)
                if mask.ndim != 2 or min(mask.shape) < 1:
                    raise UserError("A mask must be a 2-D list of 0/1 values.")
                idx = mask_patches(mask > 0, p.features.grid)
            else:
                oh, ow = p.entry.image_hw
                x, y = float(m["x"]), float(m["y"])
                if not (0 <= x < ow and 0 <= y < oh):
                    raise UserError(f"Point ({x:g}, {y:g}) is outside training image {i} ({ow}×{oh}).")
                row, col = p.patch_at(x, y)
                idx = brush_patches(p.features.grid, row, col, int(np.clip(m.get("radius", 0), 0, MAX_BRUSH)))
            session.seg.add_mark(p.entry.key, p.features, idx, str(m.get("class", "")))
        except (KeyError, ValueError, TypeError) as err:
            raise UserError(f"Bad mark {m!r:.60}: {err}") from err
    backbone = svc.backbone(model)
    head = taught_head(session, "segmentation", backbone)
    if isinstance(head, str):
        raise UserError(head)
    q = features_for(svc, image, model, head)
    classes, _ = taught_maps(head, q)
    pal, bg = taught_palette(head.class_names), background_index(head.class_names)
    overlay = viz.blend_classes(q.entry.display, classes, pal, float(np.clip(opacity, 0, 1)), skip=bg)
    counts = np.bincount(classes.ravel(), minlength=len(head.class_names)) / classes.size
    areas = {n: round(float(c), 4) for n, c in zip(head.class_names, counts, strict=True)}
    return overlay, areas, head_file(head, "segmentation")


def build_tab(inp: Inputs) -> None:
    """Segmentation tab: overlay (click to teach), legend, opacity; class list, brush, undo/clear, head files."""
    svc = inp.service
    state = session_state(inp)
    with gr.Tab("Segmentation", id="segmentation"):
        gr.Markdown("Every pixel coloured by its class — from the shipped head, or **teach one**: pick a class "
                    "and click on the picture to label the patches under the brush; click on a second image "
                    "to add to the same head, which then segments any upload.")
        with gr.Row():
            choice = gr.Radio(HEAD_CHOICES, value="auto", label="Head", elem_id="seg-head-choice")
            opacity = gr.Slider(0.0, 1.0, value=DEFAULT_OPACITY, step=0.05, label="Opacity", elem_id="seg-opacity")
        with gr.Row():
            classes_box = gr.Textbox(", ".join(DEFAULT_CLASSES), label="Classes (comma separated; edit to rename)",
                                     elem_id="seg-classes")
            current = gr.Radio(list(DEFAULT_CLASSES), value=DEFAULT_CLASSES[0], label="Class to mark",
                               elem_id="seg-current-class")
            radius = gr.Slider(0, MAX_BRUSH, value=1, step=1, label="Brush (patches around the click)",
                               elem_id="seg-brush")
        overlay = image_output("Segmentation (click to teach)", height=480, elem_id="seg-overlay")
        with gr.Row():
            undo_btn = gr.Button("Undo", elem_id="seg-undo")
            clear_btn = gr.Button("Clear", elem_id="seg-clear")
        legend = gr.HTML(elem_id="seg-legend")
        note = gr.Markdown(elem_id="seg-note")
        teach_note = gr.Markdown(elem_id="seg-teach-note")
        download, upload = head_file_row("seg")
        api_files = accept_only_uploads(gr.File(file_count="multiple", visible=False))
        api_marks = gr.Textbox(visible=False)
        api_classes = gr.Textbox(visible=False)
        api_overlay = gr.Image(visible=False, format="png")
        api_areas = gr.JSON(visible=False)
        api_file = gr.File(visible=False)
        api_btn = gr.Button(visible=False)

    def segment(image: Any, model: str, size: float, layer: float, opacity_value: float,
                session: TeachSession | None = None) -> tuple:
        return segmentation_view(svc, image, model, size, layer, opacity_value, session)

    def refreshed(session: TeachSession, image, model, size, layer, opacity_value, msg: str) -> tuple:
        backbone = svc.backbone(model)
        head = taught_head(session, "segmentation", backbone)
        file = head_file(head, "segmentation") if not isinstance(head, str) else None
        if isinstance(head, str) and head:
            msg = f"{msg} {head}"
        if image is None:
            return session, gr.skip(), gr.skip(), gr.skip(), msg, file
        over, leg, text = segmentation_view(svc, image, model, size, layer, opacity_value, session)
        return session, over, leg, text, msg, file

    def click(session, image, model, size, layer, opacity_value, class_name, brush, evt: gr.SelectData) -> tuple:
        msg = teach_click(svc, session, image, model, size, layer, class_name, brush, tuple(evt.index))
        return refreshed(session, image, model, size, layer, opacity_value, msg)

    def undo(session, image, model, size, layer, opacity_value) -> tuple:
        gone = session.seg.undo()
        return refreshed(session, image, model, size, layer, opacity_value,
                         "Undid the last mark." if gone else "Nothing to undo.")

    def clear(session, image, model, size, layer, opacity_value) -> tuple:
        session.seg.clear()
        return refreshed(session, image, model, size, layer, opacity_value, "Cleared every mark.")

    def edit_classes(session, text, current_value, image, model, size, layer, opacity_value) -> tuple:
        try:
            msg = session.seg.set_classes(parse_class_list(text))
        except TeachError as err:
            msg = f"⚠️ {err}"  # the list stays as it was; so do the marks
        names = session.seg.classes
        pick = current_value if current_value in names else (names[0] if names else None)
        out = refreshed(session, image, model, size, layer, opacity_value, msg)
        return (*out, gr.update(choices=names, value=pick), ", ".join(names))

    def set_choice(session, value, image, model, size, layer, opacity_value) -> tuple:
        session.choice["segmentation"] = value
        return refreshed(session, image, model, size, layer, opacity_value, "")

    def load_file(session, path, image, model, size, layer, opacity_value) -> tuple:
        session.uploaded["segmentation"] = read_uploaded_head(path, svc.backbone(model), "segmentation")
        session.choice["segmentation"] = "uploaded"
        out = refreshed(session, image, model, size, layer, opacity_value, "Loaded the head file.")
        return (*out, "uploaded")

    view_inputs = [*inp.base, opacity]
    teach_out = [state, overlay, legend, note, teach_note, download]
    opacity.input(guard(segment), inputs=[*view_inputs, state], outputs=[overlay, legend, note], api_name="segment",
                  api_description="Segmentation overlay at the given opacity, a legend (HTML) and a note.",
                  trigger_mode="always_last", show_progress="hidden")
    overlay.select(guard(click), inputs=[state, *view_inputs, current, radius], outputs=teach_out,
                   api_visibility="private", trigger_mode="always_last")
    undo_btn.click(guard(undo), inputs=[state, *view_inputs], outputs=teach_out, api_visibility="private")
    clear_btn.click(guard(clear), inputs=[state, *view_inputs], outputs=teach_out, api_visibility="private")
    classes_box.submit(guard(edit_classes), inputs=[state, classes_box, current, *view_inputs],
                       outputs=[*teach_out, current, classes_box], api_visibility="private")
    classes_box.blur(guard(edit_classes), inputs=[state, classes_box, current, *view_inputs],
                     outputs=[*teach_out, current, classes_box], api_visibility="private")
    choice.change(guard(set_choice), inputs=[state, choice, *view_inputs], outputs=teach_out,
                  api_visibility="private")
    upload.upload(guard(load_file), inputs=[state, upload, *view_inputs], outputs=[*teach_out, choice],
                  api_visibility="private")
    api_btn.click(guard(lambda image, model, size, layer, files, marks, names: teach_segment_api(
        svc, image, model, size, layer, files, marks, names)),
        inputs=[*inp.base, api_files, api_marks, api_classes], outputs=[api_overlay, api_areas, api_file],
        api_name="teach_segment",
        api_description="Stateless teaching: training images + JSON marks ({image, x, y, class[, radius]} in "
                        "original pixels, or {image, class, mask}) + class list -> overlay of the query image, "
                        "per-class area fractions, the taught head file.")
    inp.on_new_features(segment, [*view_inputs, state], [overlay, legend, note])
