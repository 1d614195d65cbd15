"""Sources: every family loads from its real on-disk format; bad input gets one line naming what to do;
the memory check runs before any download. No network: hub files come from a fake local cache laid out
as huggingface_hub's (tests/conftest.py `put_in_hub_cache`); the HTTP cases are in test_hub.py.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import huggingface_hub.constants
import pytest
import torch
from PIL import Image

from explorer.backbone import SAT_MEAN, load_backbone, load_source, memory, sources
from explorer.backbone.sources import SourceUnavailable
from tests.conftest import TINY_FAMILIES, make_tiny_model, put_in_hub_cache


def one_line(error: pytest.ExceptionInfo) -> str:
    text = str(error.value)
    assert "\n" not in text and "Traceback" not in text
    return text


@pytest.fixture
def hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty huggingface_hub cache (read at call time from `constants.HF_HUB_CACHE`)."""
    cache = tmp_path / "hub-cache"
    cache.mkdir()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    return cache


@pytest.mark.parametrize("family", sorted(TINY_FAMILIES))
def test_every_family_loads_from_its_saved_folder(tiny_dir, family: str) -> None:
    backbone = load_source(str(tiny_dir(family)))
    expected = family.removeprefix("timm-").removesuffix("-gated").removesuffix("-qkvb").removesuffix("-sat")
    assert backbone.family == expected.replace("dinov2-registers", "dinov2")
    assert backbone.library == ("timm" if family.startswith("timm-") else "transformers")


def test_hub_id_loads_from_the_local_cache_with_sat_statistics(tiny_dir, hub_cache: Path) -> None:
    folder = tiny_dir("dinov3-vit")
    repo = "facebook/dinov3-vitl16-pretrain-sat493m"
    put_in_hub_cache(hub_cache, repo, {p.name: p for p in folder.iterdir()})
    backbone = load_source(repo)
    assert backbone.model_id == repo and backbone.mean == pytest.approx(SAT_MEAN)


def test_timm_name_loads_its_safetensors_from_the_hub_cache(hub_cache: Path, tmp_path: Path) -> None:
    """`timm:<name>` reads timm/<name>/model.safetensors from the cache; timm builds the named architecture."""
    import timm
    from safetensors.torch import save_file

    name = "vit_tiny_patch16_dinov3_qkvb.eupe_lvd1689m"  # the smallest DINOv3 architecture timm names
    torch.manual_seed(0)
    reference = timm.create_model(name, pretrained=False, num_classes=0).eval()
    save_file(reference.state_dict(), tmp_path / "model.safetensors")
    put_in_hub_cache(hub_cache, f"timm/{name}", {"model.safetensors": tmp_path / "model.safetensors"})
    backbone = load_source(f"timm:{name}")
    assert backbone.model_id == f"timm:{name}" and backbone.family == "dinov3-vit"
    pixels = torch.randn(1, 3, 48, 80)
    with torch.no_grad():
        expected = reference.forward_features(pixels)[0, 0]
    torch.testing.assert_close(backbone.forward_batch(pixels)[0][0], expected, atol=1e-5, rtol=1e-5)


def test_auto_uses_the_cached_real_model_first(hub_cache: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import timm
    from safetensors.torch import save_file

    name = "vit_tiny_patch16_dinov3_qkvb.eupe_lvd1689m"
    save_file(timm.create_model(name, pretrained=False, num_classes=0).state_dict(), tmp_path / "w.safetensors")
    put_in_hub_cache(hub_cache, f"timm/{name}", {"model.safetensors": tmp_path / "w.safetensors"})
    monkeypatch.setattr(sources, "DEFAULT_SOURCE", f"timm:{name}")
    monkeypatch.delenv("DINOV3_MODEL", raising=False)
    result = load_backbone()
    assert result.requested == "auto" and not result.fell_back
    assert result.backbone.model_id == f"timm:{name}" and "local cache" in result.message


def test_missing_requested_source_falls_back_to_bundled(tiny_model_dir: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sources, "BUNDLED_DIR", tiny_model_dir)
    result = load_backbone(str(tmp_path / "does-not-exist"))
    assert result.backbone is not None and result.fell_back
    assert "Fell back" in result.message and result.backbone.model_id.startswith("bundled/")


# ------------------------------------------------------------------ bad input
def test_folder_without_config_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SourceUnavailable, match="no config.json") as error:
        load_source(str(tmp_path))
    one_line(error)


@pytest.mark.parametrize("kind", ["clip", "resnet"])
def test_another_model_type_is_refused_before_loading(tmp_path: Path, kind: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from transformers import CLIPVisionConfig, CLIPVisionModel, ResNetConfig, ResNetModel

    if kind == "clip":
        model = CLIPVisionModel(CLIPVisionConfig(hidden_size=32, intermediate_size=32, num_hidden_layers=1,
                                                 num_attention_heads=2, image_size=32, patch_size=16))
    else:
        model = ResNetModel(ResNetConfig(embedding_size=8, hidden_sizes=[8, 8], depths=[1, 1]))
    model.save_pretrained(tmp_path)
    monkeypatch.setattr("transformers.AutoModel.from_pretrained", lambda *a, **k: pytest.fail("loaded"))
    with pytest.raises(SourceUnavailable, match=r"holds a '(clip_vision_model|resnet)' model.*DINOv3") as error:
        load_source(str(tmp_path))
    one_line(error)


def test_config_without_weights_is_refused(tiny_model_dir: Path, tmp_path: Path) -> None:
    shutil.copy(tiny_model_dir / "config.json", tmp_path / "config.json")
    with pytest.raises(SourceUnavailable, match="no weights") as error:
        load_source(str(tmp_path))
    one_line(error)


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_safetensors_is_refused(tiny_model_dir: Path, tmp_path: Path, damage: str) -> None:
    shutil.copy(tiny_model_dir / "config.json", tmp_path / "config.json")
    good = (tiny_model_dir / "model.safetensors").read_bytes()
    (tmp_path / "model.safetensors").write_bytes(b"\x00" * 64 if damage == "garbage" else good[: len(good) // 2])
    with pytest.raises(SourceUnavailable, match="not a readable safetensors file") as error:
        load_source(str(tmp_path))
    one_line(error)


def test_pickle_only_folder_is_refused_and_never_unpickled(tiny_model_dir: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copy(tiny_model_dir / "config.json", tmp_path / "config.json")
    (tmp_path / "pytorch_model.bin").write_bytes(b"not read: a pickle would run code")
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("torch.load was called"))
    with pytest.raises(SourceUnavailable, match=r"only pickle weights \(pytorch_model.bin\).*safetensors") as error:
        load_source(str(tmp_path))
    one_line(error)


def test_weights_that_do_not_match_the_config_are_refused(tiny_model_dir: Path, tmp_path: Path) -> None:
    config = json.loads((tiny_model_dir / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "hidden_size": 64, "intermediate_size": 128}))
    shutil.copy(tiny_model_dir / "model.safetensors", tmp_path / "model.safetensors")
    with pytest.raises(SourceUnavailable, match="do not match its config.json") as error:
        load_source(str(tmp_path))
    one_line(error)


@pytest.mark.parametrize(("name", "message"), [
    ("timm:vit_small_patch16_dinov4.lvd1689m", "timm has no model.*Did you mean 'vit_small_patch16_dinov3.lvd1689m'"),
    ("timm:resnet50.a1_in1k", "not a DINOv2/DINOv3 model"),
    ("timm:vit_small_patch16_dinov3.nonexistent_tag", "timm has no weights named"),
])
def test_bad_timm_names_are_refused(name: str, message: str) -> None:
    with pytest.raises(SourceUnavailable, match=message) as error:
        load_source(name)
    one_line(error)


def test_hub_id_typo_offline_suggests_the_known_id(hub_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(SourceUnavailable, match="Did you mean 'facebook/dinov2-small'") as error:
        load_source("facebook/dinov2-smal")
    assert str(hub_cache) not in one_line(error)


def test_broken_cached_hub_model_does_not_reveal_the_cache_path(tiny_model_dir: Path, hub_cache: Path,
                                                               tmp_path: Path) -> None:
    (tmp_path / "model.safetensors").write_bytes(b"\x00" * 32)
    put_in_hub_cache(hub_cache, "facebook/dinov2-small", {"config.json": tiny_model_dir / "config.json",
                                                          "model.safetensors": tmp_path / "model.safetensors"})
    with pytest.raises(SourceUnavailable, match="'facebook/dinov2-small'") as error:
        load_source("facebook/dinov2-small")
    assert str(hub_cache) not in one_line(error) and "snapshots" not in str(error.value)


# ------------------------------------------------------------------ memory
def test_a_model_too_large_for_memory_is_refused_before_download(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory, "available_bytes", lambda: 2 * 2**30)
    monkeypatch.setattr(sources, "fetch_snapshot", lambda *a, **k: pytest.fail("downloaded"))
    with pytest.raises(SourceUnavailable, match=r"needs ~.* GB of memory .* 2\.0 GB is available") as error:
        load_source("facebook/dinov3-vit7b16-pretrain-lvd1689m")
    one_line(error)


def test_bf16_is_used_where_only_it_fits(tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    params = sum(p.numel() for p in make_tiny_model().parameters())
    monkeypatch.setattr(memory, "available_bytes", lambda: int(params * 3 * memory.LOAD_OVERHEAD))  # < fp32, > bf16
    monkeypatch.setattr(memory, "bf16_supported", lambda device: True)
    backbone = load_source(str(tiny_model_dir))
    assert next(backbone.model.parameters()).dtype == torch.bfloat16
    assert backbone.extract(Image.new("RGB", (64, 48)), size=64).patches.dtype == torch.float32
    monkeypatch.setattr(memory, "bf16_supported", lambda device: False)
    with pytest.raises(SourceUnavailable, match="no native bf16"):
        load_source(str(tiny_model_dir))


def test_timm_folder_of_another_model_is_refused(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"architecture": "resnet50", "pretrained_cfg": {"tag": "a1_in1k"}}))
    with pytest.raises(SourceUnavailable, match="timm 'resnet50', not a DINOv2/DINOv3 model") as error:
        load_source(str(tmp_path))
    one_line(error)
