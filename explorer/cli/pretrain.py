"""`python -m explorer pretrain`: train a small DINOv3 on the offline world or an image folder.

Examples:
  python -m explorer pretrain --config configs/tiny_cpu.json --data world:4000 --out runs/tiny
  python -m explorer pretrain --config configs/tiny_cpu.json --data world:4000 --out runs/tiny --resume
  # Gram ablation from the same checkpoint:
  python -m explorer pretrain ... --gram-phase-from runs/tiny/checkpoint_pre_gram --out runs/gram
  python -m explorer pretrain ... --gram-phase-from runs/tiny/checkpoint_pre_gram --no-gram --out runs/nogram
  # two CPU processes:
  torchrun --nproc_per_node 2 -m explorer pretrain --config configs/smoke.json --data random:64 --out runs/ddp
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch
import torch.distributed as dist


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m explorer pretrain", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="recipe JSON (configs/*.json)")
    p.add_argument("--data", required=True, help="world:N | objects:N | random:N | an ImageFolder directory; join with + to mix")
    p.add_argument("--out", required=True, help="run directory (checkpoints, log.jsonl, backbone/)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint if present")
    p.add_argument("--steps", type=int, default=None, help="total steps (overrides the config; sets the schedules)")
    p.add_argument("--minutes", type=float, default=None,
                   help="stop cleanly (checkpoint + backbone) after this much training-loop wall time "
                        "(pool generation and model set-up are not counted)")
    p.add_argument("--fit", action="store_true",
                   help="with --minutes, on a fresh run: time the first steps, then scale the schedule "
                        "(steps, warm-ups, Gram phase) to what fits in the budget (shrink or grow)")
    p.add_argument("--batch-size", type=int, default=None, help="images per process per step (overrides the config)")
    p.add_argument("--gram-phase-from", default=None,
                   help="start from this checkpoint; the Gram phase begins at its step")
    p.add_argument("--no-gram", action="store_true", help="disable Gram anchoring (ablation)")
    p.add_argument("--workers", type=int, default=None, help="processes generating world scenes")
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from accelerate import Accelerator

    from explorer.ssl.config import RecipeConfig
    from explorer.ssl.data import load_heldout, load_pretraining_pool, split_folder
    from explorer.ssl.train import Pretrainer

    cfg = RecipeConfig.load(args.config)
    if args.steps is not None:
        cfg.steps = args.steps
    if args.batch_size is not None:
        cfg.batch_size = args.batch_size
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    acc = Accelerator(cpu=not torch.cuda.is_available())
    say = print if acc.is_main_process else (lambda *_a, **_k: None)
    try:
        pool = load_pretraining_pool(args.data, cfg.pool_size, cfg.seed, args.workers)
        heldout = load_heldout(args.data, cfg.pool_size, cfg.knn_train, cfg.knn_test, cfg.seed, args.workers)
        if heldout is None and not args.data.startswith(("world:", "objects:", "random:")) and "+" not in args.data:
            pool, heldout = split_folder(pool, 0.2, cfg.knn_train, cfg.knn_test, cfg.seed)
        say(f"pool: {len(pool)} images {tuple(pool.images.shape[1:])}; device {acc.device}; "
            f"processes {acc.num_processes}; k-NN monitor: {'yes' if heldout else 'no'}")
        trainer = Pretrainer(cfg, pool, args.out, acc, heldout, use_gram=not args.no_gram)
        out = Path(args.out)
        if args.gram_phase_from:
            state = trainer.load(args.gram_phase_from, weights_only=True)
            trainer.gram_start = int(state["step"])
            trainer.gram_teacher = None  # the phase starts with a fresh snapshot of the EMA teacher
            say(f"Gram phase from {args.gram_phase_from} at step {trainer.step} (gram={'off' if args.no_gram else 'on'})")
        elif args.resume and (out / "checkpoint" / "state.json").exists():
            trainer.load(out / "checkpoint")
            trainer.use_gram = trainer.use_gram and not args.no_gram
            say(f"resumed at step {trainer.step}")
        if args.steps is not None:  # an explicit --steps wins over a checkpoint's (fitted) length
            cfg.steps = args.steps
        n = sum(p.numel() for p in trainer.student.backbone.parameters())
        say(f"backbone parameters: {n / 1e6:.2f} M; steps {trainer.step} -> {cfg.steps}")
        result = trainer.run(cfg.steps, args.minutes, progress=not args.no_progress, fit=args.fit)
        if acc.is_main_process:
            summary = {k: v for k, v in result.items() if k != "last"} | {"last": result["last"]}
            (out / "summary.json").write_text(json.dumps(summary, indent=2))
            say(json.dumps({k: result[k] for k in ("step", "stop_reason")} | {"backbone": str(out / "backbone")}))
    finally:
        if distributed and dist.is_initialized():
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
