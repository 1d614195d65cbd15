"""Cross-check with an independent DINO: lightly's DINOLoss + DINOProjectionHead (DINOv1 centring)
on this repository's backbone, crops, EMA and data. DINO only (no KoLeo, no iBOT); prints k-NN and
the CLS spread (KoLeo value) like scripts/recipe_ab.py, so the two can be compared row by row.

lightly is not a dependency of the project; install it beside the environment first:
    pip install --no-deps --target /tmp/lightly_site lightly==1.6.0
    PYTHONPATH=.:/tmp/lightly_site python scripts/lightly_crosscheck.py 150           # the recipe's crops
    PYTHONPATH=.:/tmp/lightly_site python scripts/lightly_crosscheck.py 150 noaug     # near-identical views
"""

import json
import sys
import time

import torch
from lightly.loss import DINOLoss
from lightly.models.modules import DINOProjectionHead
from recipe_ab import apply_overrides, diagnostic_trainer, summary  # scripts/ is on sys.path when run

from explorer.ssl import schedules
from explorer.ssl.config import RecipeConfig
from explorer.ssl.ema import ema_update
from explorer.ssl.losses import koleo_loss
from explorer.ssl.train import build_backbone

# two near-identical global views and nothing else
NO_AUGMENTATION = {"crops.num_local": 0, "crops.global_scale": [0.9, 1.0], "crops.jitter_p": 0.0,
                   "crops.grayscale_p": 0.0, "crops.flip_p": 0.0, "crops.blur_p": [0, 0, 0],
                   "crops.solarize_p": [0, 0, 0]}


def main() -> None:
    steps, noaug = int(sys.argv[1]), len(sys.argv) > 2
    cfg = RecipeConfig.load("configs/bundled_cpu.json")
    if noaug:
        cfg = apply_overrides(cfg, NO_AUGMENTATION)
    tr = diagnostic_trainer(cfg, 3000)  # lends its crops and its k-NN monitor only
    torch.manual_seed(0)
    head = DINOProjectionHead(192, 1024, 256, 512, freeze_last_layer=1)
    student = torch.nn.ModuleDict({"b": build_backbone(cfg.model), "h": head})
    # weight-normed heads cannot be deep-copied: build the teacher and copy the weights
    teacher = torch.nn.ModuleDict({"b": build_backbone(cfg.model), "h": DINOProjectionHead(192, 1024, 256, 512)})
    teacher.load_state_dict(student.state_dict())
    teacher.requires_grad_(False)
    loss_fn = DINOLoss(output_dim=512, warmup_teacher_temp=0.04, teacher_temp=0.04)
    opt = torch.optim.AdamW(student.parameters(), lr=cfg.optim.lr, weight_decay=0.04)
    knn0 = tr.knn_monitor()
    start = time.time()
    rows: list[dict[str, float]] = []
    b = cfg.batch_size
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = schedules.cosine(step, steps, cfg.optim.lr, 1e-6, cfg.optim.warmup_steps)
        crops, _ = tr.make_batch(step)
        views = list(crops.globals_.split(b)) + (list(crops.locals_.split(b)) if crops.locals_.shape[0] else [])
        with torch.no_grad():
            t_out = [teacher["h"](teacher["b"](pixel_values=v).last_hidden_state[:, 0]) for v in views[:2]]
        s_cls = [student["b"](pixel_values=v).last_hidden_state[:, 0] for v in views]
        loss = loss_fn(t_out, [student["h"](c) for c in s_cls], epoch=0)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), 3.0)
        head.cancel_last_layer_gradients(current_epoch=0 if step < cfg.optim.freeze_prototypes_steps else 1)
        opt.step()
        ema_update(teacher, student, schedules.cosine(step, steps, 0.99, 1.0))
        rows.append({"dino": loss.item(), "koleo": koleo_loss(s_cls[0].detach()).item()})
    tr.teacher.backbone.load_state_dict(teacher["b"].state_dict())
    name = "lightly_ref" + ("_noaug" if noaug else "")
    print(json.dumps(summary(name, knn0, tr.knn_monitor(), rows, start)), flush=True)


if __name__ == "__main__":
    main()
