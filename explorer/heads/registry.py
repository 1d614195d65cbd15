"""The one place that finds heads for a backbone: the shipped folder (``pretrained_heads/<slug>/``) and the
heads a session taught or uploaded; and the one ``load_head`` that turns stored weights + card into a
``Head`` of the right kind.

Never raises for the expected failures of a shipped head: a missing head gives the command that trains
one, a head made for another backbone says so, an unreadable one says what broke (``HeadLookup.message``).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from explorer.heads import io
from explorer.heads.base import Head

# Which stored head kinds answer which task, shipped kind first.
TASK_KINDS: dict[str, tuple[str, ...]] = {
    "classification": ("probe", "taught-classification"),
    "segmentation": ("segmentation", "taught-segmentation"),
    "detection": ("detection",),
}
SHIPPED_NAME = {"classification": "probe", "segmentation": "segmentation", "detection": "detection"}


def _builder(kind: str) -> Callable[[dict[str, Any], dict[str, Any]], Head]:
    # Imported per kind so serving one head does not import every head's code (torch modules etc.).
    if kind in ("probe", "taught-classification"):
        from explorer.heads.probe import probe_from_state

        return probe_from_state
    if kind == "segmentation":
        from explorer.heads.segmentation import segmentation_from_state

        return segmentation_from_state
    if kind == "detection":
        from explorer.heads.detection import detection_from_state

        return detection_from_state
    if kind == "taught-segmentation":
        from explorer.heads.taught import segmentation_from_state as taught_from_state

        return taught_from_state
    raise ValueError(f"unknown head kind {kind!r}")


def head_from_state(state: dict[str, Any], card: dict[str, Any]) -> Head:
    """A ``Head`` from weights + card, dispatching on ``card["kind"]``."""
    return _builder(str(card.get("kind")))(state, card)


def load_head(directory: str | Path, name: str, backbone: Any) -> Head:
    """THE loader: ``<directory>/<name>.safetensors`` + ``.json`` -> a ``Head`` (``HeadMismatchError`` if it
    belongs to another backbone)."""
    return head_from_state(*io.read_head(directory, name, backbone))


def load_head_bytes(data: bytes, backbone: Any, task: str | None = None) -> Head:
    """An uploaded one-file head (``io.read_head_bytes``) -> a ``Head``; ``HeadFileError`` with a plain
    sentence for anything unusable (not safetensors, truncated, another backbone, another task)."""
    state, card = io.read_head_bytes(data, backbone)
    if task is not None and card.get("kind") not in TASK_KINDS.get(task, ()):
        raise io.HeadFileError(f"This is a {card.get('kind')} head, not a {task} head.")
    try:
        return head_from_state(state, card)
    except (KeyError, ValueError, TypeError, RuntimeError) as err:
        raise io.HeadFileError(f"The head file's weights do not match its card ({type(err).__name__}).") from err


@dataclass
class HeadLookup:
    """A loaded head, or the sentence that explains why there is none (``head is None``)."""

    head: Head | None
    message: str
    directory: Path
    key: tuple = ()  # identifies this exact head (folder, name, card mtime, backbone): memo keys use it


def no_head_message(task: str, kind: str, model_id: str, directory: Path) -> str:
    """What a tab shows for a backbone without a shipped head: teach one here, or train one."""
    return (
        f"ℹ️ **No shipped {task} head for this backbone** (`{model_id}`). Teach one below from a few examples, "
        f"or train one (`{kind}.json` would live in `pretrained_heads/{directory.name}/`):\n\n"
        f"```\n{io.train_command(kind, model_id)}\n```"
    )


class HeadRegistry:
    """Finds heads for a backbone. ``store`` (anything with ``get_or_make(key, make)``, e.g. the app's LRU)
    keeps loaded heads so a slider move never re-reads weights; without one, a plain dict."""

    def __init__(self, root: str | Path | None = None, store: Any | None = None) -> None:
        self.root = root
        self.store = store if store is not None else _DictStore()

    def shipped(self, backbone: Any, task: str) -> HeadLookup:
        """The shipped head of ``task`` for ``backbone`` (loaded once per card mtime and backbone)."""
        name = SHIPPED_NAME[task]
        directory = io.default_heads_dir(backbone.model_id, self.root)
        card = directory / f"{name}.json"
        if not card.is_file():
            return HeadLookup(None, no_head_message(task, name, backbone.model_id, directory), directory)
        key = (str(directory), name, card.stat().st_mtime_ns, backbone.fingerprint)

        def load() -> Any:
            try:
                return load_head(directory, name, backbone)
            except (OSError, ValueError, KeyError, TypeError, RuntimeError) as err:  # mismatch or broken files
                return err

        got = self.store.get_or_make(key, load)
        if isinstance(got, io.HeadMismatchError):
            try:
                want = io.read_card(directory, name)
            except (OSError, ValueError):
                want = {}
            return HeadLookup(None, f"⛔ **The shipped {task} head was trained for another backbone**: "
                                    f"`{want.get('backbone_id')}` (fingerprint {want.get('backbone_fingerprint')}), "
                                    f"not `{backbone.model_id}` (fingerprint {backbone.fingerprint}). "
                                    "Teach one for this backbone below.", directory)
        if isinstance(got, Exception):
            return HeadLookup(None, f"⚠️ **Could not load the shipped {task} head** "
                                    f"({type(got).__name__}).", directory)
        return HeadLookup(got, "", directory, key)

    def choices(self, backbone: Any, task: str, session: Sequence[Head] = ()) -> dict[str, Head]:
        """Every usable head of ``task`` for ``backbone`` by label: ``"shipped"`` and the session's taught /
        uploaded heads (those for another backbone are left out)."""
        out: dict[str, Head] = {}
        found = self.shipped(backbone, task)
        if found.head is not None:
            out["shipped"] = found.head
        for h in session:
            if h.card.get("backbone_fingerprint") == str(backbone.fingerprint) and h.kind in TASK_KINDS[task]:
                out["uploaded" if h.card.get("uploaded") else "taught"] = h
        return out


class _DictStore:
    def __init__(self) -> None:
        self._items: dict[Hashable, Any] = {}

    def get_or_make(self, key: Hashable, make: Callable[[], Any]) -> Any:
        if key not in self._items:
            self._items[key] = make()
        return self._items[key]
