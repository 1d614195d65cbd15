"""`data make`: splits recorded, formats agree, same seed -> identical files."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from explorer.cli.data import main
from explorer.data.formats import imagefolder, voc


def _hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_make_is_deterministic_and_splits_are_recorded(tmp_path: Path) -> None:
    args = ["make", "--n", "20", "--seed", "3", "--size", "96", "--format", "coco,voc,imagefolder"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    assert main([*args, "--out", str(tmp_path / "b")]) == 0
    ha, hb = _hashes(tmp_path / "a"), _hashes(tmp_path / "b")
    assert ha == hb and len(ha) > 60
    main(["make", "--n", "20", "--seed", "4", "--size", "96", "--format", "imagefolder", "--out", str(tmp_path / "c")])
    hc = {k: v for k, v in _hashes(tmp_path / "c").items() if k.startswith("imagefolder")}
    ha_if = {k: v for k, v in ha.items() if k.startswith("imagefolder")}
    assert len(hc) == len(ha_if) and not set(hc.values()) & set(ha_if.values())  # other seed, other images

    rec = json.loads((tmp_path / "a" / "splits.json").read_text())
    assert (len(rec["train"]), len(rec["val"]), len(rec["test"])) == (16, 2, 2)
    assert not set(rec["train"]) & set(rec["val"]) and not set(rec["val"]) & set(rec["test"])
    assert [s.image_id for s in voc.read_voc(tmp_path / "a" / "voc", "val")] == rec["val"]
    samples, _ = imagefolder.read_imagefolder(tmp_path / "a" / "imagefolder", "test")
    assert sorted((p.stem, k) for p, k in samples) == sorted(zip(rec["test"], rec["labels"]["test"], strict=True))


def test_sheet_command(tmp_path: Path) -> None:
    out = tmp_path / "sheet.png"
    assert main(["sheet", "--out", str(out), "--n", "2", "--size", "64"]) == 0
    assert out.stat().st_size > 1000
