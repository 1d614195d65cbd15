"""Short recipe A/B on the CPU: N steps of a config with dotted overrides; prints one JSON line.

Why: a quick collapse diagnostic. With the KoLeo weight at 0, the final KoLeo value measures how
spread the student's CLS tokens still are (about 0 or below: spread; 2.5 or more: nearly collapsed),
which tells whether the DINO objective alone keeps images apart.

    PYTHONPATH=. python scripts/recipe_ab.py nokoleo 150 '{"loss.koleo_weight": 0.0}'
    PYTHONPATH=. python scripts/recipe_ab.py mildaug 150 '{"crops.jitter_p": 0.2, "crops.grayscale_p": 0.0}'
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import torch

from explorer.ssl.config import RecipeConfig
from explorer.ssl.data import load_heldout, load_source
from explorer.ssl.train import Pretrainer


def apply_overrides(cfg: RecipeConfig, overrides: dict[str, Any]) -> RecipeConfig:
    """{"loss.koleo_weight": 0.0, ...} -> a new config (unknown keys are an error, as in RecipeConfig.load)."""
    data = cfg.to_dict()
    for dotted, value in overrides.items():
        node = data
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node[key]
        if leaf not in node:
            raise KeyError(f"no recipe key {dotted}")
        node[leaf] = value
    return RecipeConfig.from_dict(data)


def diagnostic_trainer(cfg: RecipeConfig, pool_n: int, data: str | None = None) -> Pretrainer:
    """A Pretrainer on `data` (default: a `pool_n`-scene world) with a 600/300 k-NN split of ordinary
    world scenes, no Gram phase, quiet."""
    cfg.knn_train, cfg.knn_test = 600, 300
    cfg.gram.enabled = False
    torch.set_num_threads(2)
    data = data or f"world:{pool_n}"
    pool = load_source(data, cfg.pool_size, cfg.seed, 2)
    heldout = load_heldout(data, cfg.pool_size, cfg.knn_train, cfg.knn_test, cfg.seed, 2)
    return Pretrainer(cfg, pool, None, None, heldout, use_gram=False, log=lambda *_: None)


def summary(name: str, knn_start: float | None, knn_end: float | None, rows: list[dict[str, float]],
            start: float) -> dict[str, Any]:
    """One JSON-able line: k-NN before/after, DINO loss per fifth of the run, last-20-step means."""
    steps = len(rows)
    fifth = max(1, steps // 5)

    def mean(key: str, lo: int, hi: int) -> float | None:
        part = [r[key] for r in rows[max(lo, 0) : hi] if key in r]
        return round(sum(part) / len(part), 3) if part else None

    return {
        "name": name, "knn_start": round(knn_start or 0.0, 3), "knn_end": round(knn_end or 0.0, 3),
        "dino_by_fifth": [mean("dino", i, i + fifth) for i in range(0, steps, fifth)],
        "ibot_end": mean("ibot", steps - 20, steps), "koleo_end": mean("koleo", steps - 20, steps),
        "seconds": round(time.time() - start),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name")
    parser.add_argument("steps", type=int)
    parser.add_argument("overrides", nargs="?", default="{}")
    parser.add_argument("--config", default="configs/bundled_cpu.json")
    parser.add_argument("--pool", type=int, default=3000)
    parser.add_argument("--data", default=None, help="pool source (default world:POOL), e.g. objects:3000")
    args = parser.parse_args()
    cfg = apply_overrides(RecipeConfig.load(args.config), json.loads(args.overrides))
    cfg.steps = args.steps
    trainer = diagnostic_trainer(cfg, args.pool, args.data)
    start = time.time()
    knn0 = trainer.knn_monitor()
    rows = [trainer.train_step() for _ in range(args.steps)]
    print(json.dumps(summary(args.name, knn0, trainer.knn_monitor(), rows, start)), flush=True)


if __name__ == "__main__":
    main()
