"""What every head command shares: the core flags, opening the backbone, where heads go."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np


def common_parser(task: str, description: str = "") -> argparse.ArgumentParser:
    """The flags every head trainer shares."""
    p = argparse.ArgumentParser(prog=f"python -m explorer train-head {task}", description=description)
    p.add_argument("--data", required=True, help="dataset folder (the offline world root, or one format's root)")
    p.add_argument("--format", choices=("imagefolder", "voc", "coco"), default=None,
                   help="dataset layout (default: the first one found that suits the task)")
    p.add_argument("--model", default=None,
                   help="backbone source: bundled, a local HF folder, a hub id or timm:<name> (default: bundled)")
    p.add_argument("--out", default=None, help="output folder (default: pretrained_heads/<backbone-slug>)")
    p.add_argument("--name", default=task, help="head file stem inside --out")
    p.add_argument("--size", type=int, default=224, help="square input size in pixels (multiple of the patch size)")
    p.add_argument("--layer", type=int, default=None, help="1-based backbone block (default: last)")
    p.add_argument("--train-split", default="train")
    p.add_argument("--val-split", default="val", help="scored after training and recorded in the card ('' to skip)")
    p.add_argument("--batch-size", type=int, default=32, help="backbone batch size for feature extraction")
    p.add_argument("--cache-dir", default=None, help="feature cache folder (default: $EXPLORER_CACHE or .cache/)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    return p


def extraction_kwargs(a: argparse.Namespace, patches: bool) -> dict[str, Any]:
    """`extract_features` options from the common parser's arguments (one place for every head CLI)."""
    return {"size": a.size, "layer": a.layer, "patches": patches, "batch_size": a.batch_size,
            "cache_dir": a.cache_dir, "progress": not a.no_progress}


def open_backbone(source: str | None, strict: bool = True) -> Any:
    """Load the backbone or exit with the loader's message; with ``strict`` an explicit source that
    fell back to another model is an error (a head for the wrong backbone is worse than none)."""
    from explorer.backbone import load_backbone

    res = load_backbone(source)
    if res.backbone is None:
        raise SystemExit(f"error: could not load a backbone: {res.message}")
    requested = getattr(res, "requested", source) or "bundled"
    if strict and requested != "bundled" and res.fell_back:
        raise SystemExit(f"error: requested backbone {requested!r} is unavailable: {res.message}")
    print(res.message, file=sys.stderr)
    return res.backbone


def heads_out_dir(out: str | None, backbone: Any) -> Path:
    from explorer.heads.io import default_heads_dir

    return Path(out) if out else default_heads_dir(backbone.model_id)


def split_or_none(loader: Any, *args: Any) -> Any:
    try:
        return loader(*args)
    except (FileNotFoundError, KeyError):
        return None


def clean_metrics(m: dict[str, Any]) -> dict[str, Any]:
    """JSON-friendly subset of a metrics dict (drops arrays such as confusion matrices)."""
    out = {}
    for k, v in m.items():
        if isinstance(v, np.ndarray):
            continue
        if isinstance(v, float) and v != v:
            v = None
        out[k] = v
    return out


def detection_predictor(score_threshold: float = 0.001) -> Callable[[Any, Any, tuple[int, int]], list[dict]]:
    """`predict_fn` for `explorer.eval.tasks.evaluate_detection`. COCOeval ranks by score, so keep the
    low-score boxes (the app's slider filters them; an evaluation must not)."""
    from explorer.heads import detection

    def fn(head: Any, grids: Any, input_size: tuple[int, int]) -> list[dict]:
        return detection.predict(head, grids, input_size, score_threshold=score_threshold)

    return fn
