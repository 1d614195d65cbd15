"""Heads are data: safetensors + JSON card, refused by a backbone with another config."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from explorer.heads import io


def _bb(fp: str = "abc123", mid: str = "org/model-a") -> SimpleNamespace:
    return SimpleNamespace(model_id=mid, fingerprint=fp, num_layers=12)


@pytest.mark.parametrize(
    ("model_id", "slug"),
    [
        ("facebook/dinov3-vits16-pretrain-lvd1689m", "facebook--dinov3-vits16-pretrain-lvd1689m"),
        ("timm:vit_small_patch16_dinov3.lvd1689m", "timm--vit_small_patch16_dinov3.lvd1689m"),
        ("bundled/dinov3-explorer-tiny", "bundled--dinov3-explorer-tiny"),
        ("/home/me/models/My Model/", "my-model"),
    ],
)
def test_backbone_slug(model_id: str, slug: str) -> None:
    assert io.backbone_slug(model_id) == slug


def test_default_dir_is_under_pretrained_heads() -> None:
    d = io.default_heads_dir("org/model-a")
    assert d.parent.name == "pretrained_heads" and d.name == "org--model-a"


def test_round_trip_is_exact_and_card_complete(tmp_path) -> None:
    state = {"w": torch.randn(3, 5), "b": np.arange(3, dtype=np.float32), "n": torch.tensor([7], dtype=torch.int64)}
    card = io.make_card("probe", _bb(), ["a", "b", "c"], 224, {"C": 1.0}, {"val": {"top1": 0.5}})
    io.save_head(tmp_path, "probe", state, card)
    assert (tmp_path / "probe.safetensors").is_file()
    on_disk = json.loads((tmp_path / "probe.json").read_text())
    for key in ("backbone_id", "backbone_fingerprint", "class_names", "input_size", "recipe", "metrics", "created"):
        assert key in on_disk
    loaded, card2 = io.read_head(tmp_path, "probe", _bb())
    assert torch.equal(loaded["w"], state["w"])
    assert np.array_equal(loaded["b"].numpy(), state["b"])
    assert loaded["n"].dtype == torch.int64
    assert card2["class_names"] == ["a", "b", "c"] and card2["backbone_fingerprint"] == "abc123"


def test_mismatched_backbone_is_refused_with_a_clear_message(tmp_path) -> None:
    io.save_head(tmp_path, "seg", {"w": torch.zeros(2)}, io.make_card("segmentation", _bb(), ["bg"], 224))
    with pytest.raises(io.HeadMismatchError) as err:
        io.read_head(tmp_path, "seg", _bb(fp="zzz999", mid="org/model-b"))
    msg = str(err.value)
    assert "abc123" in msg and "zzz999" in msg and "org/model-a" in msg and "train-head segmentation" in msg


def test_card_without_fingerprint_cannot_be_saved(tmp_path) -> None:
    with pytest.raises(ValueError):
        io.save_head(tmp_path, "x", {"w": torch.zeros(1)}, {"backbone_id": "m"})


def test_update_card_metrics_keeps_weights(tmp_path) -> None:
    io.save_head(tmp_path, "probe", {"w": torch.ones(2)}, io.make_card("probe", _bb(), ["a"], 224))
    before = (tmp_path / "probe.safetensors").read_bytes()
    io.update_card_metrics(tmp_path, "probe", {"top1": 0.9}, "test")
    assert io.read_card(tmp_path, "probe")["metrics"]["test"] == {"top1": 0.9}
    assert (tmp_path / "probe.safetensors").read_bytes() == before
    assert [c["name"] for c in io.list_heads(tmp_path)] == ["probe"]


def test_train_command() -> None:
    assert io.train_command("probe", "org/model-a") == "python -m explorer train-head probe --data DIR --model org/model-a"
