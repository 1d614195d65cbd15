"""COCO instances JSON: ``[x, y, w, h]`` boxes, 1-based (possibly sparse) category ids, masks.

Layout written (mirrors COCO 2017): ``root/annotations/instances_<split>.json`` and
images in ``root/<split>/``. The reader accepts what real COCO files contain:
non-contiguous category ids (COCO's run 1..90 with gaps), polygon segmentations
for ``iscrowd=0``, uncompressed RLE (``counts`` a list) for ``iscrowd=1`` and
compressed RLE (``counts`` a string), as ``pycocotools`` does.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from explorer.data.classes import CLASS_NAMES

SUPERCATEGORY = "emoji"


def coco_categories(class_names: list[str] = CLASS_NAMES) -> list[dict]:
    """Class k becomes category id k + 1 (COCO ids are 1-based; 0 is never a category)."""
    return [{"id": k + 1, "name": n, "supercategory": SUPERCATEGORY} for k, n in enumerate(class_names)]


def encode_mask(mask: np.ndarray) -> dict:
    """Compressed RLE (``counts`` as str so it is valid JSON), exact for any mask shape."""
    from pycocotools import mask as mask_utils  # lazily: VOC / ImageFolder exports must not need it

    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def scene_annotations(image_id: int, inst_map: np.ndarray, boxes_xyxy: np.ndarray, class_ids: list[int],
                      first_ann_id: int) -> list[dict]:
    """One COCO annotation per instance (``inst_map`` holds j + 1 for instance j)."""
    anns = []
    for j, (box, cls) in enumerate(zip(np.asarray(boxes_xyxy).reshape(-1, 4), class_ids, strict=True)):
        m = inst_map == j + 1
        x0, y0, x1, y1 = (float(v) for v in box)
        anns.append({"id": first_ann_id + j, "image_id": int(image_id), "category_id": int(cls) + 1,
                     "bbox": [x0, y0, x1 - x0, y1 - y0], "area": float(m.sum()), "iscrowd": 0,
                     "segmentation": encode_mask(m)})
    return anns


def write_coco(json_path: Path, images: list[dict], annotations: list[dict],
               categories: list[dict] | None = None, info: dict | None = None) -> Path:
    """Write a COCO instances file; ``images`` need id, file_name, width, height."""
    json_path = Path(json_path)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    data = {"info": info or {"description": "DINOv3 Explorer offline world"},
            "licenses": [{"id": 1, "name": "see docs/DATASET_CARD.md"}],
            "images": [{k: v for k, v in im.items() if k != "path"} for im in images],
            "annotations": annotations, "categories": categories or coco_categories()}
    json_path.write_text(json.dumps(data, separators=(",", ":")))
    return json_path


def default_image_root(json_path: Path) -> Path:
    """``annotations/instances_val2017.json`` -> ``val2017/`` next to ``annotations/``."""
    json_path = Path(json_path)
    stem = json_path.stem
    split = stem.split("_", 1)[1] if "_" in stem else stem
    return json_path.parent.parent / split


def read_coco(json_path: Path, image_root: Path | None = None) -> tuple[list[dict], list[dict], list[dict]]:
    """``(images, annotations, categories)`` as in the file; each image gains ``path``.

    Categories come back sorted by id; use ``category_index`` to map sparse ids to 0..C-1.
    """
    data: dict[str, Any] = json.loads(Path(json_path).read_text())
    root = Path(image_root) if image_root is not None else default_image_root(json_path)
    images = [dict(im, path=root / im["file_name"]) for im in data.get("images", [])]
    categories = sorted(data.get("categories", []), key=lambda c: c["id"])
    return images, list(data.get("annotations", [])), categories


def category_index(categories: list[dict]) -> dict[int, int]:
    """Sparse COCO category id -> contiguous index (in id order)."""
    return {c["id"]: k for k, c in enumerate(sorted(categories, key=lambda c: c["id"]))}


def ann_to_mask(ann: dict, height: int, width: int) -> np.ndarray:
    """Binary mask uint8[H,W] from a polygon, uncompressed RLE or compressed RLE segmentation."""
    from pycocotools import mask as mask_utils

    seg = ann["segmentation"]
    if isinstance(seg, list):  # polygons
        rles = mask_utils.frPyObjects(seg, height, width)
        rle = mask_utils.merge(rles)
    elif isinstance(seg.get("counts"), list):  # uncompressed RLE
        rle = mask_utils.frPyObjects(seg, height, width)
    else:
        rle = dict(seg)
        if isinstance(rle["counts"], str):
            rle["counts"] = rle["counts"].encode("ascii")
    return mask_utils.decode(rle).astype(np.uint8)


def xywh_to_xyxy(bbox: list[float]) -> tuple[float, float, float, float]:
    x, y, w, h = bbox
    return (x, y, x + w, y + h)
