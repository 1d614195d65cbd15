"""Why small-scale DINO stays near chance on the offline world: short diagnostic runs, one JSON line each.

Every mode is the project's `Pretrainer` (its backbone, multi-crop, AdamW schedules, k-NN monitor);
only the objective changes, so a difference between modes is the objective's, not the plumbing's.
Findings: docs/results/PRETRAINING.md ("Diagnosis").

    python -m experiments.collapse recipe nokoleo 150 --set '{"loss.koleo_weight": 0.0}'
    python -m experiments.collapse recipe mildaug 150 --set '{"crops.jitter_p": 0.2, "crops.grayscale_p": 0.0}'
    python -m experiments.collapse contrastive 150 --data objects:3000   # SimCLR's InfoNCE on two global crops
    python -m experiments.collapse supervised 150                         # labels: an upper bound, not SSL

recipe: the DINOv3 recipe with dotted overrides of the config. With the KoLeo weight at 0 the
logged KoLeo value still measures how spread the student's CLS tokens are (about 0 or below:
spread; 2.5 or more: nearly collapsed), i.e. whether the DINO objective alone keeps images apart.
contrastive / supervised: the same trainer with its loss replaced by InfoNCE (no teacher, no
bootstrapping) or by cross-entropy on the pool's labels. If they lift k-NN where DINO does not, the
shared parts (backbone, crops, optimiser, data) are sound and the DINO-specific ones are slow to start.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from explorer.ssl.config import RecipeConfig
from explorer.ssl.data import HELDOUT_SEED_OFFSET, Pool, load_heldout, load_pretraining_pool
from explorer.ssl.losses import koleo_loss
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


def info_nce(a: Tensor, b: Tensor, temperature: float) -> Tensor:
    """NT-Xent over 2B embeddings: each view's positive is the other view of its image."""
    z = F.normalize(torch.cat([a, b]), dim=1)
    sim = z @ z.t() / temperature
    sim.fill_diagonal_(float("-inf"))
    n = a.shape[0]
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(sim, target)


class ObjectiveSwap(Pretrainer):
    """The Pretrainer with its loss replaced by InfoNCE or label cross-entropy on the CLS tokens of the
    two global crops. The teacher follows the student exactly (momentum 0), so the k-NN monitor,
    which embeds with the teacher, measures the student."""

    def __init__(self, cfg: RecipeConfig, pool: Pool, heldout: tuple[Pool, Pool] | None, mode: str,
                 temperature: float = 0.2) -> None:
        cfg.crops.num_local = 0  # two global views, as SimCLR
        cfg.optim.momentum_start = cfg.optim.momentum_end = 0.0
        super().__init__(cfg, pool, None, None, heldout, use_gram=False, log=lambda *_: None)
        d = cfg.model.hidden_size
        if mode == "supervised":
            if pool.labels is None:
                raise ValueError("supervised mode needs a labelled pool (world:N, objects:N or a folder)")
            self.projection: nn.Module = nn.Linear(d, int(pool.labels.max()) + 1)
        else:
            self.projection = nn.Sequential(nn.Linear(d, 512), nn.GELU(), nn.Linear(512, 128))
        self.projection.to(self.device)
        self.optimizer.add_param_group({"params": list(self.projection.parameters()), "apply_wd": True})
        self.mode, self.temperature = mode, temperature

    def losses(self, step: int, crops: Any, masks: Tensor, sched: dict[str, float]) -> dict[str, Tensor]:
        v1, v2 = crops.globals_.chunk(2)
        c1, _ = self.student.encode(v1)
        c2, _ = self.student.encode(v2)
        if self.mode == "supervised":
            labels = self.pool.labels[self.batch_indices(step)].to(self.device)
            loss = (F.cross_entropy(self.projection(c1), labels) + F.cross_entropy(self.projection(c2), labels)) / 2
        else:
            loss = info_nce(self.projection(c1), self.projection(c2), self.temperature)
        zero = torch.zeros((), device=self.device)
        # "dino" is the summary's loss column; KoLeo is logged (not trained) as the CLS spread measure
        return {"loss": loss, "dino": loss.detach(), "ibot": zero, "koleo": koleo_loss(c1.detach()), "gram": zero}


def summary(name: str, knn_start: float | None, knn_end: float | None, rows: list[dict[str, float]]) -> dict[str, Any]:
    """One JSON-able line: k-NN before/after, the loss per fifth of the run, last-20-step means."""
    steps = len(rows)
    fifth = max(1, steps // 5)

    def mean(key: str, lo: int, hi: int) -> float | None:
        part = [r[key] for r in rows[max(lo, 0) : hi] if key in r]
        return round(sum(part) / len(part), 3) if part else None

    return {
        "name": name, "knn_start": None if knn_start is None else round(knn_start, 3),
        "knn_end": None if knn_end is None else round(knn_end, 3),
        "dino_by_fifth": [mean("dino", i, i + fifth) for i in range(0, steps, fifth)],
        "ibot_end": mean("ibot", steps - 20, steps), "koleo_end": mean("koleo", steps - 20, steps),
    }


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m experiments.collapse", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=("recipe", "contrastive", "supervised"))
    p.add_argument("name", nargs="?", default=None, help="row name in the output (default: the mode)")
    p.add_argument("steps", type=int)
    p.add_argument("--set", default="{}", help="JSON of dotted recipe overrides, e.g. '{\"loss.koleo_weight\": 0}'")
    p.add_argument("--config", default="configs/bundled_cpu.json")
    p.add_argument("--data", default="world:3000", help="pool source, e.g. objects:3000")
    p.add_argument("--knn", default="600,300", help="k-NN bank,query sizes of the held-out world scenes")
    p.add_argument("--monitor-objects", action="store_true",
                   help="k-NN on held-out object-centric scenes instead of ordinary world scenes")
    p.add_argument("--temperature", type=float, default=0.2, help="InfoNCE temperature")
    p.add_argument("--save", default=None, help="export the trained backbone here (HF format, as a pretraining run)")
    p.add_argument("--workers", type=int, default=2)
    return p


def main(argv: list[str] | None = None) -> dict[str, Any]:
    a = build_parser().parse_args(argv)
    cfg = apply_overrides(RecipeConfig.load(a.config), json.loads(a.set))
    cfg.steps = a.steps
    cfg.knn_train, cfg.knn_test = (int(v) for v in a.knn.split(","))
    cfg.gram.enabled = False
    pool = load_pretraining_pool(a.data, cfg.pool_size, cfg.seed, a.workers)
    if a.monitor_objects:
        held = load_pretraining_pool(f"objects:{cfg.knn_train + cfg.knn_test}", cfg.pool_size,
                                     cfg.seed + HELDOUT_SEED_OFFSET, a.workers)
        n = cfg.knn_train
        heldout = (Pool(held.images[:n], held.labels[:n]), Pool(held.images[n:], held.labels[n:]))
    else:
        heldout = load_heldout(a.data, cfg.pool_size, cfg.knn_train, cfg.knn_test, cfg.seed, a.workers)
    if a.mode == "recipe":
        trainer = Pretrainer(cfg, pool, None, None, heldout, use_gram=False, log=lambda *_: None)
    else:
        trainer = ObjectiveSwap(cfg, pool, heldout, a.mode, a.temperature)
    knn0 = trainer.knn_monitor()
    rows = [trainer.train_step() for _ in range(a.steps)]
    out = summary(a.name or a.mode, knn0, trainer.knn_monitor(), rows)
    print(json.dumps(out), flush=True)
    if a.save:
        trainer.export_backbone(a.save)
    return out


if __name__ == "__main__":
    main()
