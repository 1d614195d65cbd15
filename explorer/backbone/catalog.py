"""Every backbone the explorer knows by name, with what a user needs to pick one.

For each source (a hub id for transformers, or `timm:<name>` for timm's ungated copies): family,
size, pretraining data, whether it needs HF_TOKEN, parameters, download size, memory it needs and
the CPU forward time at 448 px. Parameters are counted from the architecture's config on the meta
device (no weights, no download) by `python -m explorer.backbone.catalog --write`, which stores them
in `catalog.json` beside this file; `benchmarks/families.py --write-catalog` adds the forward times
measured on this machine (random weights; `null` where not measured).

Sizes are estimates from the parameter count: download = params × 4 bytes (the checkpoints are
stored float32); memory = the weights in the precision they are loaded in, plus `LOAD_OVERHEAD` for
loading and activations at 448 px, plus `PROCESS_BASE_MB` for Python, torch and the libraries.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from explorer.backbone.families import DINOV2, DINOV3_CONVNEXT, DINOV3_VIT, FAMILY_NAMES

CATALOG_JSON = Path(__file__).with_name("catalog.json")
TIMM_PREFIX = "timm:"
STORED_BYTES = 4  # the released safetensors hold float32
LOAD_OVERHEAD = 1.2  # weights × this: the copy made while loading plus activations at 448 px
PROCESS_BASE_MB = 1050  # peak RSS of a fresh process minus 1.2 x its weights: 1000-1090 MB (benchmarks/families.py)
GATED_HINT = "gated: accept the licence on its hub page and set HF_TOKEN"

def _dinov3_vit(size: str, timm_name: str, **fields) -> dict:
    """Released DINOv3 ViTs: patch 16, 4 registers, LayerScale 1e-5 (gated MLP for S+, H+, 7B)."""
    return dict(family=DINOV3_VIT, size=size, registers=4, timm=timm_name,
                hf=("dinov3_vit", dict(num_register_tokens=4, layerscale_value=1e-5, patch_size=16, **fields)))


def _convnext(name: str, dims: list[int], depths: list[int]) -> dict:
    return dict(family=DINOV3_CONVNEXT, size=name.capitalize(), registers=0, timm=f"convnext_{name}",
                hf=("dinov3_convnext", dict(hidden_sizes=dims, depths=depths)))


def _dinov2(name: str, letter: str, hidden: int, layers: int, heads: int, registers: bool) -> dict:
    """DINOv2 ViTs: patch 14, 518-px position grid; the giant has a SwiGLU MLP."""
    fields = dict(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads, patch_size=14,
                  image_size=518, use_swiglu_ffn=name == "giant")
    if registers:
        fields["num_register_tokens"] = 4
    return dict(family=DINOV2, size=f"{letter}/14", registers=4 if registers else 0,
                timm=f"vit_{name}_patch14_{'reg4_' if registers else ''}dinov2",
                hf=("dinov2_with_registers" if registers else "dinov2", fields))


GATED_MLP = dict(use_gated_mlp=True, hidden_act="silu")
# Architecture configs: the transformers model_type + config fields, and the timm architecture of the same net.
ARCHS: dict[str, dict] = {
    "vits16": _dinov3_vit("S/16", "vit_small_patch16_dinov3", hidden_size=384, num_hidden_layers=12,
                          num_attention_heads=6, intermediate_size=1536),
    "vits16plus": _dinov3_vit("S+/16", "vit_small_plus_patch16_dinov3", hidden_size=384, num_hidden_layers=12,
                              num_attention_heads=6, intermediate_size=1536, **GATED_MLP),
    "vitb16": _dinov3_vit("B/16", "vit_base_patch16_dinov3", hidden_size=768, num_hidden_layers=12,
                          num_attention_heads=12, intermediate_size=3072),
    "vitl16": _dinov3_vit("L/16", "vit_large_patch16_dinov3", hidden_size=1024, num_hidden_layers=24,
                          num_attention_heads=16, intermediate_size=4096),
    "vith16plus": _dinov3_vit("H+/16", "vit_huge_plus_patch16_dinov3", hidden_size=1280, num_hidden_layers=32,
                              num_attention_heads=20, intermediate_size=5120, **GATED_MLP),
    "vit7b16": _dinov3_vit("7B/16", "vit_7b_patch16_dinov3", hidden_size=4096, num_hidden_layers=40,
                           num_attention_heads=32, intermediate_size=8192, **GATED_MLP),
    "convnext-tiny": _convnext("tiny", [96, 192, 384, 768], [3, 3, 9, 3]),
    "convnext-small": _convnext("small", [96, 192, 384, 768], [3, 3, 27, 3]),
    "convnext-base": _convnext("base", [128, 256, 512, 1024], [3, 3, 27, 3]),
    "convnext-large": _convnext("large", [192, 384, 768, 1536], [3, 3, 27, 3]),
    **{f"dinov2-{name}{'-reg' if reg else ''}": _dinov2(name, letter, hidden, layers, heads, reg)
       for name, letter, hidden, layers, heads in [("small", "S", 384, 12, 6), ("base", "B", 768, 12, 12),
                                                   ("large", "L", 1024, 24, 16), ("giant", "g", 1536, 40, 24)]
       for reg in (False, True)},
}


@dataclass(frozen=True)
class Entry:
    """One loadable source and what it costs."""

    source: str  # what `load_backbone` takes
    arch: str  # key into ARCHS
    library: str  # "transformers" or "timm"
    pretrain: str  # "LVD-1689M", "SAT-493M" or "LVD-142M"
    gated: bool  # needs HF_TOKEN and an accepted licence
    params: int | None  # counted on the meta device (catalog.json)
    forward_ms_448: float | None  # CPU, random weights, this machine (catalog.json); None = not measured
    variant: str = ""  # "qkvb": timm's copy keeping a zero QKV bias, numerically closest to transformers

    @property
    def family(self) -> str:
        return ARCHS[self.arch]["family"]

    @property
    def size(self) -> str:
        return ARCHS[self.arch]["size"]

    @property
    def registers(self) -> int:
        return int(ARCHS[self.arch].get("registers", 0))

    @property
    def download_mb(self) -> float | None:
        return None if self.params is None else self.params * STORED_BYTES / 2**20

    def load_mb(self, bytes_per_param: int = 4) -> float | None:
        """Memory a running process needs on top of what it has, to load this and run it at 448 px."""
        return None if self.params is None else self.params * bytes_per_param * LOAD_OVERHEAD / 2**20

    @property
    def memory_mb(self) -> float | None:
        """A fresh process's total in float32: libraries + weights + loading and activations."""
        load = self.load_mb()
        return None if load is None else PROCESS_BASE_MB + load

    @property
    def ungated_alternative(self) -> str | None:
        """For a gated id: the timm copy of the same weights (None when the source is not gated)."""
        if not self.gated:
            return None
        for entry in entries():
            if entry.arch == self.arch and entry.pretrain == self.pretrain and not entry.gated and not entry.variant:
                return entry.source
        return None

    def label(self) -> str:
        """Dropdown label: family, size, data, library and the figures that decide a pick."""
        parts = [f"{FAMILY_NAMES[self.family]} {self.size}", self.pretrain,
                 "transformers" if self.library == "transformers" else "timm copy"]
        if self.family == DINOV2 and self.registers:
            parts.append("with registers")
        if self.variant:
            parts.append(self.variant)
        if self.params is not None:
            parts.append(f"{self.params / 1e6:,.0f} M params" if self.params >= 1e7 else f"{self.params / 1e6:.1f} M params")
            parts.append(f"{format_mb(self.download_mb)} download, ~{format_mb(self.memory_mb)} RAM")
        if self.forward_ms_448 is not None:
            parts.append(f"{self.forward_ms_448:,.0f} ms @448 CPU")
        parts.append("needs HF_TOKEN" if self.gated else "no token")
        return " · ".join(parts)

    def info(self) -> dict:
        """Everything about this source as plain JSON values (for the UI and docs)."""
        return {"source": self.source, "family": self.family, "family_name": FAMILY_NAMES[self.family],
                "size": self.size, "pretrain": self.pretrain, "library": self.library, "variant": self.variant,
                "registers": self.registers, "params": self.params,
                "params_m": None if self.params is None else round(self.params / 1e6, 1),
                "download_mb": _round(self.download_mb), "memory_mb": _round(self.memory_mb),
                "memory_mb_bf16": _round(None if self.params is None else PROCESS_BASE_MB + self.load_mb(2)),
                "forward_ms_448": self.forward_ms_448, "needs_hf_token": self.gated,
                "ungated_alternative": self.ungated_alternative, "label": self.label()}


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def format_mb(value: float | None) -> str:
    if value is None:
        return "?"
    return f"{value / 1024:.1f} GB" if value >= 1024 else f"{value:.0f} MB"


def _sources() -> list[tuple[str, str, str, str, bool, str]]:
    """(source, arch, library, pretrain, gated, variant) for every known source."""
    rows: list[tuple[str, str, str, str, bool, str]] = []
    vit = [("vits16", "lvd1689m"), ("vits16plus", "lvd1689m"), ("vitb16", "lvd1689m"), ("vitl16", "lvd1689m"),
           ("vith16plus", "lvd1689m"), ("vit7b16", "lvd1689m"), ("vitl16", "sat493m"), ("vit7b16", "sat493m")]
    qkvb = {("vits16", "lvd1689m"), ("vits16plus", "lvd1689m"), ("vitb16", "lvd1689m"), ("vitl16", "lvd1689m"),
            ("vith16plus", "lvd1689m"), ("vitl16", "sat493m")}
    for arch, data in vit:
        pretrain = "SAT-493M" if data == "sat493m" else "LVD-1689M"
        rows.append((f"facebook/dinov3-{arch}-pretrain-{data}", arch, "transformers", pretrain, True, ""))
        rows.append((f"{TIMM_PREFIX}{ARCHS[arch]['timm']}.{data}", arch, "timm", pretrain, False, ""))
        if (arch, data) in qkvb:
            rows.append((f"{TIMM_PREFIX}{ARCHS[arch]['timm']}_qkvb.{data}", arch, "timm", pretrain, False, "qkvb"))
    for name in ("tiny", "small", "base", "large"):
        arch = f"convnext-{name}"
        rows.append((f"facebook/dinov3-convnext-{name}-pretrain-lvd1689m", arch, "transformers", "LVD-1689M", True, ""))
        rows.append((f"{TIMM_PREFIX}convnext_{name}.dinov3_lvd1689m", arch, "timm", "LVD-1689M", False, ""))
    for name in ("small", "base", "large", "giant"):
        for reg in (False, True):
            arch = f"dinov2-{name}{'-reg' if reg else ''}"
            hub = f"facebook/dinov2-{'with-registers-' if reg else ''}{name}"
            rows.append((hub, arch, "transformers", "LVD-142M", False, ""))
            rows.append((f"{TIMM_PREFIX}{ARCHS[arch]['timm']}.lvd142m", arch, "timm", "LVD-142M", False, ""))
    return rows


@lru_cache(maxsize=1)
def _stored() -> dict:
    if CATALOG_JSON.is_file():
        return json.loads(CATALOG_JSON.read_text())
    return {"params": {}, "forward_ms_448": {}}


@lru_cache(maxsize=1)
def entries() -> tuple[Entry, ...]:
    """Every known source, in display order (DINOv3 ViT, ConvNeXt, DINOv2)."""
    stored = _stored()
    return tuple(Entry(source, arch, library, pretrain, gated, stored["params"].get(source),
                       stored.get("forward_ms_448", {}).get(source), variant)
                 for source, arch, library, pretrain, gated, variant in _sources())


def find(source: str) -> Entry | None:
    """The entry for a source string (hub id or `timm:name`), or None for one the catalogue does not list."""
    source = source.strip()
    for entry in entries():
        if entry.source == source or entry.source.lower() == source.lower():
            return entry
    return None


LOCAL_CHOICES = [
    ("Automatic: real DINOv3 ViT-S/16 (timm copy) when the hub answers or it is cached, else the bundled model",
     "auto"),
    ("Bundled tiny model (offline; trained on synthetic scenes, features close to noise on photos)", "bundled"),
]


def choices(gated: bool = True, local: bool = True) -> list[tuple[str, str]]:
    """(label, source) pairs for a dropdown: "auto" and "bundled" first (`local`), then every catalogue
    source; `gated=False` leaves out the sources that need HF_TOKEN."""
    listed = [(entry.label(), entry.source) for entry in entries() if gated or not entry.gated]
    return (LOCAL_CHOICES if local else []) + listed


def markdown_table() -> str:
    """The catalogue as a Markdown table (docs/MODELS.md)."""
    lines = ["| source | family | size | data | params | download | RAM fp32 / bf16 | CPU ms @448 | token |",
             "|---|---|---|---|---|---|---|---|---|"]
    for e in entries():
        info = e.info()
        ms = "—" if e.forward_ms_448 is None else f"{e.forward_ms_448:,.0f}"
        lines.append(
            f"| `{e.source}` | {FAMILY_NAMES[e.family]}{' +reg' if e.family == DINOV2 and e.registers else ''}"
            f"{' (' + e.variant + ')' if e.variant else ''} | {e.size} | {e.pretrain} | {info['params_m']:,} M | "
            f"{format_mb(e.download_mb)} | {format_mb(e.memory_mb)} / {format_mb(info['memory_mb_bf16'])} | {ms} | "
            f"{'HF_TOKEN' if e.gated else 'none'} |")
    return "\n".join(lines)


def count_params(arch: str, library: str) -> int:
    """Parameters of an architecture, built on the meta device (no memory, no weights)."""
    import torch

    spec = ARCHS[arch]
    with torch.device("meta"):
        if library == "timm":
            import timm

            model = timm.create_model(spec["timm"], pretrained=False, num_classes=0)
        else:
            from transformers import AutoConfig, AutoModel

            model_type, fields = spec["hf"]
            model = AutoModel.from_config(AutoConfig.for_model(model_type, **fields))
    return int(sum(p.numel() for p in model.parameters()))


def write_params(path: Path = CATALOG_JSON) -> dict:
    """Count every source's parameters and store them (keeps the measured forward times)."""
    stored = json.loads(path.read_text()) if path.is_file() else {"forward_ms_448": {}}
    counted: dict[tuple[str, str], int] = {}
    params = {}
    for source, arch, library, *_ in _sources():
        key = (arch, library)
        if key not in counted:
            counted[key] = count_params(arch, library)
        params[source] = counted[key]
    stored["params"] = params
    stored.setdefault("forward_ms_448", {})
    path.write_text(json.dumps(stored, indent=1, sort_keys=True) + "\n")
    _stored.cache_clear()
    entries.cache_clear()
    return stored


if __name__ == "__main__":
    if "--write" in sys.argv:
        write_params()
    if "--markdown" in sys.argv:
        print(markdown_table())
    else:
        for entry in entries():
            print(entry.label())
