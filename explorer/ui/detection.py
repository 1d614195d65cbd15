"""Detection tab: the detection head's boxes with class names and scores, and a score-threshold slider.

The head runs once per (features, head) at the lowest threshold the slider allows and the result is
memoised on the cached features; moving the slider only filters by score and redraws. That equals
running the head at the higher threshold: class-wise NMS is greedy by score, so a box's fate depends
only on higher-scoring boxes, which pass any threshold it passes (up to the decoder's 50-box cap).

Which features: the head's card size (224, longer side) and layer, aspect kept, through the shared
cache. The heads were trained on square 224-px resizes, but the dense head is convolutional over the
patch grid, and measured on non-square inputs the aspect-kept grid is the better choice: a dense head
trained on 1200 square world scenes (tiny random 64-d backbone, 10 epochs, class-agnostic) scored
mAP 0.182 / AP50 0.509 on square test scenes, and on 200 crops of 224x140 / 140x224 px mAP 0.175 /
AP50 0.475 with aspect-kept grids vs 0.131 / 0.402 when the crop was squashed to 224x224 as in training.
"""

from __future__ import annotations

import html
from typing import Any

import cv2
import gradio as gr
import numpy as np

from explorer.heads.detection import load_head, predict
from explorer.ui.classification import entry_and_backbone, head_features, head_note, lookup_head
from explorer.ui.common import Inputs, guard, image_output
from explorer.ui.segmentation import class_palette
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


def draw_detections(base: np.ndarray, dets: list[dict[str, Any]], scale: float, palette: np.ndarray) -> np.ndarray:
    """Boxes (original-image pixels times ``scale`` = display pixels) with a "name score" tag each."""
    out = np.ascontiguousarray(base.copy())
    H, W = out.shape[:2]
    t = max(2, round(max(H, W) / 250))
    font_scale = max(0.4, max(H, W) / 1100)
    for d in reversed(dets):  # best last, so it is drawn on top
        x0, y0, x1, y1 = (int(round(v * scale)) for v in d["box_xyxy"])
        colour = tuple(int(c) for c in palette[(d["class_id"] + 1) % len(palette)])
        cv2.rectangle(out, (x0, y0), (x1, y1), colour, t)
        tag = f"{d['label']} {d['score']:.2f}"
        (tw, th), base_line = cv2.getTextSize(tag, cv2.FONT_HERSHEY_SIMPLEX, font_scale, 1)
        ty = y0 - 2 if y0 - th - base_line - 2 >= 0 else min(H - 1, y0 + th + base_line + 2)
        cv2.rectangle(out, (x0, ty - th - base_line), (min(W - 1, x0 + tw + 4), ty + 1), colour, -1)
        cv2.putText(out, tag, (x0 + 2, ty - base_line + 1), cv2.FONT_HERSHEY_SIMPLEX, font_scale, (0, 0, 0), 1,
                    cv2.LINE_AA)
    return out


def detection_view(
    svc: ExplorerService, image: Any, model: str, size: float, layer: float, score_threshold: float
) -> tuple[np.ndarray, str, list[dict[str, Any]]]:
    """Boxes drawn on the display image, a markdown summary, and the detections as a list.

    Each detection: ``label``, ``class_id``, ``score``, ``box_xyxy`` in pixels of the original upload.
    Without a usable head: the plain image, the reason (with the train command), and no detections.
    """
    entry, backbone = entry_and_backbone(svc, image, model)
    found = lookup_head(svc, backbone, "detection", "detection", load_head)
    if found.head is None:
        return entry.display, found.message, []
    head = found.head
    card = {"input_size": list(head.input_size), "layer": head.layer}
    p = head_features(svc, image, model, card)
    f = p.features
    raw = p.view.memo(("det-raw", found.key),
                      lambda: predict(head, f.patches, f.input_size, score_threshold=MIN_THRESHOLD)[0])
    thr = DEFAULT_THRESHOLD if score_threshold is None else max(MIN_THRESHOLD, float(score_threshold))
    (ih, iw), (oh, ow) = f.input_size, f.image_size
    dets = detections_at(raw, head.class_names, thr, (ow / iw, oh / ih))
    dw, _ = entry.display_wh
    drawn = draw_detections(entry.display, dets, dw / ow, class_palette(len(head.class_names) + 1))
    if dets:
        names = ", ".join(f"{html.escape(d['label'])} {d['score']:.2f}" for d in dets[:8])
        more = f" … (+{len(dets) - 8})" if len(dets) > 8 else ""
        text = f"**{len(dets)} object{'s' if len(dets) != 1 else ''}** with score ≥ {thr:.2f}: {names}{more}."
    else:
        text = f"**No object** scores ≥ {thr:.2f}; lower the threshold to see weaker boxes."
    text += f"\n\n{head.kind} head. {head_note(p, card)}"
    return drawn, text, dets


def build_tab(inp: Inputs) -> None:
    """Detection tab: boxes + tags, threshold slider (filter and redraw only)."""
    svc = inp.service
    with gr.Tab("Detection", id="detection"):
        gr.Markdown("A detection head on the frozen patch grid: boxes with class names and scores. "
                    "Drag the threshold: it only filters the boxes already predicted.")
        threshold = gr.Slider(MIN_THRESHOLD, 0.95, value=DEFAULT_THRESHOLD, step=0.01, label="Score threshold",
                              elem_id="det-threshold")
        overlay = image_output("Detections", height=480, elem_id="det-overlay")
        note = gr.Markdown(elem_id="det-note")
        table = gr.JSON(label="Detections (original-image pixels)", elem_id="det-json")

    def detect(image: Any, model: str, size: float, layer: float, score_threshold: float) -> tuple:
        return detection_view(svc, image, model, size, layer, score_threshold)

    fn = guard(detect)
    threshold.input(fn, inputs=[*inp.base, threshold], outputs=[overlay, note, table], api_name="detect",
                    api_description="Boxes with class names and scores above score_threshold: overlay, summary, "
                                    "list of {label, class_id, score, box_xyxy (original pixels)}.",
                    trigger_mode="always_last", show_progress="hidden")
    inp.on_new_features(detect, [*inp.base, threshold], [overlay, note, table])
