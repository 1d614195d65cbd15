"""`python -m explorer data {make,sheet,atlas}`: build datasets, contact sheets and the sprite atlas."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m explorer data", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make", help="generate a labelled world in coco/voc/imagefolder layout")
    m.add_argument("--out", type=Path, required=True)
    m.add_argument("--n", type=int, required=True)
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--format", default="coco,voc,imagefolder", help="comma-separated subset of coco,voc,imagefolder")
    m.add_argument("--size", type=int, default=224)
    m.add_argument("--workers", type=int, default=1)
    s = sub.add_parser("sheet", help="draw sample scenes with boxes, labels and segmentation")
    s.add_argument("--out", type=Path, default=Path("contact_sheet.png"))
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--n", type=int, default=16)
    s.add_argument("--size", type=int, default=224)
    s.add_argument("--palette", action="store_true", help="256-colour PNG (smaller file)")
    a = sub.add_parser("atlas", help="re-render assets/emoji/atlas.png from the Noto Color Emoji font")
    a.add_argument("--font", type=Path, default=None)
    a.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    if args.cmd == "make":
        from explorer.data.export import make_dataset

        rec = make_dataset(args.out, args.n, args.seed, args.format.split(","), args.size, args.workers)
        print(json.dumps({"out": str(args.out), "n": rec["n"], "seed": rec["seed"],
                          **{k: len(rec[k]) for k in ("train", "val", "test")}}))
    elif args.cmd == "sheet":
        from explorer.data.sheet import write_contact_sheet

        print(write_contact_sheet(args.out, args.seed, args.n, args.size, args.palette))
    else:
        from explorer.data import atlas

        print(atlas.build_atlas(args.font or atlas.DEFAULT_FONT, args.out or atlas.ATLAS_DIR))
    return 0
