"""``python -m explorer eval {probe,segmentation,detection,discovery} --data DIR [--json OUT]``.

Scores the bundled backbone and its shipped heads by default (``--model`` / ``--heads`` pick others),
writes a Markdown report (the report's Tables 3-8 and 12 layout) and, with ``--json``, one JSON object
whose keys include top1/top5 (probe), miou (segmentation), map/ap50/ap75 (detection) and
corloc/mean_iou (discovery).

A task is one line in ``EVALUATORS``: name -> function(args, backbone) -> (json dict, markdown).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from explorer.cli.common import detection_predictor, open_backbone
from explorer.eval import tasks

REPORT_ROOT = Path("runs") / "eval"


def _pct(v: Any) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.2f}%"


def _num(v: Any, nd: int = 4) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{nd}f}"


def _jsonable(o: Any) -> Any:
    if isinstance(o, dict):
        return {str(k): _jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_jsonable(v) for v in o]
    if isinstance(o, np.ndarray):
        return _jsonable(o.tolist())
    if isinstance(o, np.generic):
        return _jsonable(o.item())
    if isinstance(o, float) and math.isnan(o):
        return None
    if isinstance(o, Path):
        return str(o)
    return o


def _header(title: str, a: argparse.Namespace, backbone: Any, extra: list[tuple[str, Any]]) -> list[str]:
    rows = [("Backbone", f"`{backbone.model_id}` (fingerprint `{backbone.fingerprint}`)"),
            ("Data", f"`{a.data}` ({a.format}), split `{a.split}`"), *extra]
    return [f"# {title}", "", "| | |", "|---|---|", *[f"| {k} | {v} |" for k, v in rows], ""]


def _no_head(task: str, heads: Path, backbone: Any) -> SystemExit:
    return SystemExit(
        f"error: no {task} head in {heads} for backbone {backbone.model_id!r}. Train one with:\n"
        f"  python -m explorer train-head {task} --data DIR --model {backbone.model_id} --out {heads}"
    )


# --------------------------------------------------------------------------- tasks
def run_probe(a: argparse.Namespace, backbone: Any) -> tuple[dict, str]:
    from explorer.eval.datasets import guess_format, load_classification
    from explorer.eval.metrics import save_confusion_png
    from explorer.heads.probe import load_probe

    a.format = a.format or guess_format(a.data, "probe")
    if not (a.heads / f"{a.name or 'probe'}.json").is_file():
        raise _no_head("probe", a.heads, backbone)
    head = load_probe(a.heads, backbone, a.name or "probe")
    data = load_classification(a.data, a.split, a.format)
    m = tasks.evaluate_probe(backbone, head, data, a.size, a.cache_dir, progress=not a.no_progress)
    png = a.report.with_name(a.report.stem + "_confusion.png")
    save_confusion_png(m.pop("confusion"), png, head.class_names)
    m["confusion_png"] = str(png)
    md = _header("Linear probe evaluation", a, backbone, [("Head", f"`{a.heads / (a.name or 'probe')}`"),
                                                          ("Input size", m["input_size"])])
    md += ["## Overall", "", "| Metric | Value |", "|---|---|",
           f"| Top-1 accuracy | {_pct(m['top1'])} |", f"| Top-5 accuracy | {_pct(m['top5'])} |",
           f"| Balanced accuracy | {_pct(m['balanced_accuracy'])} |", f"| Number of samples | {m['n']} |", "",
           "## Classification report", "", "| Averaging | Precision | Recall | F1-score | Support |",
           "|---|---|---|---|---|"]
    for avg in ("macro", "weighted"):
        md.append(f"| {avg.capitalize()} average | {_num(m[avg + '_precision'])} | {_num(m[avg + '_recall'])} | "
                  f"{_num(m[avg + '_f1'])} | {m['n']} |")
    md += [f"| Overall accuracy | - | - | {_num(m['top1'])} | {m['n']} |", "",
           f"## Worst {len(m['worst_classes'])} classes by accuracy", "",
           "| Class ID | Class | Accuracy (%) | Support |", "|---|---|---|---|"]
    md += [f"| {w['class_id']} | {w['name']} | {100 * w['accuracy']:.2f} | {w['support']} |" for w in m["worst_classes"]]
    md += ["", f"![confusion matrix]({png.name})", ""]
    return m, "\n".join(md)


def run_segmentation(a: argparse.Namespace, backbone: Any) -> tuple[dict, str]:
    from explorer.eval.datasets import load_segmentation
    from explorer.heads import segmentation as segmentation_heads

    a.format = "voc"
    name = a.name or "segmentation"
    if not (a.heads / f"{name}.json").is_file():
        raise _no_head("segmentation", a.heads, backbone)
    head = segmentation_heads.load_segmentation(a.heads, backbone, name)
    data = load_segmentation(a.data, a.split)
    if list(data.class_names) != list(head.class_names):
        raise SystemExit(f"error: dataset classes ({len(data.class_names)}) differ from the head's "
                         f"({len(head.class_names)})")
    m = tasks.evaluate_segmentation(backbone, head, data, a.size, a.cache_dir, progress=not a.no_progress)
    md = _header("Semantic segmentation evaluation", a, backbone,
                 [("Head", f"`{a.heads / name}` ({head.config['arch']})"), ("Input size", m["input_size"])])
    md += ["| Metric | Value |", "|---|---|", f"| mIoU | {_num(m['miou'])} |",
           f"| Pixel accuracy | {_num(m['pixel_accuracy'])} |", f"| Images | {m['n']} |", "",
           "mIoU averages the classes present in the ground truth or the prediction; void (255) pixels "
           "are ignored; IoU is computed at each image's original resolution from the dataset-level "
           "confusion matrix.", "", "## Per-class IoU", "", "| Class ID | Class | IoU |", "|---|---|---|"]
    md += [f"| {i} | {n} | {_num(v)} |" for i, (n, v) in enumerate(m["per_class_iou"].items()) if v is not None]
    return m, "\n".join(md) + "\n"


def run_detection(a: argparse.Namespace, backbone: Any) -> tuple[dict, str]:
    from explorer.eval.datasets import guess_format, load_boxes
    from explorer.heads import detection
    a.format = a.format or guess_format(a.data, "detection")
    try:
        head = detection.load_detection(a.heads, backbone, a.name or detection.HEAD_NAME)
    except FileNotFoundError as e:
        raise _no_head("detection", a.heads, backbone) from e
    data = load_boxes(a.data, a.split, a.format)
    if list(getattr(head, "class_names", data.class_names)) != list(data.class_names):
        raise SystemExit(f"error: dataset classes ({len(data.class_names)}) differ from the detection head's "
                         f"({len(head.class_names)})")
    m = tasks.evaluate_detection(backbone, head, data, detection_predictor(), a.size,
                                 cache_dir=a.cache_dir, progress=not a.no_progress)
    md = _header("Object detection evaluation (COCO protocol, pycocotools)", a, backbone,
                 [("Head", f"`{a.heads}`"), ("Input size", m["input_size"])])
    md += ["| Metric | Value |", "|---|---|", f"| mAP@[.5:.95] | {_num(m['map'])} |", f"| AP50 | {_num(m['ap50'])} |",
           f"| AP75 | {_num(m['ap75'])} |", f"| Images | {m['n_images']} |", f"| Ground-truth boxes | {m['n_gt']} |",
           f"| Detections | {m['n_det']} |", ""]
    if a.format == "voc":
        md.append("VOC `difficult` boxes are marked `iscrowd` so they neither count as misses nor as hits.\n")
    return m, "\n".join(md)


def run_discovery(a: argparse.Namespace, backbone: Any) -> tuple[dict, str]:
    from explorer.eval.datasets import guess_format, load_boxes

    a.format = a.format or guess_format(a.data, "discovery")
    size = a.size or 448
    taus = [float(t) for t in a.taus.split(",")] if a.taus else list(tasks.DEFAULT_TAUS)
    data = load_boxes(a.data, a.split, a.format)
    feats = tasks.discovery_features(backbone, data, size, a.layer, progress=not a.no_progress)
    sweep = tasks.discovery_sweep(feats, data.boxes, taus, a.solver)
    select_split = a.val_split
    val_sweep = None
    if a.val_split and a.val_split != a.split:
        try:
            vdata = load_boxes(a.data, a.val_split, a.format)
            vfeats = tasks.discovery_features(backbone, vdata, size, a.layer, progress=not a.no_progress)
            val_sweep = tasks.discovery_sweep(vfeats, vdata.boxes, taus, a.solver)
        except FileNotFoundError:
            val_sweep = None
    if val_sweep is None:
        select_split = a.split
        print(f"warning: no {a.val_split!r} split; tau is chosen on {a.split!r} itself (optimistic)", file=sys.stderr)
    tau = tasks.best_tau(val_sweep if val_sweep is not None else sweep)
    layer = backbone.resolve_layer(a.layer)
    m = {"corloc": sweep[tau]["corloc"], "mean_iou": sweep[tau]["mean_iou"], "tau": tau,
         "tau_selected_on": select_split, "n": sweep[tau]["n"], "input_size": size, "layer": layer,
         "sweep": {str(t): {a.split: {"corloc": sweep[t]["corloc"], "mean_iou": sweep[t]["mean_iou"]},
                            **({select_split: {"corloc": val_sweep[t]["corloc"], "mean_iou": val_sweep[t]["mean_iou"]}}
                               if val_sweep is not None else {})} for t in taus}}
    md = _header("Unsupervised object discovery (TokenCut)", a, backbone,
                 [("Input size", f"longer side {size} (aspect kept)"), ("Layer", layer),
                  ("Solver", a.solver), ("Images", m["n"])])
    md += ["CorLoc counts an image as correct when the TokenCut box has IoU >= 0.5 with ANY ground-truth "
           "box; mean IoU averages each image's best IoU.", "",
           f"**CorLoc {_pct(m['corloc'])}, mean IoU {_num(m['mean_iou'])}** on `{a.split}` at "
           f"τ = {tau:g} (chosen on `{select_split}`).", "", "## τ sweep", ""]
    if val_sweep is not None:
        md += [f"| Threshold (τ) | CorLoc {a.val_split} (%) | Mean IoU {a.val_split} | CorLoc {a.split} (%) | "
               f"Mean IoU {a.split} |", "|---|---|---|---|---|"]
        md += [f"| {t:.2f}{' *' if t == tau else ''} | {100 * val_sweep[t]['corloc']:.2f} | "
               f"{val_sweep[t]['mean_iou']:.4f} | {100 * sweep[t]['corloc']:.2f} | {sweep[t]['mean_iou']:.4f} |"
               for t in taus]
    else:
        md += ["| Threshold (τ) | CorLoc (%) | Mean IoU |", "|---|---|---|"]
        md += [f"| {t:.2f}{' *' if t == tau else ''} | {100 * sweep[t]['corloc']:.2f} | {sweep[t]['mean_iou']:.4f} |"
               for t in taus]
    md += ["", "`*` = selected τ.", ""]
    return m, "\n".join(md)


EVALUATORS: dict[str, Callable[[argparse.Namespace, Any], tuple[dict, str]]] = {
    "probe": run_probe,
    "segmentation": run_segmentation,
    "detection": run_detection,
    "discovery": run_discovery,
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m explorer eval", description="Score a frozen backbone and its heads on a dataset split; writes a Markdown report "
                                "and, with --json, one JSON object.")
    p.add_argument("task", choices=list(EVALUATORS))
    p.add_argument("--data", required=True, help="dataset folder (offline world root or one format's root)")
    p.add_argument("--split", default="test")
    p.add_argument("--format", choices=("imagefolder", "voc", "coco"), default=None)
    p.add_argument("--json", default=None, help="write one JSON object with every metric here")
    p.add_argument("--report", default=None, help="Markdown report path (default runs/eval/<slug>/<task>-<split>.md)")
    p.add_argument("--model", default=None, help="backbone source (default: bundled)")
    p.add_argument("--heads", default=None, help="heads folder (default: pretrained_heads/<backbone-slug>)")
    p.add_argument("--name", default=None, help="head file stem inside --heads (default: the task name)")
    p.add_argument("--size", type=int, default=None, help="input size (default: the head card's; discovery 448)")
    p.add_argument("--layer", type=int, default=None, help="backbone block for discovery (default: last)")
    p.add_argument("--taus", default=None, help="discovery τ list, e.g. 0.1,0.2 (default 0.1..0.9)")
    p.add_argument("--val-split", default="val", help="discovery: the split τ is chosen on")
    p.add_argument("--solver", choices=("fast", "dense"), default="fast", help="TokenCut eigen-solver")
    p.add_argument("--cache-dir", default=None, help="feature cache folder")
    p.add_argument("--update-card", action="store_true",
                   help="record the measured metrics in the head's card under metrics[<split>]")
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    from explorer.heads.io import HeadMismatchError, backbone_slug, default_heads_dir, update_card_metrics

    a = build_parser().parse_args(argv)
    backbone = open_backbone(a.model)
    a.heads = Path(a.heads) if a.heads else default_heads_dir(backbone.model_id)
    a.report = Path(a.report) if a.report else REPORT_ROOT / backbone_slug(backbone.model_id) / f"{a.task}-{a.split}.md"
    a.report.parent.mkdir(parents=True, exist_ok=True)
    try:
        metrics, md = EVALUATORS[a.task](a, backbone)
    except HeadMismatchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    a.report.write_text(md)
    result = {"task": a.task, "split": a.split, "data": str(a.data), "format": a.format,
              "backbone_id": backbone.model_id, "backbone_fingerprint": backbone.fingerprint,
              "heads": str(a.heads) if a.task != "discovery" else None, "report": str(a.report), **metrics}
    result = _jsonable(result)
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(result, indent=2) + "\n")
    if a.update_card and a.task != "discovery" and (a.heads / f"{a.name or a.task}.json").is_file():
        update_card_metrics(a.heads, a.name or a.task, {k: v for k, v in result.items()
                                                         if k not in ("report", "heads")}, a.split)
    headline = {k: result.get(k) for k in ("top1", "top5", "miou", "map", "ap50", "ap75", "corloc", "mean_iou", "tau")
                if k in result}
    print(json.dumps({"task": a.task, "split": a.split, **headline, "report": str(a.report)}))
    return 0
