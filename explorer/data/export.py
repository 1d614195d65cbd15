"""Write a generated world to disk in ImageFolder, VOC and/or COCO layout with fixed splits.

Splits are by index (first 80 % train, next 10 % val, last 10 % test), so the
same ``(seed, n)`` always yields the same split, and because classes are
stratified in blocks of ``NUM_CLASSES`` consecutive indices each split is
class-balanced too. The split lists are recorded in ``splits.json``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from tqdm import tqdm

from explorer.data.classes import CLASS_NAMES
from explorer.data.formats import coco, imagefolder, voc
from explorer.data.world import Scene, SceneGenerator

FORMATS = ("imagefolder", "voc", "coco")
SPLIT_FRACTIONS = {"train": 0.8, "val": 0.1, "test": 0.1}


def split_of(n: int) -> list[str]:
    """Split name per index: [0, 0.8n) train, [0.8n, 0.9n) val, [0.9n, n) test."""
    a, b = int(round(0.8 * n)), int(round(0.9 * n))
    return ["train" if i < a else "val" if i < b else "test" for i in range(n)]


def image_id(i: int) -> str:
    return f"{i:06d}"


def _write_scene(out: Path, formats: Sequence[str], i: int, split: str, sc: Scene) -> list[dict]:
    sid = image_id(i)
    boxes = np.array([inst.box_xyxy for inst in sc.instances], np.float32).reshape(-1, 4)
    cls = [inst.class_id for inst in sc.instances]
    if "imagefolder" in formats:
        imagefolder.write_imagefolder_image(out / "imagefolder", split, sid, sc.image, sc.label)
    if "voc" in formats:
        voc.write_voc_sample(out / "voc", sid, sc.image, sc.seg, sc.inst_map, boxes, cls)
    anns: list[dict] = []
    if "coco" in formats:
        from PIL import Image

        Image.fromarray(sc.image).save(out / "coco" / split / f"{sid}.jpg", quality=95)
        anns = coco.scene_annotations(i + 1, sc.inst_map, boxes, cls, first_ann_id=0)
    return anns


_W: dict = {}


def _init(seed: int, size: int, out: str, formats: tuple[str, ...], n: int) -> None:
    import cv2

    cv2.setNumThreads(1)
    _W.update(gen=SceneGenerator(seed, size), out=Path(out), formats=formats, splits=split_of(n))


def _work(bounds: tuple[int, int]) -> tuple[int, list[list[dict]], list[int]]:
    a, b = bounds
    results, labels = [], []
    for i in range(a, b):
        sc = _W["gen"].scene(i)
        results.append(_write_scene(_W["out"], _W["formats"], i, _W["splits"][i], sc))
        labels.append(sc.label)
    return a, results, labels


def make_dataset(out: Path, n: int, seed: int, formats: Sequence[str] = FORMATS, size: int = 224,
                 workers: int = 1, progress: bool = True) -> dict:
    """Generate scenes 0..n-1 of ``seed`` and write them; returns the splits record."""
    out = Path(out)
    formats = tuple(f.strip() for f in formats if f.strip())
    bad = set(formats) - set(FORMATS)
    if bad:
        raise ValueError(f"unknown formats {sorted(bad)}; choose from {FORMATS}")
    splits = split_of(n)
    names = list(SPLIT_FRACTIONS)
    out.mkdir(parents=True, exist_ok=True)
    for s in names:
        if "imagefolder" in formats:
            imagefolder.prepare_imagefolder(out / "imagefolder", s)
        if "coco" in formats:
            (out / "coco" / s).mkdir(parents=True, exist_ok=True)
    if "voc" in formats:
        voc.prepare_voc_root(out / "voc")
    anns_per_image: list[list[dict]] = [[] for _ in range(n)]
    labels = np.zeros(n, np.int64)
    chunk = 64
    jobs = [(a, min(a + chunk, n)) for a in range(0, n, chunk)]
    bar = tqdm(total=n, desc="scenes", unit="img", disable=not progress)
    if workers <= 1:
        _init(seed, size, str(out), formats, n)
        results = map(_work, jobs)
        pool = None
    else:
        pool = get_context("spawn").Pool(workers, initializer=_init, initargs=(seed, size, str(out), formats, n))
        results = pool.imap_unordered(_work, jobs)
    try:
        for a, res, labs in results:
            anns_per_image[a:a + len(res)] = res
            labels[a:a + len(labs)] = labs
            bar.update(len(res))
    finally:
        bar.close()
        if pool is not None:
            pool.close()
            pool.join()
    ids = {s: [image_id(i) for i in range(n) if splits[i] == s] for s in names}
    if "voc" in formats:
        voc.write_voc_splits(out / "voc", ids)
    if "coco" in formats:
        for s in names:
            idx = [i for i in range(n) if splits[i] == s]
            images = [{"id": i + 1, "file_name": f"{image_id(i)}.jpg", "width": size, "height": size, "license": 1}
                      for i in idx]
            anns = [dict(a) for i in idx for a in anns_per_image[i]]
            for k, a in enumerate(anns):
                a["id"] = k + 1
            coco.write_coco(out / "coco" / "annotations" / f"instances_{s}.json", images, anns,
                            info={"description": "DINOv3 Explorer offline world", "seed": seed, "split": s})
    record = {"seed": seed, "n": n, "size": size, "formats": list(formats), "fractions": SPLIT_FRACTIONS,
              "class_names": CLASS_NAMES, **ids,
              "labels": {s: [int(labels[i]) for i in range(n) if splits[i] == s] for s in names}}
    (out / "splits.json").write_text(json.dumps(record, indent=1) + "\n")
    return record
