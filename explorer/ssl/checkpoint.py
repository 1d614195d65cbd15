"""Checkpoints without pickle: module weights and optimizer state as safetensors, the rest as JSON.

Why: `torch.load` of a checkpoint can run arbitrary code; safetensors cannot. AdamW's
state is a dict of tensors per parameter index, which flattens to `"<index>.<key>"`.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn


def _tensors(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in module.state_dict().items()}


def optimizer_to_safetensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimizer state dict into a flat tensor dict and JSON-able metadata."""
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, Any] = {}
    for idx, state in sd["state"].items():
        for key, val in state.items():
            if torch.is_tensor(val):
                tensors[f"{idx}.{key}"] = val.detach().to("cpu").contiguous().clone()
            else:
                scalars[f"{idx}.{key}"] = val
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def optimizer_from_safetensors(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    state: dict[int, dict[str, Any]] = {}
    for name, val in tensors.items():
        idx, key = name.split(".", 1)
        state.setdefault(int(idx), {})[key] = val
    for name, val in meta["scalars"].items():
        idx, key = name.split(".", 1)
        state.setdefault(int(idx), {})[key] = val
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def save_checkpoint(path: str | Path, modules: dict[str, nn.Module], optimizer: torch.optim.Optimizer | None,
                    state: dict[str, Any]) -> Path:
    """Write `path/` atomically (to a temp folder, then rename): <name>.safetensors per module,
    optimizer.safetensors + optimizer.json, state.json."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    for name, module in modules.items():
        save_file(_tensors(module), str(tmp / f"{name}.safetensors"))
    if optimizer is not None:
        tensors, meta = optimizer_to_safetensors(optimizer)
        save_file(tensors, str(tmp / "optimizer.safetensors"))
        (tmp / "optimizer.json").write_text(json.dumps(meta))
    (tmp / "state.json").write_text(json.dumps(state, indent=2))
    old = path.with_name(path.name + ".old")
    if path.exists():
        if old.exists():
            shutil.rmtree(old)
        path.rename(old)
    tmp.rename(path)
    if old.exists():
        shutil.rmtree(old)
    return path


def load_checkpoint(path: str | Path, modules: dict[str, nn.Module], optimizer: torch.optim.Optimizer | None,
                    strict: bool = True) -> dict[str, Any]:
    """Load what `save_checkpoint` wrote into existing modules/optimizer; returns state.json.

    Modules whose file is missing are left untouched (e.g. no Gram teacher before its phase).
    """
    path = Path(path)
    for name, module in modules.items():
        f = path / f"{name}.safetensors"
        if f.exists():
            module.load_state_dict(load_file(str(f)), strict=strict)
    if optimizer is not None and (path / "optimizer.safetensors").exists():
        meta = json.loads((path / "optimizer.json").read_text())
        optimizer_from_safetensors(optimizer, load_file(str(path / "optimizer.safetensors")), meta)
    return json.loads((path / "state.json").read_text())
