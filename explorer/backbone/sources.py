"""Where a backbone comes from: the bundled folder, a local folder, a hub id, or a timm name.

Every source either loads or raises `SourceUnavailable` with one line a user can act on, within
seconds: hub files are read from the local cache first and downloaded only after a short probe of the
hub (see `explorer.backbone.hub`); a folder is checked (model type, safetensors present and readable,
memory) before anything is loaded; pickle weights are never loaded. Messages name what the user typed,
never the server's own paths.

With no source asked for (`--model` / DINOV3_MODEL unset) the source is "auto": the ungated timm copy
of DINOv3 ViT-S/16 when it is cached or the hub answers, else the bundled model.
"""

from __future__ import annotations

import difflib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from explorer.backbone import catalog
from explorer.backbone.families import TRANSFORMERS_TYPES, UnsupportedModel, timm_family
from explorer.backbone.hub import (
    HubError,
    cached_file,
    endpoint_host,
    fetch_file,
    fetch_snapshot,
    hub_reachable,
)
from explorer.backbone.memory import TooLarge, load_dtype
from explorer.backbone.model import Backbone, default_device

REPO_ROOT = Path(__file__).resolve().parents[2]
BUNDLED_NAME = "dinov3-explorer-tiny"
BUNDLED_DIR = REPO_ROOT / "pretrained" / BUNDLED_NAME
TIMM_PREFIX = catalog.TIMM_PREFIX
AUTO = "auto"
DEFAULT_HUB_ID = "facebook/dinov3-vits16-pretrain-lvd1689m"
DEFAULT_SOURCE = "timm:vit_small_patch16_dinov3.lvd1689m"  # ungated copy of DEFAULT_HUB_ID's weights
UNGATED_HINT = f"ungated: '{DEFAULT_SOURCE}' (the same DINOv3 weights, via timm) or DINOv2 'facebook/dinov2-small'"
PICKLE_SUFFIXES = (".bin", ".pth", ".pt", ".ckpt", ".pkl")
SOURCE_HELP = (
    "Sources: 'auto', 'bundled', a local folder (transformers save_pretrained or timm save_for_hf), "
    f"a hub id such as '{DEFAULT_HUB_ID}' (gated: set HF_TOKEN) or 'facebook/dinov2-small', "
    f"or a timm name such as '{DEFAULT_SOURCE}'."
)


class SourceUnavailable(RuntimeError):
    """A source that cannot be loaded here; the message says why and what to do."""


@dataclass
class LoadResult:
    backbone: Backbone | None
    message: str
    fell_back: bool
    requested: str


# ---------------------------------------------------------------------------- checks before loading
def _suggest(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.75)
    return f" Did you mean '{close[0]}'?" if close else ""


def safetensors_params(files: list[Path], label: str) -> int:
    """Parameter count from the safetensors headers; a corrupt or truncated file is refused here."""
    from safetensors import safe_open

    total = 0
    for file in files:
        try:
            with safe_open(str(file), framework="pt") as handle:
                for key in handle.keys():  # noqa: SIM118 - safe_open is not a mapping
                    count = 1
                    for side in handle.get_slice(key).get_shape():
                        count *= int(side)
                    total += count
        except Exception as error:  # noqa: BLE001 - any parse failure means the file is unusable
            raise SourceUnavailable(
                f"{label}: '{file.name}' is not a readable safetensors file (corrupt or incomplete download): "
                "download or save it again."
            ) from error
    return total


def _weight_files(folder: Path, label: str) -> list[Path]:
    """The folder's safetensors; a pickle-only or weightless folder is refused before anything is read."""
    files = sorted(folder.glob("*.safetensors"))
    if files:
        return files
    pickles = sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickles:
        raise SourceUnavailable(
            f"{label} holds only pickle weights ({pickles[0]}), which are never loaded here: "
            "re-save them as safetensors (save_pretrained(..., safe_serialization=True))."
        )
    raise SourceUnavailable(f"{label} has a config.json but no weights (model.safetensors): add the weights file.")


def _dtype_for(params: int, label: str, device: torch.device) -> torch.dtype:
    try:
        return load_dtype(params, label, device)
    except TooLarge as error:
        raise SourceUnavailable(str(error)) from error


def _read_config(folder: Path, label: str) -> dict:
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise SourceUnavailable(
            f"{label} has no config.json — not a model folder (transformers save_pretrained or timm save_for_hf)."
        )
    try:
        config = json.loads(config_file.read_text())
    except (OSError, ValueError) as error:
        raise SourceUnavailable(f"{label}: config.json is not valid JSON.") from error
    if not isinstance(config, dict):
        raise SourceUnavailable(f"{label}: config.json is not a JSON object.")
    return config


def _read_norm_stats(folder: Path) -> tuple[tuple[float, ...], tuple[float, ...]] | tuple[None, None]:
    path = folder / "preprocessor_config.json"
    if not path.is_file():
        return None, None
    try:
        data = json.loads(path.read_text())
    except ValueError:
        return None, None
    if "image_mean" in data and "image_std" in data:
        return tuple(data["image_mean"]), tuple(data["image_std"])
    return None, None


# ---------------------------------------------------------------------------- loaders
def load_folder(folder: Path, model_id: str | None = None, device: torch.device | None = None,
                precision: str | None = None, label: str | None = None) -> Backbone:
    """A local folder: transformers (`save_pretrained`) or timm (`save_for_hf`), config.json + safetensors."""
    folder = Path(folder)
    label = label or f"'{model_id or folder.name}'"
    device = device or default_device()
    config = _read_config(folder, label)
    is_timm = "architecture" in config and "model_type" not in config
    if not is_timm:
        model_type = config.get("model_type")
        if model_type not in TRANSFORMERS_TYPES:
            raise SourceUnavailable(
                f"{label} holds a '{model_type or 'unknown'}' model; the explorer reads DINOv3 ViT/ConvNeXt and "
                f"DINOv2 models. {SOURCE_HELP}"
            )
    elif timm_family(_timm_folder_name(config)) is None:
        raise SourceUnavailable(f"{label} holds timm '{config.get('architecture')}', not a DINOv2/DINOv3 model.")
    files = _weight_files(folder, label)
    dtype = _dtype_for(safetensors_params(files, label), label, device)
    model_id = model_id or folder.name
    try:
        if is_timm:
            model = _create_timm(f"local-dir:{folder}", config["architecture"], dtype)
        else:
            from transformers import AutoModel

            # float32 whatever the stored dtype (the bundled weights ship as float16 to stay small; half
            # precision on CPU is slow and lossy), unless only bfloat16 fits in memory.
            model = AutoModel.from_pretrained(folder, use_safetensors=True, dtype=dtype)
    except Exception as error:  # noqa: BLE001 - any load failure becomes one line
        raise SourceUnavailable(
            f"Could not load {label} ({type(error).__name__}): the weights do not match its config.json."
        ) from error
    mean, std = _read_norm_stats(folder)
    try:
        return Backbone.from_model(model, model_id, mean=mean, std=std, device=device, precision=precision)
    except UnsupportedModel as error:
        raise SourceUnavailable(f"{label} {error}.") from error


def _timm_folder_name(config: dict) -> str:
    """`architecture.tag` of a timm `save_for_hf` config (ConvNeXt says "dinov3" only in its tag)."""
    pretrained = config.get("pretrained_cfg") if isinstance(config.get("pretrained_cfg"), dict) else {}
    return f"{config.get('architecture', '')}.{pretrained.get('tag', '')}"


def _create_timm(name: str, architecture: str, dtype: torch.dtype, **kwargs) -> torch.nn.Module:
    import timm

    if not architecture.startswith("convnext"):
        kwargs["dynamic_img_size"] = True  # any input size, not only the training one (ViTs only)
    model = timm.create_model(name, pretrained=True, num_classes=0, **kwargs)
    return model.to(dtype)


def _hub_error(error: HubError, source: str) -> SourceUnavailable:
    message = str(error)
    known = [e.source for e in catalog.entries()]
    if error.reason == "gated":
        entry = catalog.find(source)
        alternative = entry.ungated_alternative if entry else None
        message += f", or use the ungated copy '{alternative}'." if alternative else f", or use an {UNGATED_HINT}."
    elif error.reason == "missing":
        message += "." + (_suggest(source, known) or f" {SOURCE_HELP}")
    elif error.reason == "offline" and catalog.find(source) is None:
        message += "." + _suggest(source, known)
    else:
        message += "."
    return SourceUnavailable(message[0].upper() + message[1:])


def _check_known_size(source: str, device: torch.device) -> None:
    """Refuse a listed model that cannot fit before a byte of it is downloaded."""
    entry = catalog.find(source)
    if entry is not None and entry.params is not None:
        _dtype_for(entry.params, f"'{source}'", device)


def load_hub(repo_id: str, device: torch.device | None = None, precision: str | None = None) -> Backbone:
    """A hub id through transformers: local cache first, then (if the hub answers) a download with HF_TOKEN."""
    device = device or default_device()
    _check_known_size(repo_id, device)
    try:
        folder = fetch_snapshot(repo_id)
    except HubError as error:
        raise _hub_error(error, repo_id) from error
    return load_folder(folder, model_id=repo_id, device=device, precision=precision, label=f"'{repo_id}'")


def load_timm(name: str, device: torch.device | None = None, precision: str | None = None) -> Backbone:
    """A timm DINO copy, e.g. 'vit_small_patch16_dinov3.lvd1689m': safetensors from the hub cache, never pickle."""
    import timm

    device = device or default_device()
    source = TIMM_PREFIX + name
    architecture = name.split(".")[0]
    if not timm.is_model(architecture):
        known = [e.source[len(TIMM_PREFIX):] for e in catalog.entries() if e.library == "timm"]
        raise SourceUnavailable(f"timm has no model '{name}'.{_suggest(name, known) or ' ' + SOURCE_HELP}")
    if timm_family(name) is None:
        raise SourceUnavailable(f"'{source}' is not a DINOv2/DINOv3 model. {SOURCE_HELP}")
    try:
        pretrained = timm.models.get_pretrained_cfg(name, allow_unregistered=False)
    except RuntimeError:  # an architecture timm knows, with a tag it does not
        pretrained = None
    if pretrained is None or not pretrained.hf_hub_id:
        tags = timm.list_pretrained(f"{architecture}.*")
        raise SourceUnavailable(f"timm has no weights named '{name}'."
                                + (f" Its weights: {', '.join(tags)}." if tags else ""))
    _check_known_size(source, device)
    try:
        weights = fetch_file(pretrained.hf_hub_id, "model.safetensors", label=source)
    except HubError as error:
        raise _hub_error(error, source) from error
    dtype = _dtype_for(safetensors_params([weights], f"'{source}'"), f"'{source}'", device)
    try:
        model = _create_timm(name, architecture, dtype, pretrained_cfg_overlay=dict(file=str(weights)))
    except Exception as error:  # noqa: BLE001
        raise SourceUnavailable(f"Could not load '{source}' ({type(error).__name__}).") from error
    return Backbone.from_model(model, source, device=device, precision=precision)


def load_bundled(device: torch.device | None = None, precision: str | None = None) -> Backbone:
    if not BUNDLED_DIR.is_dir():
        raise SourceUnavailable(
            "The bundled model is missing from pretrained/. Train it with "
            "`python -m explorer pretrain --config configs/tiny_cpu.json --data world:20000 --out runs/tiny` "
            f"and copy runs/tiny/backbone there, or use real weights ('{DEFAULT_SOURCE}')."
        )
    return load_folder(BUNDLED_DIR, model_id=f"bundled/{BUNDLED_NAME}", device=device, precision=precision,
                       label="the bundled model")


def load_source(source: str, device: torch.device | None = None, precision: str | None = None) -> Backbone:
    """Dispatch one source string to its loader."""
    source = source.strip()
    if source in {"", "bundled"}:
        return load_bundled(device, precision)
    if source.startswith(TIMM_PREFIX):
        return load_timm(source[len(TIMM_PREFIX):].strip(), device=device, precision=precision)
    path = Path(source).expanduser()
    if path.is_dir():
        return load_folder(path, device=device, precision=precision, label=f"'{source}'")
    if path.exists():
        raise SourceUnavailable(f"'{source}' is a file; give the folder that holds config.json and the weights.")
    if source.count("/") == 1 and not source.startswith((".", "/", "~")):
        return load_hub(source, device=device, precision=precision)
    raise SourceUnavailable(f"'{source}' is neither a folder, a hub id nor a timm name. {SOURCE_HELP}")


# ---------------------------------------------------------------------------- the default chain
def requested_source(cli_value: str | None = None) -> str:
    """--model flag, else DINOV3_MODEL, else "auto"."""
    return (cli_value or os.environ.get("DINOV3_MODEL") or AUTO).strip()


def auto_chain() -> tuple[list[str], str]:
    """The sources "auto" tries, and why: real weights when they can be had without waiting."""
    repo = DEFAULT_SOURCE[len(TIMM_PREFIX):]
    if cached_file(f"timm/{repo}", "model.safetensors") is not None:
        return [DEFAULT_SOURCE, "bundled"], "default: real DINOv3 weights, found in the local cache"
    if hub_reachable():
        return [DEFAULT_SOURCE, "bundled"], f"default: real DINOv3 weights, {endpoint_host()} is reachable"
    return ["bundled"], (f"default: {endpoint_host()} cannot be reached and '{DEFAULT_SOURCE}' is not in the "
                         "local cache, so the bundled tiny model (features close to noise on photos)")


def load_backbone(source: str | None = None, device: torch.device | None = None,
                  precision: str | None = None) -> LoadResult:
    """Load the requested source, falling through to the bundled model with a message that says why."""
    requested = requested_source(source)
    if requested == AUTO:
        chain, why = auto_chain()
    else:
        chain, why = [requested] + ([] if requested == "bundled" else ["bundled"]), ""
    reasons: list[str] = []
    for candidate in chain:
        try:
            backbone = load_source(candidate, device=device, precision=precision)
        except SourceUnavailable as error:
            reasons.append(str(error))
            continue
        fell_back = bool(reasons)
        message = f"Loaded {backbone.model_id} on {backbone.device.type} ({backbone.precision})"
        message += f" — {why}." if why and not fell_back else "."
        if fell_back:
            message = f"{reasons[0]} Fell back to {backbone.model_id}."
        return LoadResult(backbone, message, fell_back, requested)
    return LoadResult(None, "No backbone could be loaded. " + " ".join(reasons), True, requested)
