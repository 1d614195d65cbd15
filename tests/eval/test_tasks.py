"""One evaluation function per task, on a tiny world: the figures are checked against an oracle or a
hand-made case, not against the code's own arithmetic."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from explorer.eval import tasks
from tests.eval.tiny import save_tiny_model, write_world


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tasks")
    write_world(root / "world")
    save_tiny_model(root / "model")
    return {"root": root, "data": root / "world", "model": root / "model", "cache": root / "cache"}


def test_best_tau_prefers_corloc_then_iou_then_the_smaller_tau() -> None:
    sweep = {0.1: {"corloc": 0.5, "mean_iou": 0.9}, 0.2: {"corloc": 0.7, "mean_iou": 0.4},
             0.3: {"corloc": 0.7, "mean_iou": 0.6}, 0.4: {"corloc": 0.7, "mean_iou": 0.6}}
    assert tasks.best_tau(sweep) == 0.3


def test_image_size_is_height_width(tmp_path: Path) -> None:
    Image.new("RGB", (40, 24)).save(tmp_path / "a.png")  # PIL takes (W, H)
    assert tasks.image_size(tmp_path / "a.png") == (24, 40)


def test_discovery_sweep_finds_a_planted_object() -> None:
    """A 3x3 block of distinct features on an 8x8 grid; the image is twice the input size, so the
    TokenCut box must come back in original pixels: rows/cols 2..5 of 16 px patches, x2."""
    rng = np.random.default_rng(0)
    grid = np.tile(rng.normal(size=16), (8, 8, 1)) + 0.05 * rng.normal(size=(8, 8, 16))
    grid[2:5, 2:5] = rng.normal(size=16) + 0.05 * rng.normal(size=(3, 3, 16))
    feats = SimpleNamespace(patches=grid.astype(np.float32), patch_size=16, input_size=(128, 128),
                            image_size=(256, 256))
    gt = [np.array([[64.0, 64.0, 160.0, 160.0]])]
    sweep = tasks.discovery_sweep([feats], gt, taus=[0.2], solver="dense")
    assert sweep[0.2]["corloc"] == 1.0
    np.testing.assert_allclose(sweep[0.2]["pred_boxes"][0], [64, 64, 160, 160], atol=1e-6)


def test_probe_refuses_a_dataset_with_other_classes(world) -> None:
    from explorer.backbone import load_backbone
    from explorer.eval.datasets import ClassificationData, load_classification
    from explorer.heads.probe import train_probe

    bb = load_backbone(str(world["model"])).backbone
    data = load_classification(world["data"], "test")
    head = train_probe(np.random.default_rng(0).normal(size=(6, 32)).astype(np.float32), np.array([0, 1, 2] * 2),
                       ["a", "b", "c"])
    head.card = {"input_size": 32}
    assert isinstance(data, ClassificationData)
    with pytest.raises(ValueError, match="classes differ"):
        tasks.evaluate_probe(bb, head, data, cache_dir=world["cache"], progress=False)


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
