"""Where a backbone comes from: bundled folder, local folder, Hugging Face hub id, or timm id.

Every source either loads or raises `SourceUnavailable` with a message a user can act on, within
seconds: a hub id is first tried from the local cache only, and the network is probed with a
short TCP connect before any download, so an offline or firewalled machine never hangs.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path

import torch

from explorer.backbone.model import Backbone

REPO_ROOT = Path(__file__).resolve().parents[2]
BUNDLED_NAME = "dinov3-explorer-tiny"
BUNDLED_DIR = REPO_ROOT / "pretrained" / BUNDLED_NAME
DEFAULT_HUB_ID = "facebook/dinov3-vits16-pretrain-lvd1689m"
TIMM_PREFIX = "timm:"
HUB_HOST = "huggingface.co"

SOURCE_HELP = (
    "Sources: 'bundled' (the offline model in pretrained/), a local folder in Hugging Face format, "
    f"a hub id such as '{DEFAULT_HUB_ID}' (gated: accept the licence on its page and set HF_TOKEN), "
    "or 'timm:vit_small_patch16_dinov3.lvd1689m'."
)


class SourceUnavailable(RuntimeError):
    """A source that cannot be loaded here; the message says why and what to do."""


@dataclass
class LoadResult:
    backbone: Backbone | None
    message: str
    fell_back: bool
    requested: str


def network_reachable(host: str = HUB_HOST, port: int = 443, timeout: float = 2.0) -> bool:
    """A 2-second TCP probe; huggingface_hub's own retries can otherwise take minutes offline."""
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        return False
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _read_norm_stats(folder: Path) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    config = folder / "preprocessor_config.json"
    if not config.is_file():
        return None
    data = json.loads(config.read_text())
    if "image_mean" in data and "image_std" in data:
        return tuple(data["image_mean"]), tuple(data["image_std"])
    return None


def load_folder(folder: Path, model_id: str | None = None, device: torch.device | None = None) -> Backbone:
    """A local folder written by `save_pretrained` (config.json + safetensors)."""
    from transformers import AutoModel

    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise SourceUnavailable(f"'{folder}' has no config.json — not a Hugging Face model folder.")
    try:
        # float32 whatever the stored dtype: the bundled weights ship as float16 to stay small,
        # and half precision on CPU is slow and lossy for the analysis views.
        model = AutoModel.from_pretrained(folder, use_safetensors=True, dtype=torch.float32)
    except Exception as error:  # noqa: BLE001 - any load failure becomes a user-facing message
        raise SourceUnavailable(f"Could not load the model in '{folder}': {error}") from error
    if model.config.model_type != "dinov3_vit":
        raise SourceUnavailable(f"'{folder}' holds a '{model.config.model_type}' model, not a DINOv3 ViT.")
    stats = _read_norm_stats(folder)
    kwargs = {"mean": stats[0], "std": stats[1]} if stats else {}
    return Backbone.from_model(model, model_id or folder.name, device=device, **kwargs)


def load_hub(repo_id: str, device: torch.device | None = None) -> Backbone:
    """A hub id through transformers: local cache first, then (if reachable) the network with HF_TOKEN."""
    from huggingface_hub import snapshot_download

    token = os.environ.get("HF_TOKEN") or None
    patterns = ["*.json", "*.safetensors"]
    try:
        folder = snapshot_download(repo_id, allow_patterns=patterns, local_files_only=True)
    except Exception:  # noqa: BLE001 - not cached; try the network below
        folder = None
    if folder is None:
        if not network_reachable():
            raise SourceUnavailable(f"'{repo_id}' is not in the local cache and {HUB_HOST} cannot be reached (offline).")
        try:
            folder = snapshot_download(repo_id, allow_patterns=patterns, token=token, etag_timeout=5)
        except Exception as error:  # noqa: BLE001
            text = str(error)
            if "401" in text or "403" in text or "gated" in text.lower():
                hint = "the repo is gated: accept its licence on huggingface.co and set HF_TOKEN"
            elif "404" in text or "not found" in text.lower():
                hint = "no such repo"
            else:
                hint = text.splitlines()[0][:200] if text else type(error).__name__
            raise SourceUnavailable(f"Could not download '{repo_id}': {hint}.") from error
    return load_folder(Path(folder), model_id=repo_id, device=device)


def load_timm(name: str, device: torch.device | None = None) -> Backbone:
    """A timm DINOv3 copy, e.g. 'vit_small_patch16_dinov3.lvd1689m' (weights via the hub cache)."""
    import timm

    if not timm.list_models(name.split(".")[0]):
        raise SourceUnavailable(f"timm has no model '{name}'.")
    os.environ.setdefault("HF_HUB_ETAG_TIMEOUT", "5")
    if not network_reachable():
        os.environ["HF_HUB_OFFLINE"] = os.environ.get("HF_HUB_OFFLINE", "1")
    try:
        model = timm.create_model(name, pretrained=True, num_classes=0, dynamic_img_size=True)
    except Exception as error:  # noqa: BLE001
        raise SourceUnavailable(f"Could not load timm model '{name}': {str(error).splitlines()[0][:200]}") from error
    return Backbone.from_timm(model, TIMM_PREFIX + name, device=device)


def load_source(source: str, device: torch.device | None = None) -> Backbone:
    """Dispatch one source string to its loader."""
    source = source.strip()
    if source in {"", "bundled"}:
        if not BUNDLED_DIR.is_dir():
            raise SourceUnavailable(
                f"The bundled model is missing from '{BUNDLED_DIR}'. Train it with "
                "`python -m explorer pretrain --config configs/tiny_cpu.json --data world:20000 --out runs/tiny` "
                "and copy runs/tiny/backbone there, or use real weights (HF_TOKEN + hub id)."
            )
        return load_folder(BUNDLED_DIR, model_id=f"bundled/{BUNDLED_NAME}", device=device)
    if source.startswith(TIMM_PREFIX):
        return load_timm(source[len(TIMM_PREFIX):], device=device)
    path = Path(source).expanduser()
    if path.exists():
        return load_folder(path, device=device)
    if source.count("/") == 1 and not source.startswith((".", "/")):
        return load_hub(source, device=device)
    raise SourceUnavailable(f"'{source}' is neither a folder, a hub id nor a timm id. {SOURCE_HELP}")


def requested_source(cli_value: str | None = None) -> str:
    """--model flag, else DINOV3_MODEL, else the bundled model."""
    return cli_value or os.environ.get("DINOV3_MODEL") or "bundled"


def load_backbone(source: str | None = None, device: torch.device | None = None) -> LoadResult:
    """Load the requested source, falling through to the bundled model with a clear message."""
    requested = requested_source(source)
    chain = [requested] + ([] if requested == "bundled" else ["bundled"])
    reasons: list[str] = []
    for candidate in chain:
        try:
            backbone = load_source(candidate, device=device)
        except SourceUnavailable as error:
            reasons.append(str(error))
            continue
        fell_back = candidate != requested
        message = f"Loaded {backbone.model_id} on {backbone.device.type}."
        if fell_back:
            message = f"{reasons[0]} Fell back to {backbone.model_id}."
        return LoadResult(backbone, message, fell_back, requested)
    return LoadResult(None, "No backbone could be loaded. " + " ".join(reasons), True, requested)
