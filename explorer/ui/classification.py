"""Classification tab: the linear probe's top-5 classes with probabilities.

Also home of the head lookup the three task-head tabs share (detection, segmentation,
classification): find the head for the loaded backbone, say plainly when there is none (with the
exact command that trains it) or when it belongs to another backbone, and fetch the Features the
head expects — through the same cache every tab uses, so a head never costs an extra forward
once the image has been seen at that size and layer.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from explorer.heads.io import HeadMismatchError, default_heads_dir, train_command
from explorer.heads.probe import load_probe, topk
from explorer.ui.common import Inputs, guard
from explorer.ui.service import LRU, ExplorerService, ImageEntry, Prepared, clamp_size

TOP_K = 5
_LOCKS: LRU[tuple, threading.Lock] = LRU(64)  # one per (service, image, model, size, layer) being prepared
_LOCKS_GUARD = threading.Lock()


# ---------------------------------------------------------------- shared by the head tabs
@dataclass
class HeadLookup:
    """A loaded head, or the sentence that explains why there is none (``head is None``)."""

    head: Any | None
    message: str
    directory: Path
    key: tuple = ()  # identifies this exact head (folder, kind, card mtime, backbone): memo keys use it


def no_head_message(task: str, kind: str, model_id: str, directory: Path) -> str:
    """What the tab shows for a backbone without this head: where we looked and how to train one."""
    return (
        f"ℹ️ **No {task} head for this backbone** (`{model_id}`); looked for `{kind}.json` in `{directory}`. "
        f"Heads are trained per backbone (a head only works on the exact weights it was trained on). "
        f"Train one with:\n\n```\n{train_command(kind, model_id)}\n```\n\n"
        f"`--data` is a dataset folder, e.g. the offline world from `python -m explorer data make`."
    )


def lookup_head(
    svc: ExplorerService, backbone: Any, kind: str, task: str, loader: Callable[[Path, Any], Any]
) -> HeadLookup:
    """Load (once, cached by card mtime and backbone fingerprint) the ``kind`` head for ``backbone``.

    Never raises for the expected failures: a missing head gives the train command, a head made for
    another backbone gives the ``HeadMismatchError`` text, an unreadable one says what broke.
    """
    directory = default_heads_dir(backbone.model_id, svc.heads_dir)
    card = directory / f"{kind}.json"
    if not card.is_file():
        return HeadLookup(None, no_head_message(task, kind, backbone.model_id, directory), directory)
    key = (str(directory), kind, card.stat().st_mtime_ns, backbone.fingerprint)

    def load() -> Any:
        try:
            return loader(directory, backbone)
        except HeadMismatchError as err:
            return err
        except (OSError, ValueError, KeyError, TypeError, RuntimeError) as err:  # a broken card / weights file
            return err

    got = svc.heads.get_or_make(key, load)
    if isinstance(got, HeadMismatchError):
        return HeadLookup(None, f"⛔ **This {task} head was trained for another backbone.** {got}", directory)
    if isinstance(got, Exception):
        return HeadLookup(None, f"⚠️ **Could not load the {task} head** in `{directory}`: "
                                f"{type(got).__name__}: {got}", directory)
    return HeadLookup(got, "", directory, key)


def head_size_layer(card: dict[str, Any]) -> tuple[int, int | None]:
    """The (longer-side size, layer) a head was trained at, from its card."""
    size = card.get("input_size", 224)
    size = max(size) if isinstance(size, (list, tuple)) else size
    return int(size), card.get("layer")


def head_features(svc: ExplorerService, image: Any, model: str, card: dict[str, Any]) -> Prepared:
    """Cached Features at the head's own size and layer (a cache hit when the app already uses them).

    Why the card's size and layer, not the sliders': a head is only trained on one layer's tokens,
    and its inputs were 224-px images; the app's aspect-kept 224-px grid is the closest match.
    """
    size, layer = head_size_layer(card)
    entry, backbone = entry_and_backbone(svc, image, model)
    key = (id(svc), entry.key, backbone.model_id, clamp_size(size), backbone.resolve_layer(layer))
    with _LOCKS_GUARD:
        lock = _LOCKS.get(key) or _LOCKS.put(key, threading.Lock())
    # The three head tabs refresh in parallel after a new upload; the lock makes them share one forward.
    with lock:
        return svc.prepare(image, model, clamp_size(size), layer)  # a head card may name a size off the picker


def entry_and_backbone(svc: ExplorerService, image: Any, model: str) -> tuple[ImageEntry, Any]:
    """Decode the upload and load the model without running the backbone (UserError if either fails)."""
    return svc.image(image), svc.backbone(model)


def head_note(p: Prepared, card: dict[str, Any]) -> str:
    """One line saying which features the head read (so the ignored sliders are not a surprise)."""
    f = p.features
    h, w = f.grid
    return (f"Head input: layer {f.layer}/{p.backbone.num_layers} at {f.input_size[1]}×{f.input_size[0]} px "
            f"({h}×{w} patches), as trained (card input size {card.get('input_size')}); "
            f"the resolution and layer sliders do not change it.")


# ---------------------------------------------------------------- classification
def classification_view(
    svc: ExplorerService, image: Any, model: str, size: float, layer: float
) -> tuple[dict[str, float], str]:
    """Top-5 classes of the probe as ``{name: probability}`` (best first) and a note.

    With no usable head the dict is empty and the note says why (and how to train one).
    """
    _, backbone = entry_and_backbone(svc, image, model)
    found = lookup_head(svc, backbone, "probe", "classification", load_probe)
    if found.head is None:
        return {}, found.message
    head = found.head
    p = head_features(svc, image, model, head.card)
    top = p.view.memo(("probe-topk", found.key), lambda: topk(head, p.features, TOP_K))
    metric = recorded_metric_line(head.card, "top1", "top-1")
    best_name, best_p = top[0]
    text = (f"**{best_name}** ({100 * best_p:.1f}%) — top-{len(top)} of {len(head.class_names)} classes from a "
            f"linear probe on the {head.feature} token. {metric}\n\n{head_note(p, head.card)}")
    return {name: prob for name, prob in top}, text


def recorded_metric_line(card: dict[str, Any], key: str, label: str) -> str:
    """'<label> measured on the <split> split: x%.' from the card's metrics, the held-out test split
    first (scored by `explorer eval --update-card`, often on unseen data), then val, then any other."""
    metrics = {k: m for k, m in card.get("metrics", {}).items() if isinstance(m, dict) and key in m}
    for split in sorted(metrics, key=lambda k: (k != "test", k != "val")):
        return f"{label} measured on the {split} split: {100 * float(metrics[split][key]):.1f}%."
    return ""


def build_tab(inp: Inputs) -> None:
    """Classification tab: a label with the five most probable classes."""
    svc = inp.service
    with gr.Tab("Classification", id="classification"):
        gr.Markdown("A linear probe on the backbone's CLS token (the report's classification protocol): "
                    "the five most probable classes.")
        label = gr.Label(num_top_classes=TOP_K, label="Top-5", elem_id="cls-label")
        note = gr.Markdown(elem_id="cls-note")
        btn = gr.Button("Classify")

    def classify(image: Any, model: str, size: float, layer: float) -> tuple:
        return classification_view(svc, image, model, size, layer)

    fn = guard(classify)
    btn.click(fn, inputs=inp.base, outputs=[label, note], api_name="classify",
              api_description="Top-5 classes of the linear probe ({name: probability}) and a note.")
    inp.on_new_features(classify, inp.base, [label, note])
