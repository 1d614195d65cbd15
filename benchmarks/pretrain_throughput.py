"""Images/s of the full DINOv3 SSL step vs a bare forward+backward of the same student, same crops.

The SSL step = teacher forward (global crops, no grad) + Sinkhorn-Knopp, student forward on
all crops (globals masked for iBOT), DINO + iBOT + KoLeo losses, backward, gradient clipping,
AdamW step, EMA update. The bare step = the student backbone's forward on the same global and
local crops, a mean-square loss on its outputs, backward (no heads, no teacher, no optimizer).
Crop generation is EXCLUDED from both (crops and masks are made once, before timing); the
crop+mask time per step is reported separately (`crops_ms_per_step`). Timings interleave
the steps (A B C A B C ...); wall figures are the best of the repeats (as `timeit` does: the
run least disturbed by other jobs), CPU-time figures (`*_cpu_time`) are medians of this
process's CPU seconds, which other jobs on shared cores barely affect.

  OMP_NUM_THREADS=2 .venv/bin/python benchmarks/pretrain_throughput.py --config configs/tiny_cpu.json --batch 16

Prints one JSON object: ssl_images_per_s, bare_images_per_s, overhead (= bare/ssl - 1, target <= 0.35),
and the same for the Gram phase (gram_images_per_s, overhead_gram_phase).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from explorer.ssl.config import RecipeConfig  # noqa: E402
from explorer.ssl.data import load_pretraining_pool  # noqa: E402
from explorer.ssl.train import Pretrainer  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="configs/tiny_cpu.json")
    p.add_argument("--batch", type=int, default=16, help="images per step (config crop sizes are kept)")
    p.add_argument("--repeats", type=int, default=4)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    cfg = RecipeConfig.load(args.config)
    cfg.batch_size = args.batch
    cfg.gram.start_step = 10**9  # main phase unless asked below
    trainer = Pretrainer(cfg, load_pretraining_pool("random:64", cfg.pool_size, seed=0))
    dev = trainer.device
    trainer.step = cfg.optim.freeze_prototypes_steps + cfg.optim.warmup_steps  # a mid-run step

    t0 = time.perf_counter()
    for _ in range(2):
        crops, masks = trainer.make_batch(trainer.step)
    _sync(dev)
    crops_ms = (time.perf_counter() - t0) / 2 * 1000
    trainer.make_batch = lambda step: (crops, masks)  # same crops for every timed step

    backbone = trainer.student.backbone
    params = [q for q in trainer.model.parameters() if q.requires_grad]

    def bare() -> None:
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=trainer.autocast):
            g = backbone(pixel_values=crops.globals_).last_hidden_state
            loss = g.float().pow(2).mean()
            if crops.locals_.shape[0]:
                loss = loss + backbone(pixel_values=crops.locals_).last_hidden_state.float().pow(2).mean()
        loss.backward()
        for q in params:
            q.grad = None

    def ssl() -> None:
        trainer.train_step()
        trainer.step -= 1  # keep the schedules (and phase) fixed

    def gram() -> None:
        trainer.gram_start = 0
        if trainer.gram_teacher is None:
            trainer.refresh_gram_teacher()
        trainer.train_step()
        trainer.step -= 1
        trainer.gram_start = 10**9

    cpu: dict[str, list[float]] = {"bare": [], "ssl": [], "gram": []}

    def timed(name: str, fn) -> float:
        _sync(dev)
        t, c = time.perf_counter(), time.process_time()
        fn()
        _sync(dev)
        cpu[name].append(time.process_time() - c)
        return time.perf_counter() - t

    for _ in range(args.warmup):
        bare(), ssl(), gram()
    times: dict[str, list[float]] = {"bare": [], "ssl": [], "gram": []}
    for _ in range(args.repeats):
        for name, fn in (("bare", bare), ("ssl", ssl), ("gram", gram)):
            times[name].append(timed(name, fn))
    med = {k: min(v) for k, v in times.items()}
    med_cpu = {k: statistics.median(v[-args.repeats :]) for k, v in cpu.items()}
    b = cfg.batch_size
    result = {
        "ssl_images_per_s": round(b / med["ssl"], 3),
        "bare_images_per_s": round(b / med["bare"], 3),
        "overhead": round(med["ssl"] / med["bare"] - 1, 4),
        "gram_images_per_s": round(b / med["gram"], 3),
        "overhead_gram_phase": round(med["gram"] / med["bare"] - 1, 4),
        # process CPU seconds per step: robust to other jobs sharing the cores (waiting costs no CPU time)
        "overhead_cpu_time": round(med_cpu["ssl"] / med_cpu["bare"] - 1, 4),
        "overhead_gram_phase_cpu_time": round(med_cpu["gram"] / med_cpu["bare"] - 1, 4),
        "crops_ms_per_step": round(crops_ms, 1),
        "crop_generation_included": False,
        "config": args.config,
        "batch": b,
        "crops": f"2x{cfg.crops.global_size}px + {cfg.crops.num_local}x{cfg.crops.local_size}px",
        "device": str(dev) if dev.type != "cuda" else torch.cuda.get_device_name(),
        "threads": torch.get_num_threads(),
        "repeats": args.repeats,
        "step_seconds": {k: [round(x, 3) for x in v] for k, v in times.items()},
        "step_cpu_seconds": {k: [round(x, 3) for x in v[-args.repeats :]] for k, v in cpu.items()},
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
