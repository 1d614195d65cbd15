"""The registry: one load_head for every kind, the shipped lookup's plain messages, the session's heads."""

from __future__ import annotations

import numpy as np

from explorer.heads import io
from explorer.heads.probe import save_probe, train_probe
from explorer.heads.registry import HeadRegistry, load_head


class BB:
    def __init__(self, fp: str = "fp1", mid: str = "org/m") -> None:
        self.fingerprint, self.model_id = fp, mid

    def pixel_spec(self, size: int) -> dict:
        return {"recipe": "r", "size": size}


def test_shipped_lookup_loads_once_and_explains_absence_and_mismatch(tmp_path) -> None:
    rng = np.random.default_rng(0)
    probe = train_probe(rng.normal(size=(20, 4)), np.arange(20) % 2, ["a", "b"], max_iter=100)
    probe.card = io.make_card("probe", BB(), ["a", "b"], 224, layer=3)
    save_probe(probe, io.default_heads_dir("org/m", tmp_path))
    reg = HeadRegistry(tmp_path)
    found = reg.shipped(BB(), "classification")
    assert found.head is not None and found.head.kind == "probe" and found.head.layer == 3
    assert found.head.size == 224 and found.head.pixel_spec == {"recipe": "r", "size": 224}
    assert reg.shipped(BB(), "classification").head is found.head  # loaded once
    other = reg.shipped(BB(fp="fp2"), "classification")
    assert other.head is None and "another backbone" in other.message and "fp2" in other.message
    assert str(tmp_path) not in other.message  # never reveals the server's folders
    none = reg.shipped(BB(mid="org/none"), "segmentation")
    assert none.head is None and io.train_command("segmentation", "org/none") in none.message
    assert str(tmp_path) not in none.message
    direct = load_head(io.default_heads_dir("org/m", tmp_path), "probe", BB())
    np.testing.assert_array_equal(direct.coef, found.head.coef)
    assert set(reg.choices(BB(), "classification")) == {"shipped"}
    assert reg.choices(BB(), "segmentation") == {}


def test_every_head_kind_speaks_the_one_interface() -> None:
    from explorer.heads.base import Head
    from explorer.heads.detection import build_model, detection_from_state
    from explorer.heads.segmentation import new_head
    from explorer.heads.taught import TaughtSegmentationHead

    probe = train_probe(np.random.default_rng(0).normal(size=(10, 4)), np.arange(10) % 2, ["a", "b"], max_iter=50)
    seg = new_head("linear", 4, ["background", "x"])
    model = build_model("dense", {"in_dim": 4, "num_classes": 2, "patch_size": 16, "hidden": 8})
    card = io.make_card("detection", BB(), ["x", "y"], (64, 64), layer=2, head_kind="dense",
                        head_config=model.cfg.to_dict())
    det = detection_from_state(model.state_dict(), card)
    taught = TaughtSegmentationHead(np.zeros((2, 4), np.float32), np.zeros(2, np.float32), ["o", "b"],
                                    {"kind": "taught-segmentation", "layer": 1, "pixel_spec": {"size": 448}})
    for head, kind in ((probe, "probe"), (seg, "segmentation"), (det, "detection"), (taught, "taught-segmentation")):
        assert isinstance(head, Head) and head.kind == kind
    assert (det.layer, det.size, det.pixel_spec["size"]) == (2, 64, 64)
    assert (taught.layer, taught.size) == (1, 448)
    assert seg.size == 224  # a card without a pixel spec: the historical 224-px default
