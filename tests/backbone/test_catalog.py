"""The catalogue: complete, its parameter counts true to the architectures, its gating right."""

from __future__ import annotations

import pytest

from explorer.backbone import catalog


def test_every_source_is_listed_with_its_figures() -> None:
    entries = catalog.entries()
    families = {e.family for e in entries}
    assert families == {"dinov3-vit", "dinov3-convnext", "dinov2"}
    assert all(e.params and e.download_mb and e.memory_mb for e in entries)
    sizes = {(e.family, e.size) for e in entries}
    for size in ("S/16", "S+/16", "B/16", "L/16", "H+/16", "7B/16"):
        assert ("dinov3-vit", size) in sizes
    assert {e.size for e in entries if e.family == "dinov3-convnext"} == {"Tiny", "Small", "Base", "Large"}
    assert {e.pretrain for e in entries if e.family == "dinov3-vit"} == {"LVD-1689M", "SAT-493M"}
    assert len({e.source for e in entries}) == len(entries)


@pytest.mark.parametrize(("arch", "library"), [("vits16", "transformers"), ("vits16", "timm"),
                                               ("convnext-tiny", "transformers"), ("dinov2-small-reg", "timm")])
def test_stored_parameter_counts_are_the_meta_device_counts(arch: str, library: str) -> None:
    stored = {e.params for e in catalog.entries() if e.arch == arch and e.library == library}
    assert stored == {catalog.count_params(arch, library)}


def test_transformers_and_timm_agree_on_each_architecture() -> None:
    """Two libraries, two independent descriptions of each net: the typed configs must give the same size."""
    by_arch: dict[str, dict[str, int]] = {}
    for entry in catalog.entries():
        by_arch.setdefault(entry.arch, {})[entry.library] = entry.params
    for arch, counts in by_arch.items():
        assert abs(counts["transformers"] - counts["timm"]) / counts["timm"] < 0.005, arch


def test_known_sizes() -> None:
    """Published sizes: DINOv3 ViT-S 21.6 M, ViT-7B 6.7 B, DINOv2 ViT-g 1.1 B; ConvNeXt-T 28 M."""
    params = {e.source: e.params for e in catalog.entries()}
    assert round(params["timm:vit_small_patch16_dinov3.lvd1689m"] / 1e6, 1) == 21.6
    assert round(params["facebook/dinov3-vit7b16-pretrain-lvd1689m"] / 1e9, 1) == 6.7
    assert round(params["facebook/dinov2-giant"] / 1e9, 1) == 1.1
    assert round(params["timm:convnext_tiny.dinov3_lvd1689m"] / 1e6) == 28


def test_only_the_facebook_dinov3_ids_need_a_token_and_each_names_its_ungated_copy() -> None:
    for entry in catalog.entries():
        assert entry.gated == entry.source.startswith("facebook/dinov3-")
        if entry.gated:
            alternative = catalog.find(entry.ungated_alternative)
            assert alternative.library == "timm" and not alternative.gated
            assert (alternative.arch, alternative.pretrain) == (entry.arch, entry.pretrain)
            assert "needs HF_TOKEN" in entry.label()
    assert all(not catalog.find(source).gated for _label, source in catalog.choices(gated=False, local=False))
    assert [source for _label, source in catalog.choices()[:2]] == ["auto", "bundled"]


def test_sizes_follow_from_the_parameter_count() -> None:
    entry = catalog.find("facebook/dinov2-small")
    assert entry.download_mb == pytest.approx(entry.params * 4 / 2**20)
    assert entry.info()["memory_mb_bf16"] < entry.info()["memory_mb"]
    assert entry.info()["params_m"] == round(entry.params / 1e6, 1)
