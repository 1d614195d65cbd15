"""The dataset glue reads the offline world's three layouts consistently (same scenes, same labels)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from explorer.eval.datasets import (
    guess_format,
    load_boxes,
    load_classification,
    load_segmentation,
    resolve_root,
)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from explorer.data.export import make_dataset

    out = tmp_path_factory.mktemp("world")
    make_dataset(out, n=20, seed=3, size=64, progress=False)
    return out


def test_coco_and_voc_give_the_same_boxes(world) -> None:
    coco, voc = load_boxes(world, "train", "coco"), load_boxes(world, "train", "voc")
    assert coco.class_names == voc.class_names
    assert [p.stem for p in coco.image_paths] == [p.stem for p in voc.image_paths]
    assert all(p.is_file() for p in coco.image_paths)
    for bc, bv, lc, lv in zip(coco.boxes, voc.boxes, coco.labels, voc.labels, strict=True):
        oc, ov = np.lexsort(bc.T[::-1]), np.lexsort(bv.T[::-1])
        np.testing.assert_allclose(bc[oc], bv[ov], atol=1.0)  # VOC XML stores integer pixels
        assert (lc[oc] == lv[ov]).all()


def test_imagefolder_labels_match_the_split_record(world) -> None:
    rec = json.loads((world / "splits.json").read_text())
    data = load_classification(world, "train", "imagefolder")
    by_id = dict(zip(rec["train"], rec["labels"]["train"], strict=True))
    assert len(data.paths) == len(by_id)
    assert all(by_id[p.stem] == int(lab) for p, lab in zip(data.paths, data.labels, strict=True))
    assert data.class_names == rec["class_names"]


def test_segmentation_classes_have_background_first(world) -> None:
    seg = load_segmentation(world, "val")
    assert seg.class_names[0] == "background" and len(seg.class_names) == 1 + len(load_boxes(world, "val").class_names)
    assert all(m.is_file() for m in seg.mask_paths)


def test_format_resolution(world, tmp_path) -> None:
    assert resolve_root(world, "voc") == world / "voc"
    assert resolve_root(world / "voc", "voc") == world / "voc"
    assert guess_format(world, "probe") == "imagefolder" and guess_format(world, "detection") == "coco"
    with pytest.raises(FileNotFoundError):
        resolve_root(tmp_path, "coco")


def test_a_split_with_a_class_train_lacks_is_a_clear_error(tmp_path) -> None:
    from PIL import Image

    from explorer.eval.datasets import load_classification

    for split, cls in (("train", "cat"), ("test", "cat"), ("test", "dog")):
        (tmp_path / split / cls).mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 8)).save(tmp_path / split / cls / "a.png")
    assert load_classification(tmp_path, "train").class_names == ["cat"]
    with pytest.raises(ValueError, match="classes that train has not: dog"):
        load_classification(tmp_path, "test")
