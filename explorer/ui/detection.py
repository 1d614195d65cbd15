"""Detection tab: boxes with class names and scores, and a score-threshold slider.

Two sources of boxes: the shipped detection head, or the segmentation taught in the Segmentation tab
(connected components of its class map, per class; score = the component's mean probability).

The shipped head runs once per (features, head) at the lowest threshold the slider allows and the result is
memoised on the cached features; moving the slider only filters by score and redraws. That equals
running the head at the higher threshold: class-wise NMS is greedy by score, so a box's fate depends
only on higher-scoring boxes, which pass any threshold it passes (up to the decoder's 50-box cap).

Which features: the head's card pixel spec (224, longer side) and layer, aspect kept, through the shared
cache — the same ``Backbone.preprocess`` path the head was trained on.
"""

from __future__ import annotations

import html
from typing import Any

import gradio as gr
import numpy as np

from explorer import viz
from explorer.heads.taught import TaughtSegmentationHead, boxes_from_segmentation
from explorer.ui.classification import (
    HEAD_CHOICES,
    TeachSession,
    entry_and_backbone,
    features_for,
    head_note,
    pick_head,
    session_state,
)
from explorer.ui.common import Inputs, guard, image_output
from explorer.ui.segmentation import taught_maps, taught_palette
from explorer.ui.service import ExplorerService

MIN_THRESHOLD = 0.05  # the slider's lowest value; the head is decoded once at this threshold
DEFAULT_THRESHOLD = 0.3


def detections_at(raw: dict[str, np.ndarray], class_names: list[str], threshold: float,
                  scale_xy: tuple[float, float]) -> list[dict[str, Any]]:
    """Boxes scoring >= threshold, best first, scaled from head-input pixels by ``scale_xy`` (sx, sy)."""
    sx, sy = scale_xy
    keep = np.nonzero(raw["scores"] >= threshold)[0]
    keep = keep[np.argsort(-raw["scores"][keep], kind="stable")]
    out = []
    for i in keep:
        x0, y0, x1, y1 = (float(v) for v in raw["boxes_xyxy"][i])
        label = int(raw["labels"][i])
        out.append({
            "label": class_names[label] if 0 <= label < len(class_names) else str(label),
            "class_id": label,
            "score": round(float(raw["scores"][i]), 4),
            "box_xyxy": [round(x0 * sx, 1), round(y0 * sy, 1), round(x1 * sx, 1), round(y1 * sy, 1)],
        })
    return out


def detection_view(
    svc: ExplorerService, image: Any, model: str, size: float, layer: float, score_threshold: float,
    session: TeachSession | None = None,
) -> tuple[np.ndarray, str, list[dict[str, Any]]]:
    """Boxes drawn on the display image, a markdown summary, and the detections as a list.

    Each detection: ``label``, ``class_id``, ``score``, ``box_xyxy`` in pixels of the original upload.
    Without a usable head: the plain image, the reason, and no detections.
    """
    entry, backbone = entry_and_backbone(svc, image, model)
    picked = pick_head(svc, backbone, "detection", session)
    if picked.head is None:
        return entry.display, picked.message, []
    head = picked.head
    p = features_for(svc, image, model, head)
    f = p.features
    thr = DEFAULT_THRESHOLD if score_threshold is None else max(MIN_THRESHOLD, float(score_threshold))
    (oh, ow) = f.image_size
    dw, dh = entry.display_wh
    if isinstance(head, TaughtSegmentationHead):
        classes, proba = taught_maps(head, p)
        every = boxes_from_segmentation(classes, proba, head.class_names, (ow / dw, oh / dh),
                                        min_area=max(1, int(dw * dh / (f.grid[0] * f.grid[1]))))
        dets = [d for d in every if d["score"] >= thr]
        drawn = viz.draw_detections(entry.display, dets, dw / ow, taught_palette(head.class_names), colour_offset=0)
        source = "Boxes from the taught segmentation (connected components; score = mean probability). "
    else:
        raw = p.view.memo(("det-raw", picked.key), lambda: head.predict(f))
        (ih, iw) = f.input_size
        dets = detections_at(raw, head.class_names, thr, (ow / iw, oh / ih))
        drawn = viz.draw_detections(entry.display, dets, dw / ow, viz.class_palette(len(head.class_names) + 1))
        source = f"{head.arch} head. "
    if dets:
        names = ", ".join(f"{html.escape(d['label'])} {d['score']:.2f}" for d in dets[:8])
        more = f" … (+{len(dets) - 8})" if len(dets) > 8 else ""
        text = f"**{len(dets)} object{'s' if len(dets) != 1 else ''}** with score ≥ {thr:.2f}: {names}{more}."
    else:
        text = f"**No object** scores ≥ {thr:.2f}; lower the threshold to see weaker boxes."
    text += f"\n\n{source}{head_note(p, head, picked.source)}"
    return drawn, text, dets


def build_tab(inp: Inputs) -> None:
    """Detection tab: boxes + tags, threshold slider (filter and redraw only), head choice."""
    svc = inp.service
    state = session_state(inp)
    with gr.Tab("Detection", id="detection"):
        gr.Markdown("Boxes with class names and scores — from the shipped detection head, or from the "
                    "segmentation you teach in the Segmentation tab. The threshold only filters boxes.")
        with gr.Row():
            choice = gr.Radio(HEAD_CHOICES, value="auto", label="Head", elem_id="det-head-choice")
            threshold = gr.Slider(MIN_THRESHOLD, 0.95, value=DEFAULT_THRESHOLD, step=0.01, label="Score threshold",
                                  elem_id="det-threshold")
        overlay = image_output("Detections", height=480, elem_id="det-overlay")
        note = gr.Markdown(elem_id="det-note")
        table = gr.JSON(label="Detections (original-image pixels)", elem_id="det-json")

    def detect(image: Any, model: str, size: float, layer: float, score_threshold: float,
               session: TeachSession | None = None) -> tuple:
        return detection_view(svc, image, model, size, layer, score_threshold, session)

    def set_choice(session: TeachSession, value: str, *args: Any) -> tuple:
        session.choice["detection"] = value
        if args[0] is None:
            return session, gr.skip(), gr.skip(), gr.skip()
        return (session, *detection_view(svc, *args, session))

    fn = guard(detect)
    threshold.input(fn, inputs=[*inp.base, threshold, state], outputs=[overlay, note, table], api_name="detect",
                    api_description="Boxes with class names and scores above score_threshold: overlay, summary, "
                                    "list of {label, class_id, score, box_xyxy (original pixels)}.",
                    trigger_mode="always_last", show_progress="hidden")
    choice.change(guard(set_choice), inputs=[state, choice, *inp.base, threshold],
                  outputs=[state, overlay, note, table], api_visibility="private")
    inp.on_new_features(detect, [*inp.base, threshold, state], [overlay, note, table])
