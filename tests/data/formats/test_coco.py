"""COCO reader on a real-convention fixture; writer round trip; pycocotools mAP of the GT is 1."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from explorer.data.export import make_dataset
from explorer.data.formats import coco
from explorer.data.world import SceneGenerator

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "coco" / "instances_val2017.json"


def test_reads_real_coco_conventions(tmp_path: Path) -> None:
    (tmp_path / "annotations").mkdir()
    shutil.copy(FIX, tmp_path / "annotations" / FIX.name)
    images, anns, cats = coco.read_coco(tmp_path / "annotations" / FIX.name)
    assert images[0]["path"] == tmp_path / "val2017" / "000000000139.jpg"
    assert [c["id"] for c in cats] == [1, 3, 7]
    assert coco.category_index(cats) == {1: 0, 3: 1, 7: 2}
    assert coco.xywh_to_xyxy(anns[0]["bbox"]) == (2.0, 1.0, 6.0, 5.0)
    poly = coco.ann_to_mask(anns[0], 8, 10)
    assert poly[3, 4] == 1 and poly[7, 9] == 0 and poly[0].sum() == 0
    crowd = coco.ann_to_mask(anns[1], 8, 10)  # uncompressed RLE, column-major runs
    expected = np.zeros((8, 10), np.uint8)
    expected[1:4, 2:4] = 1
    np.testing.assert_array_equal(crowd, expected)
    full = coco.ann_to_mask(anns[2], 8, 10)
    assert full.sum() >= 70  # whole-image polygon


def test_compressed_rle_round_trip() -> None:
    m = np.zeros((9, 7), bool)
    m[2:5, 1:6] = True
    m[7, 3] = True
    rle = coco.encode_mask(m)
    assert isinstance(rle["counts"], str)
    json.dumps(rle)
    np.testing.assert_array_equal(coco.ann_to_mask({"segmentation": rle}, 9, 7), m)


def _evaluate(gt_path: Path, iou_type: str) -> float:
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(gt_path))
        dets = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"],
                 "segmentation": a["segmentation"], "score": 1.0} for a in gt.dataset["annotations"]]
        dt = gt.loadRes(dets)
        ev = COCOeval(gt, dt, iou_type)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return float(ev.stats[0])


def test_written_coco_round_trips_and_scores_perfect_map(tmp_path: Path) -> None:
    make_dataset(tmp_path, n=20, seed=5, formats=["coco"], size=128, progress=False)
    path = tmp_path / "coco" / "annotations" / "instances_train.json"
    images, anns, cats = coco.read_coco(path)
    assert len(images) == 16 and [c["id"] for c in cats] == list(range(1, 65))
    gen = SceneGenerator(seed=5, size=128)
    for im in images[:5]:
        sc = gen.scene(im["id"] - 1)
        mine = [a for a in anns if a["image_id"] == im["id"]]
        assert [coco.xywh_to_xyxy(a["bbox"]) for a in mine] == [i.box_xyxy for i in sc.instances]
        assert [a["category_id"] - 1 for a in mine] == [i.class_id for i in sc.instances]
        for j, a in enumerate(mine):
            np.testing.assert_array_equal(coco.ann_to_mask(a, 128, 128), sc.inst_map == j + 1)
            assert a["area"] == sc.instances[j].area
        assert im["path"].exists()
    assert len({a["id"] for a in anns}) == len(anns)
    assert _evaluate(path, "bbox") == 1.0
    assert _evaluate(path, "segm") == 1.0
