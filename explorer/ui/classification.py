"""Classification tab: top-5 classes from the shipped probe, or from a classifier taught here by example.

Also home of what the three head tabs share: the per-browser ``TeachSession`` (a ``gr.State``), picking
the head a tab uses (``explorer.heads.registry`` finds them: shipped, taught, uploaded), and fetching the
Features a head expects through the same cache every tab uses — so a head never costs an extra forward
once the image has been seen at that size and layer.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import gradio as gr
import numpy as np

from explorer.heads import io
from explorer.heads.base import Head
from explorer.heads.registry import HeadRegistry, load_head_bytes
from explorer.heads.taught import FEATURE_CHOICES, ClassificationTeacher, SegmentationTeacher, TeachError
from explorer.ui.common import Inputs, guard
from explorer.ui.service import ExplorerService, ImageEntry, Prepared, UserError, clamp_size
from explorer.ui.uploads import accept_only_uploads

TOP_K = 5
HEAD_CHOICES = ["auto", "taught", "uploaded", "shipped"]  # auto: taught, else uploaded, else shipped
THUMB_SIDE = 96
_HEAD_FILES = Path(tempfile.gettempdir()) / "explorer-taught-heads"


# ---------------------------------------------------------------- per-session state
@dataclass
class TeachSession:
    """What one browser session taught or uploaded (small: numpy features of labelled patches / images)."""

    seg: SegmentationTeacher = field(default_factory=SegmentationTeacher)
    cls: ClassificationTeacher = field(default_factory=ClassificationTeacher)
    uploaded: dict[str, Head] = field(default_factory=dict)  # task -> head loaded from a file
    choice: dict[str, str] = field(default_factory=dict)  # task -> one of HEAD_CHOICES
    fitted: dict[str, tuple[tuple, Head | str]] = field(default_factory=dict)  # task -> (state key, head/reason)


def head_file_row(prefix: str) -> tuple[gr.File, gr.File]:
    """The taught head's download and the head-file upload, side by side (each head tab has one)."""
    with gr.Row():
        download = gr.File(label="Taught head (one .safetensors file)", interactive=False)
        upload = accept_only_uploads(gr.File(label="Load a head file", file_types=[".safetensors"],
                                             elem_id=f"{prefix}-head-upload"))
    return download, upload


def session_state(inp: Inputs) -> gr.State:
    """The one ``gr.State`` holding the ``TeachSession``, shared by the head tabs (made by the first caller)."""
    state = getattr(inp, "_teach_state", None)
    if state is None:
        state = gr.State(TeachSession())
        inp._teach_state = state  # type: ignore[attr-defined]
    return state


def registry(svc: ExplorerService) -> HeadRegistry:
    reg = getattr(svc, "_head_registry", None)
    if reg is None or reg.root != svc.heads_dir:
        reg = HeadRegistry(svc.heads_dir, svc.heads)
        svc._head_registry = reg  # type: ignore[attr-defined]
    return reg


def _state_key(teacher: Any, backbone: Any) -> tuple:
    items = teacher.marks if hasattr(teacher, "marks") else teacher.examples
    return (backbone.fingerprint, len(items), id(items[-1]) if items else 0, tuple(teacher.classes),
            getattr(teacher, "feature", ""), tuple(getattr(i, "class_name", "") for i in items))


def taught_head(session: TeachSession, task: str, backbone: Any) -> Head | str:
    """The session's taught head for ``task`` (fitted once per change), or why there is none yet."""
    teacher = session.seg if task in ("segmentation", "detection") else session.cls
    if not (teacher.marks if hasattr(teacher, "marks") else teacher.examples):
        return ""
    key = _state_key(teacher, backbone)
    got = session.fitted.get(task)
    if got is None or got[0] != key:
        try:
            head: Head | str = teacher.fit(backbone)
        except TeachError as err:
            head = str(err)
        session.fitted[task] = got = (key, head)
    return got[1]


@dataclass
class Picked:
    """The head a tab uses now, or (``head is None``) the sentence that says why there is none."""

    head: Head | None
    source: str  # "taught" / "uploaded" / "shipped" / ""
    message: str
    key: tuple = ()


def pick_head(svc: ExplorerService, backbone: Any, task: str, session: TeachSession | None) -> Picked:
    """Taught, uploaded or shipped head for ``task``, as the session's choice says ("auto": in that order)."""
    found = registry(svc).shipped(backbone, task)
    options: dict[str, Head] = {}
    taught_reason = ""
    if session is not None:
        # Detection has no teacher of its own: boxes come from the taught (or uploaded) segmentation.
        source_task = "segmentation" if task == "detection" else task
        taught = taught_head(session, source_task, backbone)
        if isinstance(taught, str):
            taught_reason = taught
        else:
            options["taught"] = taught
        up = session.uploaded.get(source_task)
        if up is not None and up.card.get("backbone_fingerprint") == str(backbone.fingerprint) and (
                task != "detection" or up.kind == "taught-segmentation"):
            options["uploaded"] = up
    if found.head is not None:
        options["shipped"] = found.head
    choice = (session.choice.get(task, "auto") if session is not None else "auto")
    if choice == "auto":
        choice = next((c for c in ("taught", "uploaded", "shipped") if c in options), "")
    if choice in options:
        head = options[choice]
        key = found.key if choice == "shipped" else (choice, id(head))
        return Picked(head, choice, "", key)
    if choice:
        wanted = f"No {choice} head yet" + (f": {taught_reason}" if choice == "taught" and taught_reason else ".")
        return Picked(None, "", f"ℹ️ {wanted}")
    return Picked(None, "", found.message + (f"\n\n{taught_reason}" if taught_reason else ""))


# ---------------------------------------------------------------- features for a head
def head_features(svc: ExplorerService, image: Any, model: str, size: float | None, layer: float | None) -> Prepared:
    """Cached Features at (size, layer) — a head's own, so it reads the pixels its card records.

    The three head tabs refresh in parallel after a new upload; the service's single-flight store
    makes them share one forward. A card may name a size off the picker, hence the clamp.
    """
    return svc.prepare(image, model, clamp_size(size), layer)


def features_for(svc: ExplorerService, image: Any, model: str, head: Head) -> Prepared:
    return head_features(svc, image, model, head.size, head.layer)


def entry_and_backbone(svc: ExplorerService, image: Any, model: str) -> tuple[ImageEntry, Any]:
    """Decode the upload and load the model without running the backbone (UserError if either fails)."""
    return svc.image(image), svc.backbone(model)


def head_note(p: Prepared, head: Head, source: str = "shipped") -> str:
    """One line saying which head and which features it read (so the ignored sliders are not a surprise)."""
    f = p.features
    h, w = f.grid
    taught = head.card.get("taught")
    what = f"{source} head" + (f" ({taught})" if taught else "")
    return (f"{what.capitalize()}; input: layer {f.layer}/{p.backbone.num_layers} at "
            f"{f.input_size[1]}×{f.input_size[0]} px ({h}×{w} patches), as it was made "
            f"(pixels: {head.size} px, longer side); the resolution and layer sliders do not change it.")


def recorded_metric_line(card: dict[str, Any], key: str, label: str) -> str:
    """'<label> measured on the <split> split: x%.' from the card's metrics, the held-out test split
    first (scored by `explorer eval --update-card`, often on unseen data), then val, then any other."""
    metrics = {k: m for k, m in card.get("metrics", {}).items() if isinstance(m, dict) and key in m}
    for split in sorted(metrics, key=lambda k: (k != "test", k != "val")):
        return f"{label} measured on the {split} split: {100 * float(metrics[split][key]):.1f}%."
    return ""


# ---------------------------------------------------------------- head files
def head_file(head: Head, task: str) -> str:
    """Write the head as one safetensors file (card JSON in its header) and return the path to offer.

    One folder per content hash, so re-offering an unchanged head writes nothing new (Gradio copies the
    file into its own cache, which it sweeps)."""
    state = head.state_dict()  # type: ignore[attr-defined]
    data = io.head_bytes(state, head.card)
    folder = _HEAD_FILES / hashlib.sha256(data).hexdigest()[:16]
    path = folder / f"{task}-{io.backbone_slug(head.card.get('backbone_id', 'backbone'))}.safetensors"
    if not path.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return str(path)


def read_uploaded_head(path: Any, backbone: Any, task: str) -> Head:
    """An uploaded head file -> Head; UserError with one sentence for anything unusable."""
    if isinstance(path, dict):
        path = path.get("path")
    if not path:
        raise UserError("Choose a .safetensors head file first.")
    try:
        if os.path.getsize(path) > io.MAX_HEAD_BYTES:
            raise UserError(f"The head file is larger than {io.MAX_HEAD_BYTES // 2**20} MB; heads are far smaller.")
        data = Path(path).read_bytes()
        head = load_head_bytes(data, backbone, "segmentation" if task == "detection" else task)
    except (io.HeadFileError, io.HeadMismatchError) as err:
        raise UserError(_short_mismatch(err)) from err
    except OSError as err:
        raise UserError("The head file could not be read.") from err
    head.card["uploaded"] = True
    return head


def _short_mismatch(err: Exception) -> str:
    if isinstance(err, io.HeadMismatchError):
        return "This head was made for another backbone; load that backbone or teach a head for this one."
    return str(err)


# ---------------------------------------------------------------- classification
def classification_view(
    svc: ExplorerService, image: Any, model: str, size: float, layer: float, session: TeachSession | None = None
) -> tuple[dict[str, float], str]:
    """Top-5 classes as ``{name: probability}`` (best first) and a note.

    With no usable head the dict is empty and the note says why (and how to get one).
    """
    _, backbone = entry_and_backbone(svc, image, model)
    picked = pick_head(svc, backbone, "classification", session)
    if picked.head is None:
        return {}, picked.message
    head = picked.head
    p = features_for(svc, image, model, head)
    if picked.source == "shipped":
        probs = p.view.memo(("probe-proba", picked.key), lambda: head.predict(p.features))
    else:
        probs = head.predict(p.features)
    order = np.argsort(-probs, kind="stable")[:TOP_K]
    top = [(head.class_names[i], float(probs[i])) for i in order if probs[i] > 0]
    best_name, best_p = top[0]
    metric = recorded_metric_line(head.card, "top1", "top-1")
    text = (f"**{best_name}** ({100 * best_p:.1f}%) — top-{len(top)} of {len(head.class_names)} classes. {metric}"
            f"\n\n{head_note(p, head, picked.source)}")
    return dict(top), text


def thumbnail(entry: ImageEntry) -> np.ndarray:
    h, w = entry.display.shape[:2]
    s = THUMB_SIDE / max(h, w)
    return cv2.resize(entry.display, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)


def teach_size_layer(teacher: Any, size: float, layer: float) -> tuple[float, float]:
    """A teacher keeps the size and layer of its first example; before that, the sliders'."""
    return (teacher.size, teacher.layer) if teacher.size else (size, layer)


def add_examples(svc: ExplorerService, session: TeachSession, images: list[Any], model: str, size: float,
                 layer: float, class_name: str) -> str:
    """Add each image (the upload, or several) as an example of ``class_name``; one line per outcome."""
    if not images:
        raise UserError("Upload an image (or pick an example) first.")
    notes = []
    for image in images:
        s, lay = teach_size_layer(session.cls, size, layer)
        try:
            p = head_features(svc, image, model, s, lay)
            notes.append(session.cls.add(p.entry.key, p.features, class_name, thumbnail(p.entry)))
        except (TeachError, UserError) as err:
            notes.append(f"Skipped one image: {err}")
    return " ".join(notes[:6]) + (f" (+{len(notes) - 6} more)" if len(notes) > 6 else "")


def teach_summary(session: TeachSession) -> str:
    t = session.cls
    if not t.examples:
        return "No examples yet. Type a class, then **Add this image** (or add several uploads at once)."
    counts = {c: sum(e.class_name == c for e in t.examples) for c in t.classes}
    parts = ", ".join(f"{c}: {n}" for c, n in counts.items())
    loo = t.leave_one_out()
    loo_text = (f" Leave-one-out accuracy: **{100 * loo[0]:.0f}%** on {loo[1]} held-out examples." if loo else
                " Leave-one-out accuracy appears once a class has two examples.")
    rule = "nearest class mean" if max(counts.values()) <= 1 else "logistic regression"
    return f"Taught examples — {parts} ({rule} on {t.feature}).{loo_text}"


def nearest_gallery(svc: ExplorerService, session: TeachSession, image: Any, model: str) -> list[tuple[Any, str]]:
    t = session.cls
    if not t.examples or image is None:
        return []
    p = head_features(svc, image, model, t.size, t.layer)
    return [(e.thumb, f"{e.class_name} ({sim:.2f})") for e, sim in t.nearest(p.features, 4) if e.thumb is not None]


def teach_classify_api(svc: ExplorerService, image: Any, model: str, size: float, layer: float,
                       train_images: list[Any] | None, labels_json: str) -> tuple[dict[str, float], str | None]:
    """Stateless: labelled images (``labels_json``: a JSON list of class names, one per image) -> top-5 of
    the query image and the head file."""
    import json

    files = [f for f in (train_images or []) if f]
    try:
        labels = json.loads(labels_json or "[]")
    except json.JSONDecodeError as err:
        raise UserError("labels must be a JSON list of class names, one per training image.") from err
    if not isinstance(labels, list) or len(labels) != len(files):
        raise UserError(f"Give one class name per training image ({len(files)} images, "
                        f"{len(labels) if isinstance(labels, list) else 0} labels).")
    session = TeachSession()
    for f, name in zip(files, labels, strict=True):
        s, lay = teach_size_layer(session.cls, size, layer)
        p = head_features(svc, f, model, s, lay)
        try:
            session.cls.add(p.entry.key, p.features, str(name))
        except TeachError as err:
            raise UserError(str(err)) from err
    backbone = svc.backbone(model)
    head = taught_head(session, "classification", backbone)
    if isinstance(head, str):
        raise UserError(head or "Give at least two labelled images.")
    top, _ = classification_view(svc, image, model, size, layer, session)
    return top, head_file(head, "classification")


def build_tab(inp: Inputs) -> None:
    """Classification tab: the top-5 label, and the teach-by-example panel."""
    svc = inp.service
    state = session_state(inp)
    with gr.Tab("Classification", id="classification"):
        gr.Markdown("Top-5 classes from a linear head on the CLS token: the shipped probe, or one you teach "
                    "here from a few example images per class.")
        choice = gr.Radio(HEAD_CHOICES, value="auto", label="Head", elem_id="cls-head-choice")
        label = gr.Label(num_top_classes=TOP_K, label="Top-5", elem_id="cls-label")
        note = gr.Markdown(elem_id="cls-note")
        btn = gr.Button("Classify")
        with gr.Accordion("Teach by example", open=True):
            with gr.Row():
                cls_name = gr.Dropdown([], value=None, allow_custom_value=True, label="Class",
                                       info="type a new name or pick a taught one", elem_id="cls-teach-class")
                feature = gr.Radio(list(FEATURE_CHOICES), value="cls", label="Features", elem_id="cls-teach-feature")
            with gr.Row():
                add_btn = gr.Button("Add this image to the class", elem_id="cls-teach-add")
                undo_btn = gr.Button("Undo")
                clear_btn = gr.Button("Clear")
            many = accept_only_uploads(gr.File(file_count="multiple", file_types=["image"], label="Add several images to the class"))
            many_btn = gr.Button("Add these uploads to the class")
            teach_note = gr.Markdown(elem_id="cls-teach-note")
            gallery = gr.Gallery(label="Nearest taught examples", columns=4, height=140, elem_id="cls-nearest")
            download, upload = head_file_row("cls")
            api_files = accept_only_uploads(gr.File(file_count="multiple", visible=False))
            api_labels = gr.Textbox(visible=False)
            api_top = gr.Label(visible=False)
            api_file = gr.File(visible=False)
            api_btn = gr.Button(visible=False)

    def classify(image: Any, model: str, size: float, layer: float, session: TeachSession | None = None) -> tuple:
        return classification_view(svc, image, model, size, layer, session)

    def after_teach(session: TeachSession, image: Any, model: str, size: float, layer: float, msg: str) -> tuple:
        backbone = svc.backbone(model)
        head = taught_head(session, "classification", backbone)
        file = head_file(head, "classification") if not isinstance(head, str) else None
        top, text = classification_view(svc, image, model, size, layer, session) if image is not None else ({}, "")
        names = gr.update(choices=list(session.cls.classes))
        return (session, top, text, f"{msg}\n\n{teach_summary(session)}",
                nearest_gallery(svc, session, image, model), file, names)

    def add_one(session, image, model, size, layer, name) -> tuple:
        msg = add_examples(svc, session, [image] if image is not None else [], model, size, layer, name)
        return after_teach(session, image, model, size, layer, msg)

    def add_many(session, files, image, model, size, layer, name) -> tuple:
        msg = add_examples(svc, session, list(files or []), model, size, layer, name)
        return after_teach(session, image, model, size, layer, msg)

    def undo(session, image, model, size, layer) -> tuple:
        gone = session.cls.undo()
        return after_teach(session, image, model, size, layer, "Undid the last example." if gone else "Nothing to undo.")

    def clear(session, image, model, size, layer) -> tuple:
        session.cls.clear()
        return after_teach(session, image, model, size, layer, "Cleared every taught example.")

    def set_feature(session, value, image, model, size, layer) -> tuple:
        session.cls.feature = value if value in FEATURE_CHOICES else "cls"
        return after_teach(session, image, model, size, layer, f"Features: {session.cls.feature}.")

    def set_choice(session, value, image, model, size, layer) -> tuple:
        session.choice["classification"] = value
        top, text = classification_view(svc, image, model, size, layer, session) if image is not None else ({}, "")
        return session, top, text

    def load_file(session, path, image, model, size, layer) -> tuple:
        session.uploaded["classification"] = read_uploaded_head(path, svc.backbone(model), "classification")
        session.choice["classification"] = "uploaded"
        top, text = classification_view(svc, image, model, size, layer, session) if image is not None else ({}, "")
        return session, top, text, "uploaded"

    teach_out = [state, label, note, teach_note, gallery, download, cls_name]
    btn.click(guard(classify), inputs=[*inp.base, state], outputs=[label, note], api_name="classify",
              api_description="Top-5 classes ({name: probability}) and a note.")
    add_btn.click(guard(add_one), inputs=[state, *inp.base, cls_name], outputs=teach_out, api_visibility="private")
    many_btn.click(guard(add_many), inputs=[state, many, *inp.base, cls_name], outputs=teach_out,
                   api_visibility="private")
    undo_btn.click(guard(undo), inputs=[state, *inp.base], outputs=teach_out, api_visibility="private")
    clear_btn.click(guard(clear), inputs=[state, *inp.base], outputs=teach_out, api_visibility="private")
    feature.change(guard(set_feature), inputs=[state, feature, *inp.base], outputs=teach_out,
                   api_visibility="private")
    choice.change(guard(set_choice), inputs=[state, choice, *inp.base], outputs=[state, label, note],
                  api_visibility="private")
    upload.upload(guard(load_file), inputs=[state, upload, *inp.base], outputs=[state, label, note, choice],
                  api_visibility="private")
    api_btn.click(guard(lambda image, model, size, layer, files, labels: teach_classify_api(
        svc, image, model, size, layer, files, labels)), inputs=[*inp.base, api_files, api_labels],
        outputs=[api_top, api_file], api_name="teach_classify",
        api_description="Stateless teach-by-example: training images + a JSON list of their class names -> "
                        "top-5 of the query image and the taught head file.")
    inp.on_new_features(classify, [*inp.base, state], [label, note])
    inp.on_new_features(lambda s, image, model, size, layer: nearest_gallery(svc, s, image, model),
                        [state, *inp.base], [gallery])
