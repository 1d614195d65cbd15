"""`python -m explorer train-head`: each trainer writes a head whose card says what it was trained on,
and the validation figures in the card are what the saved head scores when reloaded."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from explorer.cli import train_head
from explorer.cli.common import open_backbone
from tests.cli.conftest import common_args


def test_probe_card_and_c_search(world, tmp_path: Path) -> None:
    from explorer.backbone import load_backbone
    from explorer.eval.datasets import load_classification
    from explorer.heads.features_cache import extract_features
    from explorer.heads.probe import load_probe, predict

    out = tmp_path / "heads"
    code = train_head.main(["probe", *common_args(world), "--out", str(out), "--size", "64", "--C", "0.001,1"])
    assert code == 0
    card = json.loads((out / "probe.json").read_text())
    assert card["backbone_id"] == "model" and card["input_size"] == 64 and card["layer"] == 2
    search = card["recipe"]["C_search"]
    assert set(search) == {"0.001", "1.0"}
    # the chosen C is the val-best one, and the card's val top-1 is what the reloaded head scores
    assert card["recipe"]["C"] == float(max(search, key=lambda c: (search[c], -float(c))))
    bb = load_backbone(str(world["model"])).backbone
    head = load_probe(out, bb)
    val = load_classification(world["data"], "val")
    feats = extract_features(bb, val.paths, val.root, 64, patches=False, cache_dir=world["cache"], progress=False)
    top1 = float((predict(head, feats.cls.numpy()) == val.labels).mean())
    assert card["metrics"]["val"]["top1"] == pytest.approx(top1) == pytest.approx(search[str(card["recipe"]["C"])])


def test_segmentation_card_matches_reloaded_head(world, tmp_path: Path) -> None:
    from explorer.backbone import load_backbone
    from explorer.eval.datasets import load_segmentation
    from explorer.eval.tasks import evaluate_segmentation
    from explorer.heads.segmentation import load_segmentation as load_head

    out = tmp_path / "heads"
    assert train_head.main(["segmentation", *common_args(world), "--out", str(out), "--size", "64", "--epochs", "4",
                            "--label-scale", "4", "--hidden", "16", "--arch", "conv"]) == 0
    card = json.loads((out / "segmentation.json").read_text())
    assert card["class_names"] == ["background", "red", "green", "blue"] and card["input_size"] == 64
    bb = load_backbone(str(world["model"])).backbone
    head = load_head(out, bb)
    m = evaluate_segmentation(bb, head, load_segmentation(world["data"], "val"), 64, world["cache"], progress=False)
    assert card["metrics"]["val"]["miou"] == pytest.approx(m["miou"])


def test_detection_card_records_what_eval_measures(world, tmp_path: Path) -> None:
    """The val mAP in the card is the figure `python -m explorer eval detection` reports on that split."""
    from explorer.cli import eval as eval_cli

    out = tmp_path / "heads"
    assert train_head.main(["detection", *common_args(world), "--out", str(out), "--size", "64", "--epochs", "2",
                            "--format", "voc"]) == 0
    card = json.loads((out / "detection.json").read_text())
    val = card["metrics"]["val"]
    assert 0.0 <= val["map"] <= val["ap50"] <= 1.0 and val["n_images"] == 9
    assert card["class_names"] == ["red", "green", "blue"]
    res = tmp_path / "det.json"
    assert eval_cli.main(["detection", *common_args(world), "--heads", str(out), "--split", "val", "--format", "voc",
                          "--json", str(res), "--report", str(tmp_path / "det.md")]) == 0
    measured = json.loads(res.read_text())
    assert (measured["map"], measured["ap50"]) == pytest.approx((val["map"], val["ap50"]))


def test_segmentation_refuses_a_layout_without_masks(world, capsys) -> None:
    with pytest.raises(SystemExit, match="VOC layout"):
        train_head.main(["segmentation", *common_args(world), "--format", "imagefolder"])


def test_dispatch_usage_and_unknown_task(capsys) -> None:
    assert train_head.main(["--help"]) == 0
    assert train_head.main(["nonsense"]) == 2
    assert "probe,segmentation,detection" in capsys.readouterr().out


def test_an_unavailable_backbone_is_an_error_not_a_fallback(tmp_path: Path) -> None:
    """A head trained for the bundled model when another was asked for would be silently wrong."""
    with pytest.raises(SystemExit, match="unavailable|could not load"):
        open_backbone(str(tmp_path / "no-such-model"))


def test_probe_labels_are_the_folder_classes(world, tmp_path: Path) -> None:
    out = tmp_path / "heads"
    assert train_head.main(["probe", *common_args(world), "--out", str(out), "--size", "64", "--val-split", ""]) == 0
    card = json.loads((out / "probe.json").read_text())
    assert set(card["class_names"]) == {"red", "green", "blue"}
    assert card["metrics"] == {} and np.isfinite(card["recipe"]["train_top1"])
