"""Heads are data: ``<name>.safetensors`` (weights) + ``<name>.json`` (card).

The card ties a head to the exact backbone it was trained on (``Backbone.fingerprint``, a hash of the
model config and weights), so a head trained for one backbone is refused by another instead of silently
producing garbage. No pickle: safetensors cannot run code when loaded.

The card is ALSO written into the safetensors header (metadata key ``"card"``, the card as JSON), so the
``.safetensors`` file alone is a complete, portable head: that one file is what the app offers for
download and accepts as an upload (``head_bytes`` / ``read_head_bytes``).

Card keys (flat on purpose, so the UI and other heads can read them without a schema library)::

    name, kind, format_version, backbone_id, backbone_fingerprint, layer, class_names,
    input_size, recipe (dict), metrics (dict), created (UTC ISO date), plus any head-specific keys
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

FORMAT_VERSION = 1
CARD_METADATA_KEY = "card"
MAX_HEAD_BYTES = 64 * 2**20  # an uploaded head larger than this is refused before it is parsed


class HeadFileError(ValueError):
    """An uploaded head file that cannot be used; ``str()`` is one plain sentence for the user."""
REPO_ROOT = Path(__file__).resolve().parents[2]
HEADS_ROOT = REPO_ROOT / "pretrained_heads"


class HeadMismatchError(RuntimeError):
    """The head's card names a different backbone than the one it is being loaded for."""


def backbone_slug(model_id: str) -> str:
    """Filesystem-safe folder name for a backbone id (``facebook/dinov3-vits16`` -> ``facebook--dinov3-vits16``).

    Local paths keep only their last component so the slug does not depend on where a user keeps models.
    """
    mid = str(model_id).strip()
    if mid.startswith(("/", ".", "~")) or re.match(r"^[A-Za-z]:[\\/]", mid):
        mid = Path(mid.rstrip("/\\")).name or "local"
    mid = mid.replace("timm:", "timm--").replace("/", "--")
    slug = re.sub(r"[^a-z0-9._-]+", "-", mid.lower()).strip("-.")
    return slug or "backbone"


def default_heads_dir(model_id: str, root: str | Path | None = None) -> Path:
    """``pretrained_heads/<backbone-slug>/`` (the shipped location the app and eval CLI look in)."""
    return Path(root if root is not None else HEADS_ROOT) / backbone_slug(model_id)


def utc_now() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def make_card(
    kind: str,
    backbone: Any,
    class_names: list[str],
    input_size: int | tuple[int, int],
    recipe: Mapping[str, Any] | None = None,
    metrics: Mapping[str, Any] | None = None,
    layer: int | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A card for a head trained on ``backbone`` (anything with ``model_id`` and ``fingerprint``).

    With a real ``Backbone`` the card records ``backbone.pixel_spec(size)``: the pixels the head must be
    served on (the app prepares features with exactly that spec)."""
    size = max(input_size) if isinstance(input_size, (tuple, list)) else int(input_size)
    card: dict[str, Any] = {
        "kind": kind,
        "format_version": FORMAT_VERSION,
        "backbone_id": str(backbone.model_id),
        "backbone_fingerprint": str(backbone.fingerprint),
        "layer": layer if layer is not None else getattr(backbone, "num_layers", None),
        "class_names": list(class_names),
        "input_size": list(input_size) if isinstance(input_size, (tuple, list)) else int(input_size),
        "recipe": dict(recipe or {}),
        "metrics": dict(metrics or {}),
    }
    if callable(getattr(backbone, "pixel_spec", None)):
        card["pixel_spec"] = backbone.pixel_spec(int(size))
    card.update(extra)
    return card


def _to_tensor(v: Any) -> torch.Tensor:
    t = v.detach().cpu() if isinstance(v, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(v))
    return t.contiguous()


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def write_card(directory: str | Path, name: str, card: Mapping[str, Any]) -> Path:
    path = Path(directory) / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(dict(card), indent=2, default=_json_default) + "\n")
    return path


def read_card(directory: str | Path, name: str) -> dict[str, Any]:
    path = Path(directory) / f"{name}.json"
    if not path.is_file():
        raise FileNotFoundError(f"no head card {path}")
    return json.loads(path.read_text())


def save_head(directory: str | Path, name: str, state_dict: Mapping[str, Any], card: Mapping[str, Any]) -> Path:
    """Write ``<name>.safetensors`` and ``<name>.json``; stamps name, format version and created date."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for key in ("backbone_id", "backbone_fingerprint"):
        if not card.get(key):
            raise ValueError(f"card needs {key!r} so the head can be matched to its backbone")
    tensors = {k: _to_tensor(v) for k, v in state_dict.items()}
    full = dict(card)
    full["name"] = name
    full.setdefault("format_version", FORMAT_VERSION)
    full.setdefault("created", utc_now())
    full["weights"] = f"{name}.safetensors"
    weights = directory / f"{name}.safetensors"
    save_file(tensors, str(weights), metadata=_metadata(full))
    write_card(directory, name, full)
    return weights


def _metadata(card: Mapping[str, Any]) -> dict[str, str]:
    return {"backbone_fingerprint": str(card["backbone_fingerprint"]),
            CARD_METADATA_KEY: json.dumps(dict(card), default=_json_default)}


def head_bytes(state_dict: Mapping[str, Any], card: Mapping[str, Any]) -> bytes:
    """One self-describing file (safetensors, card JSON in its header) for download."""
    from safetensors.torch import save

    for key in ("backbone_id", "backbone_fingerprint"):
        if not card.get(key):
            raise ValueError(f"card needs {key!r} so the head can be matched to its backbone")
    full = {"format_version": FORMAT_VERSION, "created": utc_now(), **dict(card)}
    return save({k: _to_tensor(v) for k, v in state_dict.items()}, metadata=_metadata(full))


def read_head_bytes(data: bytes, backbone: Any) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Weights and card of an uploaded one-file head, or ``HeadFileError`` / ``HeadMismatchError`` with a
    plain sentence. Never unpickles; the header is parsed before any tensor is read."""
    from safetensors.torch import load

    if not data:
        raise HeadFileError("The head file is empty.")
    if len(data) > MAX_HEAD_BYTES:
        raise HeadFileError(f"The head file is larger than {MAX_HEAD_BYTES // 2**20} MB; heads are far smaller.")
    not_ours = "This is not a head file (expected a .safetensors head saved by this app)."
    if len(data) < 8:
        raise HeadFileError(not_ours)
    header_len = int.from_bytes(data[:8], "little")
    if header_len > len(data) - 8:
        # A real safetensors header starts with "{": then the file was cut short, else it is something else.
        raise HeadFileError("The head file is truncated (it ends inside its header)." if data[8:9] == b"{"
                            else not_ours)
    try:
        header = json.loads(data[8 : 8 + header_len])
        meta = header.get("__metadata__") or {}
        card = json.loads(meta[CARD_METADATA_KEY])
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, AttributeError) as err:
        raise HeadFileError(not_ours) from err
    if not isinstance(card, dict) or "backbone_fingerprint" not in card or "kind" not in card:
        raise HeadFileError("The file is safetensors but carries no head card.")
    check_backbone(card, backbone, "the uploaded file")
    try:
        state = load(data)
    except Exception as err:  # noqa: BLE001 - safetensors raises its own error types for damaged payloads
        raise HeadFileError("The head file is truncated or damaged (its weights cannot be read).") from err
    return state, card


def check_backbone(card: Mapping[str, Any], backbone: Any, where: str = "") -> None:
    """Raise ``HeadMismatchError`` unless the card was made for this backbone's config."""
    want = card.get("backbone_fingerprint")
    have = getattr(backbone, "fingerprint", backbone)
    if str(want) != str(have):
        have_id = getattr(backbone, "model_id", "?")
        kind = card.get("kind", card.get("name", "head"))
        raise HeadMismatchError(
            f"The {kind} head{(' in ' + where) if where else ''} was trained for backbone "
            f"{card.get('backbone_id')!r} (fingerprint of config + weights {want}), but the loaded backbone is "
            f"{have_id!r} (fingerprint {have}). Heads only work on the backbone they were trained on. "
            f"Train one for this backbone: python -m explorer train-head {kind} --data DIR --model {have_id}"
        )


def read_head(directory: str | Path, name: str, backbone: Any) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a head's weights and card, refusing (``HeadMismatchError``) if it belongs to another backbone.

    Raw data; ``explorer.heads.registry.load_head`` turns it into a ``Head``."""
    directory = Path(directory)
    card = read_card(directory, name)
    check_backbone(card, backbone, str(directory / name))
    weights = directory / card.get("weights", f"{name}.safetensors")
    if not weights.is_file():
        raise FileNotFoundError(f"head card {directory / (name + '.json')} found but weights {weights} missing")
    return load_file(str(weights)), card


def update_card_metrics(directory: str | Path, name: str, metrics: Mapping[str, Any], key: str) -> dict:
    """Record measured metrics under ``card['metrics'][key]`` (e.g. ``'test'``) without touching weights."""
    card = read_card(directory, name)
    card.setdefault("metrics", {})[key] = dict(metrics)
    write_card(directory, name, card)
    return card


def list_heads(directory: str | Path) -> list[dict[str, Any]]:
    """Cards of every head in a folder (cards whose JSON is unreadable are skipped)."""
    out = []
    for p in sorted(Path(directory).glob("*.json")):
        try:
            card = json.loads(p.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if isinstance(card, dict) and "backbone_fingerprint" in card:
            out.append(card)
    return out


def train_command(kind: str, model_id: str, data: str = "DIR") -> str:
    """The command that trains a ``kind`` head for a backbone (shown by the UI when none exists)."""
    return f"python -m explorer train-head {kind} --data {data} --model {model_id}"
