"""Detection heads end to end on tiny scenes: they learn, overfit, and survive save/load."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import DINOv3ViTConfig, DINOv3ViTModel

from explorer.backbone import Backbone
from explorer.eval.metrics import coco_detection_map
from explorer.heads.detection import (
    _flip_targets,
    evaluate,
    extract_grids,
    load_detection,
    predict,
    save,
    scale_boxes,
    train_detection,
)
from explorer.heads.io import HeadMismatchError

SIZE = 96
COLOURS = np.array([[230, 40, 40], [40, 200, 60], [50, 80, 230], [240, 220, 40]])


def square_scenes(n: int, seed: int = 0) -> tuple[list[np.ndarray], list[dict]]:
    """Coloured squares (class = colour) on grey noise: learnable from random patch embeddings."""
    rng = np.random.default_rng(seed)
    images, targets = [], []
    for _ in range(n):
        img = rng.integers(90, 140, (SIZE, SIZE, 3)).astype(np.uint8)
        boxes, labels = [], []
        for _ in range(int(rng.integers(1, 4))):
            s = int(rng.integers(20, 49))
            x0, y0 = int(rng.integers(0, SIZE - s)), int(rng.integers(0, SIZE - s))
            c = int(rng.integers(len(COLOURS)))
            img[y0:y0 + s, x0:x0 + s] = COLOURS[c]
            boxes.append([x0, y0, x0 + s, y0 + s])
            labels.append(c)
        images.append(img)
        targets.append({"boxes": np.array(boxes, np.float32), "labels": np.array(labels, np.int64)})
    return images, targets


def tiny_backbone(seed: int = 0, hidden: int = 32) -> Backbone:
    torch.manual_seed(seed)
    cfg = DINOv3ViTConfig(hidden_size=hidden, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                          num_register_tokens=4, layerscale_value=1e-5, patch_size=16)
    return Backbone.from_model(DINOv3ViTModel(cfg), f"tiny-random-{hidden}", device=torch.device("cpu"))


@pytest.fixture(scope="module")
def scenes() -> tuple[Backbone, torch.Tensor, list[dict]]:
    bb = tiny_backbone()
    images, targets = square_scenes(8)
    return bb, extract_grids(bb, images, size=SIZE), targets


HEAD_ARGS = {
    "dense": {"epochs": 100, "lr": 1e-3, "config": {"hidden": 32, "num_convs": 1}},
    "detr": {"epochs": 200, "lr": 1e-3,
             "config": {"hidden": 64, "ffn": 128, "enc_layers": 1, "dec_layers": 2, "num_queries": 6, "heads": 4}},
}


@pytest.fixture(scope="module")
def trained(scenes) -> dict:
    _, feats, targets = scenes
    return {kind: train_detection(feats, targets, 4, kind=kind, input_size=(SIZE, SIZE), batch_size=8,
                                  progress=False, seed=0, **args) for kind, args in HEAD_ARGS.items()}


@pytest.mark.parametrize("kind", ["dense", "detr"])
def test_head_overfits_training_scenes(scenes, trained, kind: str) -> None:
    _, feats, targets = scenes
    head = trained[kind]
    hist = head.recipe["loss_history"]
    assert hist[-1] < 0.3 * hist[0], hist
    m = evaluate(head, feats, targets, (SIZE, SIZE), metric=coco_detection_map)
    assert m["map"] > 0.85 and m["ap50"] > 0.95, m


def test_untrained_head_scores_low(scenes) -> None:
    """The overfit bar above is meaningful: one epoch at a tiny lr is far below it."""
    _, feats, targets = scenes
    head = train_detection(feats, targets, 4, kind="dense", input_size=(SIZE, SIZE), epochs=1, lr=1e-6,
                           progress=False, config={"hidden": 32, "num_convs": 1})
    assert evaluate(head, feats, targets, (SIZE, SIZE), metric=coco_detection_map)["map"] < 0.3


@pytest.mark.parametrize("kind", ["dense", "detr"])
def test_predict_contract(scenes, trained, kind: str) -> None:
    _, feats, _ = scenes
    out = predict(trained[kind], feats[:3], (SIZE, SIZE))
    assert len(out) == 3
    for d in out:
        assert d["boxes_xyxy"].dtype == np.float32 and d["boxes_xyxy"].shape[1] == 4
        assert d["scores"].shape == d["labels"].shape == (len(d["boxes_xyxy"]),)
        assert (d["boxes_xyxy"] >= 0).all() and (d["boxes_xyxy"] <= SIZE).all()
        assert np.all(np.diff(d["scores"]) <= 1e-6) or kind == "dense"
    single = predict(trained[kind], feats[0], (SIZE, SIZE))
    np.testing.assert_allclose(single[0]["boxes_xyxy"], out[0]["boxes_xyxy"], atol=1e-4)


@pytest.mark.parametrize("kind", ["dense", "detr"])
def test_save_load_round_trip_and_refusal(scenes, trained, kind: str, tmp_path: Path) -> None:
    bb, feats, targets = scenes
    head = trained[kind]
    save(head, tmp_path, bb, metrics={"val": {"map": 0.5}})
    back = load_detection(tmp_path, bb)
    assert back.arch == kind and back.kind == "detection" and back.class_names == head.class_names and back.input_size == (SIZE, SIZE)
    a, b = predict(head, feats, (SIZE, SIZE)), predict(back, feats, (SIZE, SIZE))
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x["boxes_xyxy"], y["boxes_xyxy"])
        np.testing.assert_array_equal(x["scores"], y["scores"])
        np.testing.assert_array_equal(x["labels"], y["labels"])
    assert back.metrics["val"]["map"] == 0.5
    with pytest.raises(HeadMismatchError):
        load_detection(tmp_path, tiny_backbone(hidden=48))


def test_evaluate_agrees_with_metrics_helper(scenes, trained) -> None:
    _, feats, targets = scenes
    head = trained["dense"]
    preds = predict(head, feats, (SIZE, SIZE), score_threshold=0.001)
    ref = coco_detection_map([t["boxes"] for t in targets], [t["labels"] for t in targets], preds, num_classes=4)
    assert evaluate(head, feats, targets, (SIZE, SIZE), metric=coco_detection_map)["map"] == pytest.approx(ref["map"])


def test_flip_and_scale_helpers() -> None:
    t = {"boxes": torch.tensor([[10.0, 5.0, 30.0, 25.0]]), "labels": torch.tensor([2])}
    f = _flip_targets(t, 96)
    assert f["boxes"].tolist() == [[66.0, 5.0, 86.0, 25.0]] and f["labels"].tolist() == [2]
    s = scale_boxes(np.array([[10, 20, 30, 40]]), (200, 100), 50)  # (h, w) -> 50 x 50
    np.testing.assert_allclose(s, [[5.0, 5.0, 15.0, 10.0]])


def test_train_rejects_mismatched_inputs(scenes) -> None:
    _, feats, targets = scenes
    with pytest.raises(ValueError):
        train_detection(feats, targets[:-1], 4, progress=False)
    with pytest.raises(ValueError):
        train_detection(feats, targets, 4, kind="yolo", progress=False)


def test_cli_trains_on_coco_world_and_writes_a_loadable_head(tmp_path: Path, capsys) -> None:
    from explorer.backbone import load_source
    from explorer.cli.train_head import main as heads_main
    from explorer.data.export import make_dataset

    world = tmp_path / "world"
    make_dataset(world, n=12, seed=3, formats=("coco",), size=64, progress=False)
    torch.manual_seed(0)
    folder = tmp_path / "tiny-model"
    DINOv3ViTModel(DINOv3ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                                   num_register_tokens=4, layerscale_value=1e-5, patch_size=16)).save_pretrained(folder)
    out = tmp_path / "heads"
    rc = heads_main(["detection", "--data", str(world), "--format", "coco", "--model", str(folder), "--out", str(out),
                     "--size", "64", "--epochs", "2", "--no-progress", "--cache-dir", str(tmp_path / "cache"),
                     "--config", '{"hidden": 16, "num_convs": 1}'])
    assert rc == 0
    summary = __import__("json").loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert 0.0 <= summary["val_map"] <= 1.0 and summary["kind"] == "dense"
    backbone = load_source(str(folder))
    head = load_detection(out, backbone)
    assert head.input_size == (64, 64) and head.layer == backbone.num_layers and len(head.class_names) >= 60
    assert head.recipe["format"] == "coco" and head.recipe["epochs"] == 2
    grids = torch.randn(2, 4, 4, 32)
    assert len(predict(head, grids, (64, 64))) == 2
