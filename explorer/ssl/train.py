"""The DINOv3 pretraining loop: student/teacher `DINOv3ViTModel`s, multi-crop, DINO + iBOT +
KoLeo (+ Gram anchoring in the final phase), AdamW with schedules, EMA teacher.

Why this shape: the whole student computation is one `nn.Module.forward` (so DDP sees a
single graph), the teacher runs under `no_grad` on the global crops only, and same-size
crops go through the backbone as one batch. Every step is seeded from (seed, step, rank),
so a resumed run continues exactly as an uninterrupted one would.
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from accelerate import Accelerator
from torch import Tensor, nn
from transformers import DINOv3ViTConfig, DINOv3ViTModel

from explorer.backbone.preprocess import IMAGENET_MEAN, IMAGENET_STD
from explorer.ssl import schedules
from explorer.ssl.checkpoint import load_checkpoint, save_checkpoint
from explorer.ssl.config import ModelConfig, RecipeConfig
from explorer.ssl.crops import MultiCropAugment, pool_to_float, render_crops
from explorer.ssl.data import Pool
from explorer.ssl.ema import ema_update
from explorer.ssl.heads import DINOHead, build_heads
from explorer.ssl.knn import embed_cls, knn_top1
from explorer.ssl.losses import dino_loss, gram_anchoring_loss, ibot_loss, koleo_loss, resample_patch_tokens
from explorer.ssl.masking import sample_ibot_masks
from explorer.ssl.sinkhorn import sinkhorn_knopp

LOSS_KEYS = ("loss", "dino", "ibot", "koleo", "gram")


def backbone_config(cfg: ModelConfig) -> DINOv3ViTConfig:
    """The transformers config of the backbone described by the recipe."""
    return DINOv3ViTConfig(
        patch_size=cfg.patch_size,
        hidden_size=cfg.hidden_size,
        intermediate_size=int(round(cfg.hidden_size * cfg.mlp_ratio)),
        num_hidden_layers=cfg.num_hidden_layers,
        num_attention_heads=cfg.num_attention_heads,
        num_register_tokens=cfg.num_register_tokens,
        layerscale_value=cfg.layerscale_value,
        drop_path_rate=cfg.drop_path_rate,
        pos_embed_rescale=cfg.pos_embed_rescale,
        image_size=224,
    )


def build_backbone(cfg: ModelConfig) -> DINOv3ViTModel:
    """A randomly initialised `DINOv3ViTModel`; refuses shapes above `cfg.max_params`."""
    model = DINOv3ViTModel(backbone_config(cfg))
    n = sum(p.numel() for p in model.parameters())
    if n > cfg.max_params:
        raise ValueError(f"backbone has {n} parameters, above the configured limit {cfg.max_params}")
    return model


class SSLStudent(nn.Module):
    """Backbone + DINO head (+ iBOT head); `forward` does the student's whole step."""

    def __init__(self, cfg: RecipeConfig) -> None:
        super().__init__()
        self.backbone = build_backbone(cfg.model)
        self.backbone.set_attn_implementation("sdpa")
        dino, ibot = build_heads(cfg.model.hidden_size, cfg.head)
        self.dino_head = dino
        self.ibot_head = ibot
        self.num_prefix = 1 + cfg.model.num_register_tokens

    @property
    def patch_head(self) -> DINOHead:
        return self.ibot_head if self.ibot_head is not None else self.dino_head

    def encode(self, pixels: Tensor, masks: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """(CLS [n, D], patches [n, P, D]) after the final LayerNorm."""
        tokens = self.backbone(pixel_values=pixels, bool_masked_pos=masks).last_hidden_state
        return tokens[:, 0], tokens[:, self.num_prefix :]

    def forward(self, globals_: Tensor, masks: Tensor, locals_: Tensor) -> dict[str, Tensor]:
        cls_g, patches_g = self.encode(globals_, masks)
        cls_all = cls_g
        if locals_.shape[0] > 0:
            cls_l, _ = self.encode(locals_)
            cls_all = torch.cat([cls_g, cls_l])
        return {
            "cls_global": cls_g,
            "patches_global": patches_g,
            "dino_logits": self.dino_head(cls_all),
            "ibot_logits": self.patch_head(patches_g[masks]),
        }


@dataclass
class TeacherTargets:
    dino: Tensor  # [2, B, K]
    ibot: Tensor  # [M, K]


def _rank_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class Pretrainer:
    """Owns models, optimizer, pool and schedules; `run()` trains, checkpoints, logs, exports."""

    def __init__(
        self,
        cfg: RecipeConfig,
        pool: Pool,
        out_dir: str | Path | None = None,
        accelerator: Accelerator | None = None,
        heldout: tuple[Pool, Pool] | None = None,
        use_gram: bool = True,
        log: Callable[[str], None] = print,
    ) -> None:
        self.cfg = cfg
        self.acc = accelerator or Accelerator(cpu=not torch.cuda.is_available())
        self.device = self.acc.device
        self.cuda = self.device.type == "cuda"
        native_bf16 = self.cuda or cpu_has_native_bf16()
        self.autocast = (cfg.amp_bf16 if self.cuda else cfg.cpu_amp_bf16) and native_bf16
        self.teacher_autocast = self.autocast or (cfg.teacher_bf16 and native_bf16)
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.use_gram = use_gram and cfg.gram.enabled
        self.gram_start = cfg.gram.start_step
        self.log = log
        self.rank, self.world = _rank_world()
        if self.cuda:
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True

        torch.manual_seed(cfg.seed)  # identical initial weights on every rank
        student = SSLStudent(cfg).to(self.device)
        self.teacher = copy.deepcopy(student).eval().requires_grad_(False)
        for module in self.teacher.modules():  # head BatchNorms normalise with the batch's statistics
            if isinstance(module, nn.BatchNorm1d):
                module.train()
        self.gram_teacher: DINOv3ViTModel | None = None
        self.optimizer = torch.optim.AdamW(
            self._param_groups(student), lr=cfg.optim.lr, betas=tuple(cfg.optim.betas), **(
                {"fused": True} if self.cuda else {}
            )
        )
        self.model, self.optimizer = self.acc.prepare(student, self.optimizer)
        self.student: SSLStudent = self.acc.unwrap_model(self.model)
        if cfg.compile:
            # compile the transformer blocks in place (fixed shapes per crop size; parameter names and
            # state dicts unchanged); the heads see a varying number of masked tokens, so they stay eager
            for layer in [*self.student.backbone.model.layer, *self.teacher.backbone.model.layer]:
                layer.compile(backend=cfg.compile_backend)
        self.augment = MultiCropAugment(cfg.crops)
        self.pool = Pool(pool.images.to(self.device) if self.cuda else pool.images, pool.labels)
        self.heldout = heldout
        self.step = 0
        self.images_seen = 0
        self.train_seconds = 0.0
        self._mask_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ibot-masks")
        self._mask_futures: dict[int, Future] = {}

    # ----------------------------------------------------------------- setup
    @staticmethod
    def _param_groups(model: nn.Module) -> list[dict[str, Any]]:
        """Weight decay on matrices only (not biases, norms, LayerScale, tokens, prototypes)."""
        decay, no_decay = [], []
        for name, p in model.named_parameters():
            if p.ndim <= 1 or name.endswith("_token") or "register_tokens" in name or name.endswith("prototypes"):
                no_decay.append(p)
            else:
                decay.append(p)
        return [{"params": decay, "apply_wd": True}, {"params": no_decay, "apply_wd": False, "weight_decay": 0.0}]

    def modules_for_checkpoint(self) -> dict[str, nn.Module]:
        mods: dict[str, nn.Module] = {"student": self.student, "teacher": self.teacher}
        if self.gram_teacher is not None:
            mods["gram_teacher"] = self.gram_teacher
        return mods

    # ----------------------------------------------------------- schedules
    def schedule(self, step: int) -> dict[str, float]:
        c, o, total = self.cfg, self.cfg.optim, self.cfg.steps
        return {
            "lr": schedules.cosine(step, total, o.lr, o.min_lr, o.warmup_steps, 0.0),
            "wd": schedules.cosine(step, total, o.weight_decay_start, o.weight_decay_end),
            "momentum": schedules.cosine(step, total, o.momentum_start, o.momentum_end),
            "teacher_temp": schedules.linear_warmup(
                step, c.loss.teacher_temp_warmup_steps, c.loss.teacher_temp_start, c.loss.teacher_temp_end
            ),
        }

    def gram_active(self, step: int) -> bool:
        return self.use_gram and step >= self.gram_start

    # ---------------------------------------------------------------- step
    def _generator(self, step: int) -> torch.Generator:
        seed = (self.cfg.seed * 1_000_003 + step) * 64 + self.rank
        torch.manual_seed(seed)  # RoPE jitter and drop-path use the global generator
        g = torch.Generator(device=self.device)
        g.manual_seed(seed)
        return g

    def _masks(self, step: int) -> Tensor:
        rng = np.random.default_rng([self.cfg.seed, step, self.rank, 1])
        grid = self.cfg.crops.global_size // self.cfg.model.patch_size
        return sample_ibot_masks(2 * self.cfg.batch_size, grid, grid, self.cfg.mask, rng)[0]

    def _masks_async(self, step: int) -> Future:
        fut = self._mask_futures.pop(step, None)
        if fut is None:
            fut = self._mask_executor.submit(self._masks, step)
        self._mask_futures = {step + 1: self._mask_executor.submit(self._masks, step + 1)}
        return fut

    def batch_indices(self, step: int) -> Tensor:
        """Pool indices of the images in step `step`'s batch (the ones `make_batch` crops)."""
        rng = np.random.default_rng([self.cfg.seed, step, self.rank, 0])
        return torch.from_numpy(rng.integers(0, len(self.pool), size=self.cfg.batch_size))

    def make_batch(self, step: int) -> tuple[Any, Tensor]:
        """Crops and iBOT masks of one step (deterministic in (seed, step, rank)).

        On a GPU the (numpy) block masks of the next step are made in a background thread
        while this step runs; on CPU that would only compete for the same cores.
        """
        g = self._generator(step)
        fut = self._masks_async(step) if self.cuda else None
        idx = self.batch_indices(step)
        images = pool_to_float(self.pool.images, idx).to(self.device, non_blocking=True)
        crops = self.augment(images, g)
        masks = fut.result() if fut is not None else self._masks(step)
        return crops, masks.to(self.device, non_blocking=True)

    @torch.no_grad()
    def teacher_targets(self, globals_: Tensor, masks: Tensor, temp: float) -> TeacherTargets:
        t = self.teacher
        cls, patches = t.encode(globals_)
        dino_scores = t.dino_head(cls)
        ibot_scores = t.patch_head(patches[masks])
        it = self.cfg.loss.sinkhorn_iterations
        dino = sinkhorn_knopp(dino_scores, temp, it).view(2, -1, dino_scores.shape[-1])
        return TeacherTargets(dino, sinkhorn_knopp(ibot_scores, temp, it))

    @torch.no_grad()
    def gram_targets(self, crops: Any) -> Tensor:
        """Gram teacher patch features of the global crops at `resolution_factor`x, on the student grid."""
        assert self.gram_teacher is not None
        c = self.cfg
        size = int(round(c.crops.global_size * c.gram.resolution_factor / c.model.patch_size)) * c.model.patch_size
        hi = render_crops(crops.source_images, crops.global_params, size)
        tokens = self.gram_teacher(pixel_values=hi).last_hidden_state[:, 1 + c.model.num_register_tokens :]
        g_hi = size // c.model.patch_size
        g_lo = c.crops.global_size // c.model.patch_size
        return resample_patch_tokens(tokens.float(), (g_hi, g_hi), (g_lo, g_lo))

    def refresh_gram_teacher(self) -> None:
        """Snapshot the EMA teacher's backbone as the frozen Gram teacher."""
        if self.gram_teacher is None:
            self.gram_teacher = copy.deepcopy(self.teacher.backbone).eval().requires_grad_(False)
        else:
            self.gram_teacher.load_state_dict(self.teacher.backbone.state_dict())

    def losses(self, step: int, crops: Any, masks: Tensor, sched: dict[str, float]) -> dict[str, Tensor]:
        """All loss terms of one step (weighted total under "loss")."""
        c = self.cfg
        b = c.batch_size
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.teacher_autocast):
            targets = self.teacher_targets(crops.globals_, masks, sched["teacher_temp"])
            gram_target = self.gram_targets(crops) if self.gram_active(step) else None
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast):
            out = self.model(crops.globals_, masks, crops.locals_)
            n_crops = 2 + c.crops.num_local
            dino = dino_loss(out["dino_logits"].view(n_crops, b, -1), targets.dino, c.loss.student_temp)
            ibot = ibot_loss(out["ibot_logits"], targets.ibot, masks, c.loss.student_temp)
            koleo = sum(koleo_loss(x) for x in out["cls_global"].chunk(2))
            total = c.loss.dino_weight * dino + c.loss.ibot_weight * ibot + c.loss.koleo_weight * koleo
            gram = torch.zeros((), device=self.device)
            if gram_target is not None:
                gram = gram_anchoring_loss(out["patches_global"], gram_target)
                total = total + c.gram.weight * gram
        return {"loss": total, "dino": dino, "ibot": ibot, "koleo": koleo, "gram": gram}

    def train_step(self) -> dict[str, float]:
        """One optimisation step; returns the logged values."""
        c, step = self.cfg, self.step
        if self.gram_active(step):
            since = step - self.gram_start
            if self.gram_teacher is None or (since > 0 and since % c.gram.refresh_every == 0):
                self.refresh_gram_teacher()
        sched = self.schedule(step)
        for group in self.optimizer.param_groups:
            group["lr"] = sched["lr"]
            group["weight_decay"] = sched["wd"] if group.get("apply_wd", True) else 0.0
        self.model.train()
        crops, masks = self.make_batch(step)
        terms = self.losses(step, crops, masks, sched)
        self.optimizer.zero_grad(set_to_none=True)
        self.acc.backward(terms["loss"])
        grad_norm = self.acc.clip_grad_norm_(self.model.parameters(), c.optim.clip_grad)
        if step < c.optim.freeze_prototypes_steps:
            for head in (self.student.dino_head, self.student.ibot_head):
                if head is not None:
                    head.prototypes.grad = None
        self.optimizer.step()
        ema_update(self.teacher, self.student, sched["momentum"])
        self.step += 1
        self.images_seen += c.batch_size * self.world
        values = torch.stack([terms[k].detach().float() for k in LOSS_KEYS] + [torch.as_tensor(grad_norm).float().to(self.device)])
        vals = values.tolist()
        rec = {"step": self.step, **dict(zip(LOSS_KEYS, vals[:-1], strict=True)), "grad_norm": vals[-1], **sched}
        rec["gram_active"] = self.gram_active(step)
        rec["n_masked"] = int(masks.sum())
        return rec

    # ------------------------------------------------------------- monitor
    def knn_monitor(self) -> float | None:
        """k-NN top-1 of the teacher backbone's CLS on the held-out split (None without labels)."""
        if self.heldout is None:
            return None
        bank, query = self.heldout
        c = self.cfg
        fb = embed_cls(self.teacher.backbone, bank.images, c.knn_size, self.device, autocast=self.teacher_autocast)
        fq = embed_cls(self.teacher.backbone, query.images, c.knn_size, self.device, autocast=self.teacher_autocast)
        return knn_top1(fb, bank.labels, fq, query.labels, c.knn_k, c.knn_temperature)

    # ------------------------------------------------------------ persistence
    def state(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "images_seen": self.images_seen,
            "train_seconds": self.train_seconds,
            "gram_start": self.gram_start,
            "use_gram": self.use_gram,
            "world_size": self.world,
            "schedule": self.schedule_lengths(),
            "rng_note": "every step re-seeds from (seed, step, rank); no generator state is needed",
        }

    def save(self, path: str | Path) -> None:
        if self.acc.is_main_process:
            save_checkpoint(path, self.modules_for_checkpoint(), self.optimizer, self.state())
        self.acc.wait_for_everyone()

    def load(self, path: str | Path, weights_only: bool = False) -> dict[str, Any]:
        """Restore a checkpoint; `weights_only` keeps this run's Gram settings (phase start)."""
        path = Path(path)
        if (path / "gram_teacher.safetensors").exists() and self.gram_teacher is None:
            self.gram_teacher = copy.deepcopy(self.teacher.backbone).eval().requires_grad_(False)
        state = load_checkpoint(path, self.modules_for_checkpoint(), self.optimizer)
        self.step = int(state["step"])
        self.images_seen = int(state.get("images_seen", 0))
        self.train_seconds = float(state.get("train_seconds", 0.0))
        if "schedule" in state:  # a run fitted to its time budget keeps its fitted schedule
            self.set_schedule_lengths(state["schedule"])
        if not weights_only:
            self.gram_start = int(state.get("gram_start", self.gram_start))
        return state

    # ------------------------------------------------------- schedule fitting
    def schedule_lengths(self) -> dict[str, int]:
        c = self.cfg
        return {
            "steps": c.steps,
            "warmup_steps": c.optim.warmup_steps,
            "teacher_temp_warmup_steps": c.loss.teacher_temp_warmup_steps,
            "freeze_prototypes_steps": c.optim.freeze_prototypes_steps,
            "gram_start_step": c.gram.start_step,
            "gram_refresh_every": c.gram.refresh_every,
        }

    def set_schedule_lengths(self, s: dict[str, int]) -> None:
        c = self.cfg
        c.steps = int(s["steps"])
        c.optim.warmup_steps = int(s["warmup_steps"])
        c.loss.teacher_temp_warmup_steps = int(s["teacher_temp_warmup_steps"])
        c.optim.freeze_prototypes_steps = int(s["freeze_prototypes_steps"])
        c.gram.start_step = int(s["gram_start_step"])
        c.gram.refresh_every = int(s["gram_refresh_every"])
        self.gram_start = c.gram.start_step

    def fit_schedule(self, total: int) -> None:
        """Resize the run to `total` steps, scaling every step-count of the recipe by the same factor
        (warm-ups, Gram phase start and refresh), so a time-bounded run still completes its recipe."""
        c = self.cfg
        if total == c.steps:
            return
        f = total / c.steps
        scaled = {k: max(1, int(round(v * f))) for k, v in self.schedule_lengths().items()}
        scaled["steps"] = total
        scaled["gram_start_step"] = max(scaled["gram_start_step"], self.step)
        self.set_schedule_lengths(scaled)

    def gram_cost_ratio(self) -> float:
        """Estimated cost of a Gram-phase step relative to a main-phase step (FLOPs incl. attention)."""
        c, m = self.cfg, self.cfg.model
        d, prefix = m.hidden_size, 1 + m.num_register_tokens

        def cost(size: int) -> float:
            t = (size // m.patch_size) ** 2 + prefix
            return t * (12 * d * d + 2 * t * d)

        hi = int(round(c.crops.global_size * c.gram.resolution_factor / m.patch_size)) * m.patch_size
        student = 3 * (2 * cost(c.crops.global_size) + c.crops.num_local * cost(c.crops.local_size))
        teacher = 2 * cost(c.crops.global_size)
        return (student + teacher + 2 * cost(hi)) / (student + teacher)

    def _fitted_total(self, step_s: float, seconds_left: float, knn_s: float) -> int:
        c = self.cfg
        n_left = c.steps - self.step
        gram_steps = max(0, c.steps - max(self.gram_start, self.step)) if self.use_gram else 0
        q = gram_steps / max(n_left, 1)
        per_step = step_s * (1 + q * (self.gram_cost_ratio() - 1))
        if c.knn_every and knn_s > 0:
            per_step += knn_s / c.knn_every
        if c.checkpoint_every:
            per_step += 2.0 / c.checkpoint_every  # rough checkpoint cost
        fit = self.step + int(max(seconds_left, 0.0) * 0.95 / per_step)
        value = torch.tensor(float(fit), device=self.device)
        if self.world > 1:
            dist.all_reduce(value, op=dist.ReduceOp.MIN)
        return int(value.item())

    def export_backbone(self, out: str | Path) -> Path:
        """Teacher backbone in Hugging Face format (safetensors) + an ImageNet preprocessor config."""
        out = Path(out)
        if self.acc.is_main_process:
            out.mkdir(parents=True, exist_ok=True)
            self.teacher.backbone.save_pretrained(out)
            size = self.cfg.crops.global_size
            (out / "preprocessor_config.json").write_text(json.dumps(preprocessor_config(size), indent=2))
        self.acc.wait_for_everyone()
        return out

    # ------------------------------------------------------------------ run
    def run(self, total_steps: int | None = None, minutes: float | None = None, progress: bool = True,
            fit: bool = False, probe_steps: int = 12) -> dict[str, Any]:
        """Train to `total_steps` (default cfg.steps) or until `minutes` of wall time; checkpoint and log.

        With `fit` and `minutes`, the first `probe_steps` steps (and one k-NN pass) are timed and the
        schedule is shrunk (`fit_schedule`) to what fits in the budget; `minutes` still stops hard.
        """
        from tqdm.auto import tqdm

        c = self.cfg
        if total_steps:
            c.steps = total_steps
        total = c.steps
        durations: list[float] = []
        # only a fresh run is fitted: a resumed or Gram-phase run keeps its checkpoint's schedule
        fitted = not (fit and minutes) or self.step > 0
        main = self.acc.is_main_process
        out = self.out_dir
        log_f = None
        if out is not None and main:
            out.mkdir(parents=True, exist_ok=True)
            c.save(out / "config.json")
            log_f = (out / "log.jsonl").open("a")
        t0 = time.time()
        bar = tqdm(total=total, initial=self.step, disable=not (main and progress), dynamic_ncols=True)
        last: dict[str, Any] = {}
        stop_reason = "steps"
        try:
            while self.step < total:
                if out is not None and self.use_gram and self.step == self.gram_start and self.step > 0:
                    self.save(out / "checkpoint_pre_gram")
                ts = time.time()
                rec = self.train_step()
                self.train_seconds += time.time() - ts
                durations.append(time.time() - ts)
                if not fitted and len(durations) >= probe_steps:
                    fitted = True
                    tk = time.time()
                    if main and c.knn_every:
                        acc = self.knn_monitor()
                        if acc is not None:
                            rec["knn_top1"] = acc
                    knn_s = time.time() - tk
                    step_s = float(np.median(durations[min(2, len(durations) - 1):]))
                    assert minutes is not None
                    new_total = self._fitted_total(step_s, minutes * 60.0 - (time.time() - t0), knn_s)
                    if new_total != total:
                        self.fit_schedule(new_total)
                        total = c.steps
                        bar.total = total
                        if main and out is not None:
                            c.save(out / "config.json")
                        if main:
                            self.log(f"fitted to {minutes} min: {total} steps at {step_s:.2f} s/step "
                                     f"(Gram phase from step {self.gram_start if self.use_gram else '-'})")
                    rec["fitted_steps"] = total
                rec["images_seen"] = self.images_seen
                rec["wall_s"] = round(time.time() - t0, 2)
                if c.knn_every and (self.step % c.knn_every == 0 or self.step == total) and main and "knn_top1" not in rec:
                    acc = self.knn_monitor()
                    if acc is not None:
                        rec["knn_top1"] = acc
                if log_f is not None and (self.step % c.log_every == 0 or "knn_top1" in rec):
                    log_f.write(json.dumps(rec) + "\n")
                    log_f.flush()
                last = rec
                bar.update(1)
                bar.set_postfix(loss=f"{rec['loss']:.3f}", dino=f"{rec['dino']:.3f}", ibot=f"{rec['ibot']:.3f}",
                                lr=f"{rec['lr']:.1e}", refresh=False)
                if not math.isfinite(rec["loss"]):
                    raise FloatingPointError(f"non-finite loss at step {self.step}: {rec}")
                if out is not None and c.checkpoint_every and self.step % c.checkpoint_every == 0:
                    self.save(out / "checkpoint")
                if minutes is not None and self._should_stop(t0, minutes):
                    stop_reason = "minutes"
                    break
        finally:
            bar.close()
            if log_f is not None:
                log_f.close()
        if out is not None:
            self.save(out / "checkpoint")
            self.export_backbone(out / "backbone")
        return {"step": self.step, "stop_reason": stop_reason, "wall_s": time.time() - t0, "last": last}

    def _should_stop(self, t0: float, minutes: float) -> bool:
        """All ranks must agree, or the ones that continue would hang in the next all_reduce."""
        flag = torch.tensor(float(time.time() - t0 >= minutes * 60.0), device=self.device)
        if self.world > 1:
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())


def cpu_has_native_bf16() -> bool:
    """True where the CPU computes bf16 natively (avx512_bf16 or AMX); elsewhere bf16 is emulated and slow."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def preprocessor_config(size: int) -> dict[str, Any]:
    """ImageNet-normalised preprocessing, as the released DINOv3 checkpoints ship it."""
    return {
        "image_processor_type": "DINOv3ViTImageProcessor",
        "do_resize": True,
        "size": {"height": size, "width": size},
        "resample": 2,
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "image_mean": list(IMAGENET_MEAN),
        "image_std": list(IMAGENET_STD),
    }
