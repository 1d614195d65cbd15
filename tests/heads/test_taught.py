"""Taught heads on features with known structure, hand-checked leave-one-out, file round trip and every
kind of bad input (the state must survive each refusal)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from explorer.backbone import Features
from explorer.heads import io
from explorer.heads.registry import head_from_state, load_head_bytes
from explorer.heads.taught import (
    LOO_MAX,
    MAX_CLASSES,
    ClassificationTeacher,
    SegmentationTeacher,
    TeachError,
    boxes_from_segmentation,
    brush_patches,
    foreground_mask,
    mask_patches,
    parse_class_list,
)

D = 16


def FakeFeatures(patches: torch.Tensor, cls: torch.Tensor, layer: int = 2,  # noqa: N802 - reads like the type
                 input_size: tuple[int, int] = (128, 128), image_size: tuple[int, int] = (128, 128)) -> Features:
    """Real `Features` of a planted grid (what the taught heads read), without a backbone."""
    return Features.from_grid(patches, cls_token=cls, layer=layer, input_size=input_size, image_size=image_size)


@dataclass
class FakeBackbone:
    model_id: str = "tiny/taught"
    fingerprint: str = "fp-taught"

    def pixel_spec(self, size: int) -> dict:
        return {"recipe": "test", "size": int(size)}


def planted(seed: int, box: tuple[int, int, int, int] = (2, 3, 5, 7), h: int = 8, w: int = 8) -> tuple:
    """An (h, w) grid whose patches are noisy copies of two directions: 'object' inside ``box`` (r0, c0, r1,
    c1, end-exclusive), 'background' elsewhere. Returns (features, true object mask)."""
    rng = np.random.default_rng(seed)
    obj, bg = np.zeros(D), np.zeros(D)
    obj[0], bg[1] = 1.0, 1.0
    mask = np.zeros((h, w), bool)
    mask[box[0]:box[2], box[1]:box[3]] = True
    x = np.where(mask[..., None], obj, bg) + 0.3 * rng.normal(size=(h, w, D))
    return FakeFeatures(torch.tensor(x, dtype=torch.float32), torch.tensor(rng.normal(size=D), dtype=torch.float32),
                        input_size=(h * 16, w * 16), image_size=(h * 16, w * 16)), mask


def idx(mask: np.ndarray) -> np.ndarray:
    return np.flatnonzero(mask.ravel())


def test_two_clusters_get_their_labels_and_a_planted_object_its_mask() -> None:
    teacher = SegmentationTeacher()
    f, mask = planted(0)
    teacher.add_mark("a", f, idx(mask)[:3], "object")
    teacher.add_mark("a", f, idx(~mask)[:5], "background")
    head = teacher.fit(FakeBackbone())
    # a NEW image with the object elsewhere: the head finds exactly its patches
    g, gmask = planted(1, box=(0, 0, 3, 4))
    proba = head.patch_proba(g)
    assert ((proba.argmax(2) == 0) == gmask).all()
    full = head.predict(g)  # upsampled to image_size (H, W) = (128, 128): each patch a 16x16 block
    assert full.shape == (128, 128)
    assert (full[8::16, 8::16] == np.where(gmask, 0, 1)).all()
    assert head.card["taught"] == "taught from 1 images / 2 marks" and head.card["layer"] == 2
    assert head.card["pixel_spec"] == {"recipe": "test", "size": 128}
    assert (foreground_mask(head, g) == gmask).all()


def test_later_marks_override_and_counts_follow() -> None:
    teacher = SegmentationTeacher()
    f, _ = planted(0)
    teacher.add_mark("a", f, [0, 1, 2], "object")
    teacher.add_mark("a", f, [2, 3], "background")
    x, y = teacher.training_set()
    assert len(y) == 4 and teacher.counts() == {"object": 2, "background": 2}
    teacher.add_mark("b", f, [2], "object")  # same patch index, other image: a separate sample
    assert teacher.counts() == {"object": 3, "background": 2}
    assert teacher.undo() is not None and teacher.counts() == {"object": 2, "background": 2}


def test_bad_teaching_input_is_refused_and_loses_nothing() -> None:
    teacher = SegmentationTeacher()
    f, mask = planted(0)
    with pytest.raises(TeachError, match="No marks"):
        teacher.fit(FakeBackbone())
    teacher.add_mark("a", f, idx(mask)[:2], "object")
    with pytest.raises(TeachError, match="at least two classes"):  # a single class
        teacher.fit(FakeBackbone())
    with pytest.raises(TeachError, match="outside"):  # marks outside the image
        teacher.add_mark("a", f, [-1, 64, 999], "object")
    with pytest.raises(TeachError, match="Pick one of the classes"):
        teacher.add_mark("a", f, [0], "dog")
    with pytest.raises(TeachError, match="still has marks"):  # delete a class in use
        teacher.set_classes(["background"])
    other = FakeFeatures(f.patches, f.cls, layer=1)
    with pytest.raises(TeachError, match="layer 2"):
        teacher.add_mark("b", other, [0], "background")
    stranger = dataclasses.replace(FakeFeatures(f.patches, f.cls), model_id="another/backbone")
    with pytest.raises(TeachError, match="another/backbone"):
        teacher.add_mark("c", stranger, [0], "background")
    assert len(teacher.marks) == 1 and teacher.classes == ["object", "background"]
    # rename in place carries the marks; then the head uses the new name
    assert "renamed 'object' to 'cup'" in teacher.set_classes(["cup", "background"])
    teacher.add_mark("a", f, idx(~mask)[:2], "background")
    assert teacher.fit(FakeBackbone()).class_names == ["cup", "background"]
    with pytest.raises(TeachError, match=f"At most {MAX_CLASSES}"):
        teacher.set_classes([f"c{i}" for i in range(MAX_CLASSES + 1)])
    assert teacher.classes == ["cup", "background"]


def test_fifty_classes_fit_and_predict() -> None:
    """50 classes, each a 3x3 block of a (15, 30) grid; one mark per class (its centre patch)."""
    rng = np.random.default_rng(0)
    block = np.arange(50).reshape(5, 10).repeat(3, axis=0).repeat(3, axis=1)  # (15, 30) class ids
    grid = np.eye(64)[block] * 3 + 0.1 * rng.normal(size=(15, 30, 64))
    f = FakeFeatures(torch.tensor(grid, dtype=torch.float32), torch.zeros(64), input_size=(240, 480),
                     image_size=(240, 480))
    teacher = SegmentationTeacher(classes=[f"class {i}" for i in range(50)])
    for k in range(50):
        r, c = divmod(k, 10)
        teacher.add_mark("a", f, [(3 * r + 1) * 30 + 3 * c + 1], f"class {k}")
    labels = teacher.fit(FakeBackbone()).patch_proba(f).argmax(2)
    assert (labels[1::3, 1::3] == np.arange(50).reshape(5, 10)).all()  # every block centre: its class


def test_brush_and_mask_patches() -> None:
    assert brush_patches((4, 5), 0, 0, 1).tolist() == [0, 1, 5, 6]
    assert brush_patches((4, 5), 2, 2, 0).tolist() == [12]
    m = np.zeros((40, 50), bool)
    m[:10, :20] = True  # covers patches (0, 0) and (0, 1) fully of a (4, 5) grid of 10x10 pixels
    assert mask_patches(m, (4, 5)).tolist() == [0, 1]
    assert parse_class_list(" a, b,\n a , ,c") == ["a", "b", "c"]


def test_components_become_boxes_with_mean_probability() -> None:
    labels = np.ones((6, 8), np.uint8)  # class 1 = background
    labels[1:3, 1:4] = 0
    labels[4:6, 6:8] = 0
    proba = np.zeros((6, 8, 2), np.float32)
    proba[..., 0] = 0.2
    proba[1:3, 1:4, 0] = 0.9
    proba[4:6, 6:8, 0] = 0.6
    boxes = boxes_from_segmentation(labels, proba, ["cup", "background"], scale_xy=(2.0, 10.0))
    assert [b["box_xyxy"] for b in boxes] == [[2.0, 10.0, 8.0, 30.0], [12.0, 40.0, 16.0, 60.0]]
    assert [b["score"] for b in boxes] == pytest.approx([0.9, 0.6]) and {b["label"] for b in boxes} == {"cup"}
    assert boxes_from_segmentation(labels, proba, ["cup", "background"], min_area=5)[0]["score"] == pytest.approx(0.9)


def cls_features(v: list[float]) -> Features:
    return FakeFeatures(torch.zeros(2, 2, len(v)), torch.tensor(v, dtype=torch.float32))


def test_classifier_nearest_mean_then_leave_one_out_by_hand() -> None:
    t = ClassificationTeacher()
    t.add("i1", cls_features([1, 0, 0]), "cat")
    t.add("i2", cls_features([0, 1, 0]), "dog")
    assert t.leave_one_out() is None  # no class has two examples yet
    head = t.fit(FakeBackbone())
    assert head.card["recipe"]["method"].startswith("nearest class mean")
    p = head.predict(cls_features([0.9, 0.2, 0]))
    assert head.class_names[int(np.argmax(p))] == "cat" and p.sum() == pytest.approx(1.0)
    # By hand: i3 = (0.6, 0.8, 0) is closer to dog's (0, 1, 0) (cos 0.8) than cat's (cos 0.6).
    # Held out i1: cat has i3 left, i1 . i3 = 0.6 > i1 . dog = 0 -> right.
    # Held out i3: cat has i1 left, i3 . i1 = 0.6 < i3 . dog = 0.8 -> wrong.  LOO = 1/2.
    t.add("i3", cls_features([0.6, 0.8, 0]), "cat")
    assert t.leave_one_out() == (0.5, 2)
    assert "Moved" in t.add("i3", cls_features([0.6, 0.8, 0]), "dog")  # relabel, not a duplicate
    assert "already" in t.add("i3", cls_features([0.6, 0.8, 0]), "dog")
    assert len(t.examples) == 3
    near = t.nearest(cls_features([0, 1, 0]), 2)
    assert [e.image_key for e, _ in near] == ["i2", "i3"]


def test_classifier_hundreds_of_examples_and_bad_input() -> None:
    rng = np.random.default_rng(0)
    t = ClassificationTeacher()
    with pytest.raises(TeachError, match="No examples"):
        t.fit(FakeBackbone())
    t.add("only", cls_features([1, 0, 0]), "a")
    with pytest.raises(TeachError, match="two classes"):
        t.fit(FakeBackbone())
    with pytest.raises(TeachError, match="Type the class"):
        t.add("x", cls_features([1, 0, 0]), "  ")
    for i in range(300):
        k = i % 3
        t.add(f"e{i}", cls_features(list(np.eye(3)[k] + 0.2 * rng.normal(size=3))), "abc"[k])
    head = t.fit(FakeBackbone())
    assert head.card["recipe"]["examples"] == 301
    acc, n = t.leave_one_out()
    assert n == LOO_MAX and acc > 0.9
    with pytest.raises(TeachError, match="still has marks or examples"):
        t.set_classes(["a", "b"])
    assert len(t.examples) == 301


def test_taught_heads_round_trip_as_one_file_and_refuse_strangers() -> None:
    teacher = SegmentationTeacher()
    f, mask = planted(0)
    teacher.add_mark("a", f, idx(mask)[:3], "object")
    teacher.add_mark("a", f, idx(~mask)[:3], "background")
    head = teacher.fit(FakeBackbone())
    data = io.head_bytes(head.state_dict(), head.card)
    back = load_head_bytes(data, FakeBackbone(), "segmentation")
    assert back.kind == "taught-segmentation" and back.class_names == head.class_names
    np.testing.assert_array_equal(back.patch_proba(f), head.patch_proba(f))
    assert back.layer == 2 and back.size == 128
    with pytest.raises(io.HeadMismatchError):
        load_head_bytes(data, FakeBackbone(fingerprint="another"))
    with pytest.raises(io.HeadFileError, match="not a classification head"):
        load_head_bytes(data, FakeBackbone(), "classification")
    with pytest.raises(io.HeadFileError, match="truncated"):
        load_head_bytes(data[: len(data) // 2], FakeBackbone())
    with pytest.raises(io.HeadFileError, match="truncated"):
        load_head_bytes(data[:40], FakeBackbone())
    for junk in (b"", b"\x89PNG\r\n\x1a\n" + bytes(100), b"hello", b"\x05\x00\x00\x00\x00\x00\x00\x00[1,2]"):
        with pytest.raises(io.HeadFileError):
            load_head_bytes(junk, FakeBackbone())
    from safetensors.torch import save

    with pytest.raises(io.HeadFileError, match="no head card"):  # safetensors, but not a head
        load_head_bytes(save({"w": torch.zeros(2)}, metadata={"card": "{}"}), FakeBackbone())

    t = ClassificationTeacher()
    t.add("i1", cls_features([1, 0, 0]), "cat")
    t.add("i2", cls_features([0, 1, 0]), "dog")
    t.add("i3", cls_features([0.9, 0.1, 0]), "cat")
    cls_head = t.fit(FakeBackbone())
    from explorer.heads.probe import probe_state

    state, card = probe_state(cls_head)
    again = load_head_bytes(io.head_bytes(state, card), FakeBackbone(), "classification")
    q = cls_features([0.5, 0.5, 0.1])
    np.testing.assert_allclose(again.predict(q), cls_head.predict(q), rtol=1e-6)
    assert head_from_state({k: torch.as_tensor(v) for k, v in state.items()}, card).kind == "taught-classification"
