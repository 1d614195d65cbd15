"""Pascal VOC layout: JPEGImages, Annotations XML, palette SegmentationClass PNGs, ImageSets.

The reader follows the real VOC2007/VOC2012 conventions so that the same code
reads a downloaded ``VOCdevkit/VOC2012``: XML boxes are 1-based and inclusive
(``xmin=1`` is the first pixel column), ``difficult`` flags, palette PNGs
whose index is the class (0 = background) and 255 = "void" on a thin band
around every object outline (ignored in training and scoring).

Inside the library boxes are 0-based pixel *edges*: ``[xmin - 1, ymin - 1, xmax, ymax]``,
so width = x1 - x0 = the number of pixel columns, the same as COCO's ``w``.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

from explorer.data.classes import CLASS_NAMES

VOC_CLASSES: list[str] = [
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
]
VOID = 255
CLASS_LIST_FILE = "class_names.txt"  # our addition: seg index k <-> line k (line 0 = background)


def voc_colormap(n: int = 256) -> np.ndarray:
    """The standard VOC palette (bit-interleaved class index), uint8 [n, 3]."""
    cmap = np.zeros((n, 3), np.uint8)
    for i in range(n):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        cmap[i] = (r, g, b)
    return cmap


@dataclass
class VocSample:
    """One image's annotations; boxes are 0-based pixel edges ``[x0, y0, x1, y1]``."""

    image_path: Path
    seg_path: Path | None
    boxes_xyxy: np.ndarray  # float32 [n, 4]
    labels: list[str]
    difficult: np.ndarray   # bool [n]
    image_id: str = ""
    size_wh: tuple[int, int] = (0, 0)
    truncated: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))


# -- writing -------------------------------------------------------------------------------------

def void_border(labels: np.ndarray, width: int = 1) -> np.ndarray:
    """Bool mask of pixels within ``width`` px of a change in ``labels`` (VOC's void band)."""
    lab = labels.astype(np.uint16)
    k = np.ones((2 * width + 1, 2 * width + 1), np.uint8)
    return cv2.dilate(lab, k) != cv2.erode(lab, k)


def save_palette_png(path: Path, index: np.ndarray) -> None:
    """Write an index map as a palette ('P' mode) PNG with the VOC colour map, as VOC ships it."""
    im = Image.fromarray(index.astype(np.uint8), mode="P")
    im.putpalette(voc_colormap().ravel().tolist())
    im.save(path, optimize=False)


def _xml(image_id: str, w: int, h: int, objects: list[dict], segmented: bool) -> bytes:
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = "VOC2012"
    ET.SubElement(root, "filename").text = f"{image_id}.jpg"
    src = ET.SubElement(root, "source")
    ET.SubElement(src, "database").text = "DINOv3 Explorer offline world"
    ET.SubElement(src, "annotation").text = "rendered"
    ET.SubElement(src, "image").text = "rendered"
    size = ET.SubElement(root, "size")
    for tag, v in (("width", w), ("height", h), ("depth", 3)):
        ET.SubElement(size, tag).text = str(v)
    ET.SubElement(root, "segmented").text = "1" if segmented else "0"
    for o in objects:
        ob = ET.SubElement(root, "object")
        ET.SubElement(ob, "name").text = o["name"]
        ET.SubElement(ob, "pose").text = "Unspecified"
        ET.SubElement(ob, "truncated").text = str(int(o["truncated"]))
        ET.SubElement(ob, "difficult").text = str(int(o.get("difficult", 0)))
        bb = ET.SubElement(ob, "bndbox")
        for tag, v in zip(("xmin", "ymin", "xmax", "ymax"), o["bndbox"], strict=True):
            ET.SubElement(bb, tag).text = str(int(v))
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8")


def write_voc_sample(root: Path, image_id: str, image: np.ndarray, seg: np.ndarray | None,
                     inst_map: np.ndarray | None, boxes_xyxy: np.ndarray, class_ids: list[int],
                     class_names: list[str] = CLASS_NAMES, quality: int = 95) -> None:
    """Write one image + XML (+ SegmentationClass/Object PNGs with a void border when seg is given).

    ``seg`` holds k + 1 for class k; ``inst_map`` j + 1 for instance j; boxes are 0-based edges.
    """
    root = Path(root)
    h, w = image.shape[:2]
    Image.fromarray(image).save(root / "JPEGImages" / f"{image_id}.jpg", quality=quality)
    objects = []
    for box, cls in zip(np.asarray(boxes_xyxy).reshape(-1, 4), class_ids, strict=True):
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        objects.append({"name": class_names[cls], "bndbox": (x0 + 1, y0 + 1, x1, y1),
                        "truncated": x0 <= 0 or y0 <= 0 or x1 >= w or y1 >= h})
    (root / "Annotations" / f"{image_id}.xml").write_bytes(_xml(image_id, w, h, objects, seg is not None))
    if seg is not None:
        inst = np.zeros_like(seg) if inst_map is None else inst_map
        border = void_border(seg.astype(np.uint16) * 256 + inst)
        cls_png = seg.copy()
        cls_png[border] = VOID
        save_palette_png(root / "SegmentationClass" / f"{image_id}.png", cls_png)
        obj_png = inst.copy()
        obj_png[border] = VOID
        save_palette_png(root / "SegmentationObject" / f"{image_id}.png", obj_png)


def prepare_voc_root(root: Path, class_names: list[str] = CLASS_NAMES) -> Path:
    root = Path(root)
    for sub in ("JPEGImages", "Annotations", "SegmentationClass", "SegmentationObject",
                "ImageSets/Main", "ImageSets/Segmentation"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / CLASS_LIST_FILE).write_text("\n".join(["background", *class_names]) + "\n")
    return root


def write_voc_splits(root: Path, splits: Mapping[str, Iterable[str]], segmented: bool = True) -> None:
    """ImageSets/Main/<split>.txt (+ ImageSets/Segmentation/<split>.txt), one id per line."""
    root = Path(root)
    for split, ids in splits.items():
        text = "".join(f"{i}\n" for i in ids)
        (root / "ImageSets" / "Main" / f"{split}.txt").write_text(text)
        if segmented:
            (root / "ImageSets" / "Segmentation" / f"{split}.txt").write_text(text)


def write_voc(root: Path, items: Iterable[tuple[str, Any]], splits: Mapping[str, Iterable[str]] | None = None,
              class_names: list[str] = CLASS_NAMES) -> Path:
    """Write ``(image_id, scene)`` pairs (anything with image/seg/inst_map/instances) + split files."""
    root = prepare_voc_root(root, class_names)
    ids = []
    for image_id, sc in items:
        boxes = np.array([i.box_xyxy for i in sc.instances], np.float32).reshape(-1, 4)
        write_voc_sample(root, image_id, sc.image, sc.seg, sc.inst_map, boxes,
                         [i.class_id for i in sc.instances], class_names)
        ids.append(image_id)
    write_voc_splits(root, splits if splits is not None else {"train": ids})
    return root


# -- reading -------------------------------------------------------------------------------------

def voc_year_root(root: Path) -> Path:
    """Accept the year folder or a VOCdevkit folder holding exactly one year."""
    root = Path(root)
    if (root / "JPEGImages").is_dir():
        return root
    years = sorted(p for p in root.glob("VOC*") if (p / "JPEGImages").is_dir())
    if len(years) == 1:
        return years[0]
    raise FileNotFoundError(f"{root} is not a VOC year folder (no JPEGImages/)")


def parse_voc_xml(path: Path) -> tuple[np.ndarray, list[str], np.ndarray, np.ndarray, tuple[int, int]]:
    """(boxes 0-based float32[n,4], names, difficult bool[n], truncated bool[n], (w, h))."""
    ann = ET.parse(path).getroot()
    size = ann.find("size")
    wh = (int(float(size.findtext("width", "0"))), int(float(size.findtext("height", "0")))) if size is not None else (0, 0)
    boxes, names, diff, trunc = [], [], [], []
    for ob in ann.findall("object"):
        bb = ob.find("bndbox")
        if bb is None:
            continue
        xmin, ymin, xmax, ymax = (float(bb.findtext(t, "0")) for t in ("xmin", "ymin", "xmax", "ymax"))
        boxes.append((xmin - 1.0, ymin - 1.0, xmax, ymax))
        names.append((ob.findtext("name") or "").strip())
        diff.append(int(float(ob.findtext("difficult", "0") or 0)) == 1)
        trunc.append(int(float(ob.findtext("truncated", "0") or 0)) == 1)
    return (np.asarray(boxes, np.float32).reshape(-1, 4), names, np.asarray(diff, bool),
            np.asarray(trunc, bool), wh)


def read_voc(root: Path, split: str, task: str = "Main") -> list[VocSample]:
    """Samples listed in ``ImageSets/<task>/<split>.txt`` (task "Main" or "Segmentation")."""
    root = voc_year_root(root)
    ids = [line.split()[0] for line in (root / "ImageSets" / task / f"{split}.txt").read_text().splitlines()
           if line.strip()]
    out = []
    for image_id in ids:
        seg = root / "SegmentationClass" / f"{image_id}.png"
        xml = root / "Annotations" / f"{image_id}.xml"
        if xml.exists():
            boxes, names, diff, trunc, wh = parse_voc_xml(xml)
        else:  # a few segmentation-only setups ship no XML
            boxes, names, diff, trunc, wh = np.zeros((0, 4), np.float32), [], np.zeros(0, bool), np.zeros(0, bool), (0, 0)
        out.append(VocSample(root / "JPEGImages" / f"{image_id}.jpg", seg if seg.exists() else None,
                             boxes, names, diff, image_id, wh, trunc))
    return out


def load_voc_seg(path: Path) -> np.ndarray:
    """Class-index map uint8[H,W] (0 background, 255 void) from a VOC PNG (palette or RGB)."""
    im = Image.open(path)
    if im.mode in ("P", "L"):
        return np.asarray(im, dtype=np.uint8).copy()
    rgb = np.asarray(im.convert("RGB"))
    cmap = voc_colormap().astype(np.int64)
    key = (cmap[:, 0] << 16) | (cmap[:, 1] << 8) | cmap[:, 2]
    lookup = dict(zip(key.tolist(), range(256), strict=True))
    flat = (rgb[..., 0].astype(np.int64) << 16) | (rgb[..., 1].astype(np.int64) << 8) | rgb[..., 2]
    uniq, inv = np.unique(flat, return_inverse=True)
    return np.asarray([lookup.get(u, VOID) for u in uniq.tolist()], np.uint8)[inv].reshape(rgb.shape[:2])


def voc_class_names(root: Path) -> list[str]:
    """Seg index -> name: our class_names.txt if present, else the 21 real VOC names."""
    root = voc_year_root(root)
    f = root / CLASS_LIST_FILE
    if f.exists():
        return [line for line in f.read_text().splitlines() if line]
    return list(VOC_CLASSES)
