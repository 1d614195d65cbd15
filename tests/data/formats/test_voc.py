"""VOC reader on real-convention fixtures, and writer -> reader round trip."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from explorer.data.classes import CLASS_NAMES
from explorer.data.formats import voc
from explorer.data.world import SceneGenerator

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "voc"


def test_colormap_matches_published_voc_colours() -> None:
    cmap = voc.voc_colormap()
    assert tuple(cmap[0]) == (0, 0, 0)
    assert tuple(cmap[1]) == (128, 0, 0)        # aeroplane
    assert tuple(cmap[12]) == (64, 0, 128)      # dog
    assert tuple(cmap[15]) == (192, 128, 128)   # person
    assert tuple(cmap[255]) == (224, 224, 192)  # void border colour


@pytest.fixture()
def real_voc(tmp_path: Path) -> Path:
    """A VOCdevkit/VOC2007 tree: hand-written XML + a palette PNG with a 255 void border."""
    root = tmp_path / "VOCdevkit" / "VOC2007"
    for sub in ("Annotations", "JPEGImages", "SegmentationClass", "ImageSets/Main", "ImageSets/Segmentation"):
        (root / sub).mkdir(parents=True)
    for x in ("000001.xml", "000002.xml"):
        shutil.copy(FIX / x, root / "Annotations" / x)
        Image.new("RGB", (20, 16), (90, 120, 30)).save(root / "JPEGImages" / x.replace(".xml", ".jpg"))
    shutil.copy(FIX / "trainval.txt", root / "ImageSets" / "Main" / "trainval.txt")
    shutil.copy(FIX / "seg_trainval.txt", root / "ImageSets" / "Segmentation" / "trainval.txt")
    seg = np.zeros((16, 20), np.uint8)
    seg[1:12, 2:10] = 12          # dog, VOC index 12
    seg[4:16, 11:20] = 15         # person, VOC index 15
    seg[1:12, 2] = seg[1:12, 9] = seg[1, 2:10] = seg[11, 2:10] = 255  # void outline
    im = Image.fromarray(seg, mode="P")
    im.putpalette(voc.voc_colormap().ravel().tolist())
    im.save(root / "SegmentationClass" / "000001.png")
    return tmp_path / "VOCdevkit"


def test_reads_real_voc_conventions(real_voc: Path) -> None:
    samples = voc.read_voc(real_voc, "trainval")  # VOCdevkit folder is resolved to VOC2007
    assert [s.image_id for s in samples] == ["000001", "000002"]
    s1, s2 = samples
    assert s1.labels == ["dog", "person"]
    # 1-based inclusive -> 0-based edges: xmin - 1, ymin - 1, xmax, ymax
    np.testing.assert_array_equal(s1.boxes_xyxy, [[2, 1, 10, 12], [11, 4, 20, 16]])
    assert s1.boxes_xyxy.dtype == np.float32
    assert s1.difficult.tolist() == [False, True] and s1.truncated.tolist() == [True, False]
    assert s1.size_wh == (20, 16)
    assert s2.seg_path is None and s2.difficult.tolist() == [False]  # missing <difficult> -> 0
    np.testing.assert_array_equal(s2.boxes_xyxy, [[0, 0, 20, 16]])  # whole image
    seg = voc.load_voc_seg(s1.seg_path)
    assert seg[5, 5] == 12 and seg[10, 15] == 15 and seg[1, 5] == 255 and seg[0, 0] == 0
    assert voc.voc_class_names(real_voc)[12] == "dog"
    seg_only = voc.read_voc(real_voc, "trainval", task="Segmentation")
    assert [s.image_id for s in seg_only] == ["000001"]


def test_rgb_segmentation_png_decodes_to_same_indices(real_voc: Path, tmp_path: Path) -> None:
    p = real_voc / "VOC2007" / "SegmentationClass" / "000001.png"
    Image.open(p).convert("RGB").save(tmp_path / "rgb.png")
    np.testing.assert_array_equal(voc.load_voc_seg(tmp_path / "rgb.png"), voc.load_voc_seg(p))


def test_write_read_round_trip(tmp_path: Path) -> None:
    gen = SceneGenerator(seed=2)
    scenes = {f"{i:06d}": gen.scene(i) for i in range(6)}
    root = voc.write_voc(tmp_path / "voc", scenes.items(), {"train": list(scenes)[:4], "val": list(scenes)[4:]})
    back = voc.read_voc(root, "train") + voc.read_voc(root, "val")
    assert voc.voc_class_names(root) == ["background", *CLASS_NAMES]
    for s in back:
        sc = scenes[s.image_id]
        np.testing.assert_array_equal(s.boxes_xyxy, [i.box_xyxy for i in sc.instances])
        assert s.labels == [CLASS_NAMES[i.class_id] for i in sc.instances]
        assert not s.difficult.any()
        img = np.asarray(Image.open(s.image_path)).astype(int)
        assert np.abs(img - sc.image).mean() < 4  # JPEG q95
        seg = voc.load_voc_seg(s.seg_path)
        void = seg == voc.VOID
        assert np.array_equal(seg[~void], sc.seg[~void])
        assert 0 < void.mean() < 0.2
        # void only on outlines: every void pixel has a differently-labelled neighbour within 1 px
        assert np.all(voc.void_border(sc.seg.astype(np.uint16) * 256 + sc.inst_map)[void])
        obj = voc.load_voc_seg(root / "SegmentationObject" / f"{s.image_id}.png")
        assert np.array_equal(obj[~void], sc.inst_map[~void])
