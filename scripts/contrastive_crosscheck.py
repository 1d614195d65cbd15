"""Cross-check of the shared machinery with a loss known to learn fast: SimCLR's InfoNCE.

Why: when DINO stays at chance, either the DINO-specific parts (head, Sinkhorn-Knopp, EMA loop) are
slow to start at this scale, or the shared parts (backbone, crops, optimiser, data) are at fault.
InfoNCE on the recipe's two global crops, the same backbone, AdamW and k-NN monitor needs no teacher
and no bootstrapping; if it lifts k-NN where DINO does not, the shared parts are sound.

    PYTHONPATH=. python scripts/contrastive_crosscheck.py 150                      # world scenes
    PYTHONPATH=. python scripts/contrastive_crosscheck.py 150 --data objects:3000  # object-centric

`--supervised` replaces InfoNCE by cross-entropy on the pool's class labels (a linear classifier on
the CLS token of each global view): not pretraining, an upper bound on what the same backbone,
crops and optimiser can put into the CLS token in the same number of steps.
"""

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from recipe_ab import diagnostic_trainer, summary  # scripts/ is on sys.path when run

from explorer.ssl import schedules
from explorer.ssl.config import RecipeConfig
from explorer.ssl.data import HELDOUT_SEED_OFFSET, Pool, load_source
from explorer.ssl.losses import koleo_loss
from explorer.ssl.train import preprocessor_config


def info_nce(a: torch.Tensor, b: torch.Tensor, temperature: float) -> torch.Tensor:
    """NT-Xent over 2B embeddings: each view's positive is the other view of its image."""
    z = F.normalize(torch.cat([a, b]), dim=1)
    sim = z @ z.t() / temperature
    sim.fill_diagonal_(float("-inf"))
    n = a.shape[0]
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)])
    return F.cross_entropy(sim, target)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("steps", type=int)
    parser.add_argument("--data", default=None)
    parser.add_argument("--temperature", type=float, default=0.2)
    parser.add_argument("--monitor-objects", action="store_true",
                        help="k-NN on held-out object-centric scenes instead of ordinary world scenes")
    parser.add_argument("--supervised", action="store_true", help="cross-entropy on class labels (upper bound)")
    parser.add_argument("--save", default=None, help="save the trained backbone here (HF format) for backbone_report")
    args = parser.parse_args()
    cfg = RecipeConfig.load("configs/bundled_cpu.json")
    cfg.crops.num_local = 0  # two global views, as SimCLR
    tr = diagnostic_trainer(cfg, 3000, args.data)  # lends its backbone, crops and k-NN monitor
    if args.monitor_objects:
        held = load_source("objects:900", cfg.pool_size, cfg.seed + HELDOUT_SEED_OFFSET, 2)
        tr.heldout = (Pool(held.images[:600], held.labels[:600]), Pool(held.images[600:], held.labels[600:]))
    backbone = tr.student.backbone
    if args.supervised:
        proj = torch.nn.Linear(192, int(tr.pool.labels.max()) + 1)
    else:
        proj = torch.nn.Sequential(torch.nn.Linear(192, 512), torch.nn.GELU(), torch.nn.Linear(512, 128))
    params = list(backbone.parameters()) + list(proj.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.optim.lr, weight_decay=0.05)
    knn0 = tr.knn_monitor()
    start = time.time()
    rows: list[dict[str, float]] = []
    b = cfg.batch_size
    for step in range(args.steps):
        for group in opt.param_groups:
            group["lr"] = schedules.cosine(step, args.steps, cfg.optim.lr, 1e-6, cfg.optim.warmup_steps)
        crops, _ = tr.make_batch(step)
        v1, v2 = crops.globals_.split(b)
        c1 = backbone(pixel_values=v1).last_hidden_state[:, 0]
        c2 = backbone(pixel_values=v2).last_hidden_state[:, 0]
        if args.supervised:
            labels = tr.pool.labels[tr.batch_indices(step)]
            loss = (F.cross_entropy(proj(c1), labels) + F.cross_entropy(proj(c2), labels)) / 2
        else:
            loss = info_nce(proj(c1), proj(c2), args.temperature)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 3.0)
        opt.step()
        # "dino" is the summary's loss column; here it holds InfoNCE (log(2B-1) = 4.14 at chance for
        # B=32) or the cross-entropy on labels (log 64 = 4.16 at chance)
        rows.append({"dino": loss.item(), "koleo": koleo_loss(c1.detach()).item()})
    tr.teacher.backbone.load_state_dict(backbone.state_dict())  # the monitor embeds with the teacher
    name = ("supervised" if args.supervised else "infonce") + (f"_{args.data}" if args.data else "")
    name += "_objects_monitor" if args.monitor_objects else ""
    print(json.dumps(summary(name, knn0, tr.knn_monitor(), rows, start)), flush=True)
    if args.save:  # the layout a pretraining run exports, so backbone_report and the app load it
        backbone.save_pretrained(args.save)
        config = json.dumps(preprocessor_config(cfg.crops.global_size), indent=2)
        (Path(args.save) / "preprocessor_config.json").write_text(config)


if __name__ == "__main__":
    main()
