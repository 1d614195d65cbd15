"""Turn a dataset folder + format + split into what the heads and metrics need.

Readers live in ``explorer.data.formats``; this module only finds the right sub-folder (the offline
world writes ``imagefolder/``, ``voc/`` and ``coco/`` side by side under one directory, real datasets
are passed directly) and normalises labels to 0-based integer class ids.

Box convention everywhere: 0-based pixel edges ``[x0, y0, x1, y1]`` (VOC XML minus 1 on the min side;
COCO ``[x, y, w, h]`` -> ``[x, y, x + w, y + h]``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

FORMATS = ("imagefolder", "voc", "coco")


@dataclass
class ClassificationData:
    paths: list[Path]
    labels: np.ndarray  # int64 [N]
    class_names: list[str]
    root: Path


@dataclass
class SegmentationData:
    image_paths: list[Path]
    mask_paths: list[Path]
    class_names: list[str]  # index == label value; [0] == "background"
    root: Path


@dataclass
class BoxData:
    image_paths: list[Path]
    boxes: list[np.ndarray]  # float32 [n_i, 4] xyxy, 0-based edges
    labels: list[np.ndarray]  # int64 [n_i], 0-based class ids into class_names
    difficult: list[np.ndarray]  # bool [n_i]
    class_names: list[str]  # object classes only (no background)
    root: Path


def _has_voc(p: Path) -> bool:
    return (p / "JPEGImages").is_dir() or any((q / "JPEGImages").is_dir() for q in p.glob("VOC*"))


def resolve_root(data: str | Path, fmt: str) -> Path:
    """The folder holding ``fmt`` inside ``data`` (``data`` itself, or ``data/<fmt>``)."""
    data = Path(data)
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; expected one of {FORMATS}")
    candidates = [data / fmt, data]
    for c in candidates:
        if fmt == "voc" and _has_voc(c):
            return c
        if fmt == "coco" and c.is_dir() and (list(c.glob("*.json")) or list(c.glob("annotations/*.json"))):
            return c
        if fmt == "imagefolder" and c.is_dir() and any(
            (c / s).is_dir() for s in ("train", "val", "test")
        ):
            return c
    raise FileNotFoundError(f"no {fmt} dataset found in {data} (looked in {', '.join(map(str, candidates))})")


def guess_format(data: str | Path, task: str) -> str:
    """First format present in ``data`` that suits ``task`` (probe prefers ImageFolder, others VOC)."""
    order = {"probe": ("imagefolder", "voc", "coco"), "segmentation": ("voc",),
             "detection": ("coco", "voc"), "discovery": ("voc", "coco")}[task]
    for fmt in order:
        try:
            resolve_root(data, fmt)
            return fmt
        except FileNotFoundError:
            continue
    raise FileNotFoundError(f"{data} holds none of the formats {order} needed for {task}")


# --------------------------------------------------------------------------- ImageFolder
def _read_imagefolder(root: Path, split: str) -> tuple[list[tuple[Path, int]], list[str]]:
    from explorer.data.formats.imagefolder import read_imagefolder

    return read_imagefolder(root, split)


def _classes_from_train(root: Path, fmt_names: list[str], split: str) -> list[str]:
    """ImageFolder numbers classes by the folders present in a split; use train's list for every split
    so a test split missing a class keeps the same indices."""
    if split == "train" or not (root / "train").is_dir():
        return fmt_names
    return sorted(p.name for p in (root / "train").iterdir() if p.is_dir())


def load_classification(data: str | Path, split: str, fmt: str = "imagefolder") -> ClassificationData:
    """(image, class) pairs; VOC/COCO give each image the class of its largest box."""
    if fmt == "imagefolder":
        root = resolve_root(data, fmt)
        items, names = _read_imagefolder(root, split)
        all_names = _classes_from_train(root, list(names), split)
        unseen = sorted(set(names) - set(all_names))
        if unseen:
            raise ValueError(f"split {split!r} has classes that train has not: {', '.join(unseen[:5])}")
        remap = np.asarray([all_names.index(n) for n in names], np.int64)
        return ClassificationData([Path(p) for p, _ in items], remap[np.asarray([c for _, c in items], np.int64)]
                                  if items else np.zeros(0, np.int64), all_names, root)
    boxes = load_boxes(data, split, fmt)
    keep = [i for i, b in enumerate(boxes.boxes) if len(b)]
    labels = []
    for i in keep:
        b = boxes.boxes[i]
        labels.append(int(boxes.labels[i][np.argmax((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]))]))
    return ClassificationData([boxes.image_paths[i] for i in keep], np.asarray(labels, np.int64),
                              boxes.class_names, boxes.root)


# --------------------------------------------------------------------------- VOC
def load_segmentation(data: str | Path, split: str) -> SegmentationData:
    from explorer.data.formats.voc import read_voc, voc_class_names

    root = resolve_root(data, "voc")
    samples = read_voc(root, split, task="Segmentation") if _split_file(root, "Segmentation", split) else \
        read_voc(root, split)
    samples = [s for s in samples if s.seg_path is not None]
    if not samples:
        raise FileNotFoundError(f"no segmentation masks for split {split!r} in {root}")
    return SegmentationData([s.image_path for s in samples], [s.seg_path for s in samples],
                            list(voc_class_names(root)), root)


def _split_file(root: Path, task: str, split: str) -> bool:
    from explorer.data.formats.voc import voc_year_root

    return (voc_year_root(root) / "ImageSets" / task / f"{split}.txt").is_file()


def load_boxes(data: str | Path, split: str, fmt: str = "voc") -> BoxData:
    """Every image's boxes and 0-based class ids, from VOC XML or a COCO JSON."""
    if fmt == "coco":
        return _load_coco(data, split)
    from explorer.data.formats.voc import read_voc, voc_class_names

    root = resolve_root(data, "voc")
    names = [n for n in voc_class_names(root) if n != "background"]
    index = {n: i for i, n in enumerate(names)}
    samples = read_voc(root, split)
    labels = []
    for s in samples:
        unknown = [n for n in s.labels if n not in index]
        if unknown:
            raise ValueError(f"{s.image_path}: class names {unknown} are not in the dataset's class list")
        labels.append(np.asarray([index[n] for n in s.labels], np.int64))
    return BoxData([s.image_path for s in samples], [np.asarray(s.boxes_xyxy, np.float32).reshape(-1, 4)
                   for s in samples], labels, [np.asarray(s.difficult, bool) for s in samples], names, root)


# --------------------------------------------------------------------------- COCO
def _coco_json(root: Path, split: str) -> Path:
    pats = [f"annotations/instances_{split}*.json", f"instances_{split}*.json", f"annotations/*{split}*.json",
            f"*{split}*.json"]
    for pat in pats:
        hits = sorted(root.glob(pat))
        if hits:
            return hits[0]
    raise FileNotFoundError(f"no COCO json for split {split!r} under {root}")


def _load_coco(data: str | Path, split: str) -> BoxData:
    from explorer.data.formats.coco import category_index, read_coco, xywh_to_xyxy

    root = resolve_root(data, "coco")
    jpath = _coco_json(root, split)
    images, anns, cats = read_coco(jpath)
    if images and not Path(images[0]["path"]).is_file():  # flat layouts: images next to the json or in root
        for base in (root / split, root / "images" / split, root / "images", jpath.parent, root):
            if (base / images[0]["file_name"]).is_file():
                images, anns, cats = read_coco(jpath, base)
                break
    cat_index = category_index(cats)
    per_img: dict[int, list[dict]] = {}
    for a in anns:
        per_img.setdefault(a["image_id"], []).append(a)
    images = sorted(images, key=lambda im: im["id"])
    paths, boxes, labels, crowd = [], [], [], []
    for im in images:
        ia = per_img.get(im["id"], [])
        paths.append(Path(im["path"]))
        boxes.append(np.asarray([xywh_to_xyxy(a["bbox"]) for a in ia], np.float32).reshape(-1, 4))
        labels.append(np.asarray([cat_index[a["category_id"]] for a in ia], np.int64))
        crowd.append(np.asarray([bool(a.get("iscrowd", 0)) for a in ia], bool))
    return BoxData(paths, boxes, labels, crowd, [c["name"] for c in cats], root)
