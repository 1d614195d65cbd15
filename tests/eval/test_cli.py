"""A tiny end-to-end run on CPU: save a random DINOv3, train probe + segmentation heads, evaluate all."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from explorer.eval import cli as eval_cli
from explorer.heads import cli as heads_cli
from tests.eval.tiny import save_tiny_model, write_world


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("e2e")
    write_world(root / "world")
    save_tiny_model(root / "model")
    return {"root": root, "data": root / "world", "model": root / "model", "heads": root / "heads",
            "cache": root / "cache"}


def _common(w: dict[str, Path]) -> list[str]:
    return ["--data", str(w["data"]), "--model", str(w["model"]), "--cache-dir", str(w["cache"]), "--no-progress"]


def test_train_then_eval_probe(world) -> None:
    w = world
    assert heads_cli.main(["probe", *_common(w), "--out", str(w["heads"]), "--size", "64", "--C", "0.1,1"]) == 0
    card = json.loads((w["heads"] / "probe.json").read_text())
    assert card["backbone_id"] == "model" and card["input_size"] == 64 and "val" in card["metrics"]
    out = w["root"] / "probe.json"
    rep = w["root"] / "rep" / "probe.md"
    assert eval_cli.main(["probe", *_common(w), "--heads", str(w["heads"]), "--json", str(out),
                          "--report", str(rep), "--update-card"]) == 0
    res = json.loads(out.read_text())
    for key in ("top1", "top5", "balanced_accuracy", "macro_f1", "weighted_f1", "worst_classes"):
        assert key in res
    assert res["top5"] == 1.0  # three classes: every label is in the top 5
    assert res["top1"] > 0.5  # chance is 1/3; colours are trivially separable even for a random ViT
    assert Path(res["confusion_png"]).is_file() and "Top-1 accuracy" in rep.read_text()
    # the reported top-1 equals an independent recomputation from the saved head
    from explorer.backbone import load_backbone
    from explorer.eval.datasets import load_classification
    from explorer.heads.features_cache import extract_features
    from explorer.heads.probe import load_probe, predict

    bb = load_backbone(str(w["model"])).backbone
    head = load_probe(w["heads"], bb)
    data = load_classification(w["data"], "test")
    feats = extract_features(bb, data.paths, data.root, 64, progress=False, patches=False, cache_dir=w["cache"])
    assert res["top1"] == pytest.approx(float((predict(head, feats.cls.numpy()) == data.labels).mean()))
    assert json.loads((w["heads"] / "probe.json").read_text())["metrics"]["test"]["top1"] == res["top1"]


def test_train_then_eval_segmentation(world) -> None:
    w = world
    assert heads_cli.main(["segmentation", *_common(w), "--out", str(w["heads"]), "--size", "64", "--epochs", "15",
                           "--label-scale", "16", "--hidden", "32", "--arch", "conv"]) == 0
    out = w["root"] / "seg.json"
    assert eval_cli.main(["segmentation", *_common(w), "--heads", str(w["heads"]), "--json", str(out),
                          "--report", str(w["root"] / "rep" / "seg.md")]) == 0
    res = json.loads(out.read_text())
    assert 0.0 <= res["miou"] <= 1.0 and set(res["per_class_iou"]) == {"background", "red", "green", "blue"}
    assert res["miou"] > 0.4  # background alone would give ~0.2 (one class of four, IoU ~0.8)


def test_discovery_sweep_and_selection(world) -> None:
    w = world
    out = w["root"] / "disc.json"
    assert eval_cli.main(["discovery", *_common(w), "--json", str(out), "--size", "64", "--taus", "0.2,0.5,0.8",
                          "--report", str(w["root"] / "rep" / "disc.md")]) == 0
    res = json.loads(out.read_text())
    assert res["tau_selected_on"] == "val" and res["tau"] in (0.2, 0.5, 0.8)
    val = {t: v["val"]["corloc"] for t, v in res["sweep"].items()}
    assert val[str(res["tau"])] == max(val.values())  # τ is the val-best one
    assert res["corloc"] == res["sweep"][str(res["tau"])]["test"]["corloc"]
    assert "τ sweep" in (w["root"] / "rep" / "disc.md").read_text()


def test_other_backbone_is_refused(world, tmp_path, capsys) -> None:
    from transformers import DINOv3ViTConfig, DINOv3ViTModel

    w = world
    cfg = DINOv3ViTConfig(hidden_size=48, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                          num_register_tokens=4, layerscale_value=1e-5, patch_size=16, image_size=64)
    DINOv3ViTModel(cfg).save_pretrained(tmp_path / "other")
    if not (w["heads"] / "probe.json").is_file():
        pytest.skip("needs the probe trained by test_train_then_eval_probe")
    code = eval_cli.main(["probe", "--data", str(w["data"]), "--model", str(tmp_path / "other"),
                          "--heads", str(w["heads"]), "--cache-dir", str(w["cache"]), "--no-progress",
                          "--report", str(tmp_path / "r.md")])
    assert code == 2 and "trained for backbone 'model'" in capsys.readouterr().err


def test_detection_harness_with_oracle_predictor(world) -> None:
    """The detection path end to end with a predictor that returns the ground truth in input pixels
    (32 px square input for 64 px images) -> boxes scaled back must give mAP 1."""
    from explorer.backbone import load_backbone
    from explorer.eval.datasets import load_boxes
    from explorer.eval.tasks import evaluate_detection

    w = world
    bb = load_backbone(str(w["model"])).backbone
    data = load_boxes(w["data"], "test", "voc")
    it = iter(range(len(data.boxes)))

    def oracle(head, grids, input_size):
        assert tuple(grids.shape[1:3]) == (2, 2) and input_size == (32, 32)
        out = []
        for _ in range(len(grids)):
            i = next(it)
            out.append({"boxes_xyxy": data.boxes[i] * 0.5, "scores": np.ones(len(data.boxes[i])),
                        "labels": data.labels[i]})
        return out

    res = evaluate_detection(bb, None, data, oracle, size=32, batch_size=4, cache_dir=w["cache"], progress=False)
    assert res["map"] == pytest.approx(1.0) and res["n_gt"] == len(data.boxes)
