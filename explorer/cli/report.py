"""`python -m explorer report --model DIR`: a backbone's frozen-feature quality against its own
architecture at random initialisation (`explorer.eval.backbone_report`), as one JSON object.

    python -m explorer report --model pretrained/dinov3-explorer-tiny --n-train 1000 --n-val 200 \
        --n-test 500 --json metrics.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from explorer.cli.common import open_backbone
from explorer.eval.backbone_report import EVAL_SEED, evaluate, random_twin


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m explorer report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="backbone folder (HF format)")
    parser.add_argument("--n-train", type=int, default=2000)
    parser.add_argument("--n-val", type=int, default=300)
    parser.add_argument("--n-test", type=int, default=1000)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--skip-random", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    backbone = open_backbone(args.model)
    start = time.time()
    pretrained = evaluate(backbone, args.n_train, args.n_val, args.n_test, args.size)
    out: dict[str, Any] = {"protocol": vars(args) | {"eval_seed": EVAL_SEED, "json": str(args.json)}}
    random = None if args.skip_random else evaluate(random_twin(backbone), args.n_train, args.n_val, args.n_test, args.size)
    for key in ("probe_top1", "knn_top1", "seg_miou", "corloc"):
        out[key] = {"pretrained": pretrained[key], "random": random[key] if random else None}
    out["details"] = {"pretrained": pretrained, "random": random, "seconds": time.time() - start}
    text = json.dumps(out, indent=2, default=float)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0
