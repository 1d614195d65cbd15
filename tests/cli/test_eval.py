"""`python -m explorer eval`: heads trained on a tiny world are scored, and the reported figures equal an
independent recomputation from the saved head."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from explorer.cli import eval as eval_cli
from explorer.cli import train_head
from tests.cli.conftest import common_args as _common
from tests.conftest import make_tiny_model


@pytest.fixture(scope="module")
def probe_heads(world) -> Path:
    """A probe trained once for this module's tests (each test that needs it asks for it)."""
    heads = world["root"] / "probe_heads"
    assert train_head.main(["probe", *_common(world), "--out", str(heads), "--size", "64", "--C", "0.1,1"]) == 0
    return heads


def test_train_then_eval_probe(world, probe_heads) -> None:
    w = {**world, "heads": probe_heads}
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
    assert train_head.main(["segmentation", *_common(w), "--out", str(w["heads"]), "--size", "64", "--epochs", "15",
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


def test_other_backbone_is_refused(world, probe_heads, tmp_path, capsys) -> None:
    w = world
    make_tiny_model(hidden_size=48).save_pretrained(tmp_path / "other")
    code = eval_cli.main(["probe", "--data", str(w["data"]), "--model", str(tmp_path / "other"),
                          "--heads", str(probe_heads), "--cache-dir", str(w["cache"]), "--no-progress",
                          "--report", str(tmp_path / "r.md")])
    assert code == 2 and "trained for backbone 'model'" in capsys.readouterr().err
