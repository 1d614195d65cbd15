"""ImageFolder: lossless round trip and torchvision's sorted-directory convention."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from explorer.data.classes import CLASS_NAMES
from explorer.data.formats.imagefolder import read_imagefolder, write_imagefolder
from explorer.data.world import SceneGenerator


def test_round_trip_is_lossless(tmp_path: Path) -> None:
    gen = SceneGenerator(seed=9, size=64)
    scenes = gen.batch(range(5))
    write_imagefolder(tmp_path, "val", [(f"{i:06d}", sc.image, sc.label) for i, sc in enumerate(scenes)])
    samples, names = read_imagefolder(tmp_path, "val")
    assert names == CLASS_NAMES  # empty class dirs are kept, so the class list is complete
    assert len(samples) == 5
    for path, label in samples:
        sc = scenes[int(path.stem)]
        assert label == sc.label
        assert np.array_equal(np.asarray(Image.open(path)), sc.image)


def test_reads_imagenet_style_tree(tmp_path: Path) -> None:
    """Real ImageNet folders: WordNet-id dirs, .JPEG files, stray non-image files ignored."""
    for wnid in ("n01443537", "n01440764"):
        (tmp_path / "train" / wnid).mkdir(parents=True)
        Image.new("RGB", (4, 4)).save(tmp_path / "train" / wnid / f"{wnid}_1.JPEG", format="JPEG")
    (tmp_path / "train" / "n01440764" / "notes.txt").write_text("x")
    samples, names = read_imagefolder(tmp_path / "train")
    assert names == ["n01440764", "n01443537"]
    assert [(p.name, k) for p, k in samples] == [("n01440764_1.JPEG", 0), ("n01443537_1.JPEG", 1)]
