"""The training loop end to end on a tiny model: learning, exact resume, export, CLI, 2 processes."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModel

from explorer.ssl.config import RecipeConfig
from explorer.ssl.data import load_pretraining_pool
from explorer.ssl.train import Pretrainer, build_backbone

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "configs" / "smoke.json"


def _smoke(**overrides: object) -> RecipeConfig:
    cfg = RecipeConfig.load(SMOKE)
    for k, v in overrides.items():
        setattr(cfg, k, v)
    return cfg


def test_configs_load_and_models_fit_the_budget() -> None:
    for path in sorted((ROOT / "configs").glob("*.json")):
        cfg = RecipeConfig.load(path)
        assert RecipeConfig.from_dict(cfg.to_dict()) == cfg
    for name in ("tiny_cpu", "tiny_gpu"):
        cfg = RecipeConfig.load(ROOT / "configs" / f"{name}.json")
        model = build_backbone(cfg.model)
        n = sum(p.numel() for p in model.parameters())
        assert 4_000_000 < n <= 6_000_000
        assert model.config.num_register_tokens == 4 and model.config.patch_size == 16
    with pytest.raises(ValueError):
        RecipeConfig.from_dict({"crops": {"global_sise": 3}})


def test_short_run_lowers_the_loss() -> None:
    torch.manual_seed(0)
    cfg = _smoke(steps=30)
    cfg.gram.enabled = False
    trainer = Pretrainer(cfg, load_pretraining_pool("random:16", cfg.pool_size, seed=1))
    batch = trainer.make_batch(0)
    trainer.make_batch = lambda step: batch  # fixed batch: the loss must go down
    losses = [trainer.train_step() for _ in range(cfg.steps)]
    first = sum(r["loss"] for r in losses[:3]) / 3
    last = sum(r["loss"] for r in losses[-3:]) / 3
    assert last < first - 0.5, (first, last)
    assert losses[-1]["ibot"] < losses[0]["ibot"]


def _weights(trainer: Pretrainer) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in trainer.teacher.state_dict().items()} | {
        "s." + k: v.clone() for k, v in trainer.student.state_dict().items()
    }


def test_resume_continues_exactly(tmp_path: Path) -> None:
    cfg = _smoke(steps=6)
    cfg.gram.start_step = 3  # the Gram teacher must survive the checkpoint too
    cfg.gram.refresh_every = 2
    pool = load_pretraining_pool("random:16", cfg.pool_size, seed=1)
    straight = Pretrainer(cfg, pool)
    for _ in range(6):
        straight.train_step()
    first = Pretrainer(cfg, pool)
    for _ in range(4):
        first.train_step()
    first.save(tmp_path / "ckpt")
    resumed = Pretrainer(cfg, pool)
    state = resumed.load(tmp_path / "ckpt")
    assert state["step"] == 4 and resumed.gram_teacher is not None
    for _ in range(2):
        resumed.train_step()
    a, b = _weights(straight), _weights(resumed)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-6), k


def test_run_writes_log_checkpoint_and_loadable_backbone(tmp_path: Path) -> None:
    from explorer.cli.pretrain import main

    out = tmp_path / "run"
    assert main(["--config", str(SMOKE), "--data", "random:16", "--out", str(out), "--steps", "4", "--no-progress"]) == 0
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4]
    for key in ("loss", "dino", "ibot", "koleo", "gram", "lr", "wd", "momentum", "teacher_temp"):
        assert all(isinstance(r[key], float) for r in log), key
    assert not any(p.suffix in {".pt", ".pth", ".bin", ".pkl"} for p in out.rglob("*"))
    assert (out / "checkpoint" / "optimizer.safetensors").exists()
    prep = json.loads((out / "backbone" / "preprocessor_config.json").read_text())
    assert prep["image_mean"] == [0.485, 0.456, 0.406]
    model = AutoModel.from_pretrained(out / "backbone").eval()
    assert type(model).__name__ == "DINOv3ViTModel" and model.config.num_register_tokens == 4
    # it is the teacher: same outputs as the checkpointed teacher backbone
    cfg = RecipeConfig.load(out / "config.json")
    trainer = Pretrainer(cfg, load_pretraining_pool("random:4", cfg.pool_size))
    trainer.load(out / "checkpoint")
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        ref = trainer.teacher.backbone.eval()(pixel_values=x).last_hidden_state
        got = model(pixel_values=x).last_hidden_state
    assert torch.allclose(ref, got, atol=1e-5)
    # resuming past the end is a no-op that still succeeds; a Gram phase from the checkpoint runs on
    assert main(["--config", str(SMOKE), "--data", "random:16", "--out", str(out), "--steps", "4", "--resume",
                 "--no-progress"]) == 0
    for flag in ([], ["--no-gram"]):
        o2 = tmp_path / ("gram" if not flag else "nogram")
        assert main(["--config", str(SMOKE), "--data", "random:16", "--out", str(o2), "--steps", "6",
                     "--gram-phase-from", str(out / "checkpoint"), "--no-progress", *flag]) == 0
        log2 = [json.loads(line) for line in (o2 / "log.jsonl").read_text().splitlines()]
        assert [r["step"] for r in log2] == [5, 6]
        assert all(r["gram_active"] == (not flag) for r in log2)
        assert all((r["gram"] > 0) == (not flag) for r in log2)


@pytest.mark.slow
def test_two_cpu_processes_with_torchrun(tmp_path: Path) -> None:
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or shutil.which("torchrun")
    assert torchrun is not None
    out = tmp_path / "ddp"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [torchrun, "--nproc_per_node", "2", "--master_port", "29517", "-m", "explorer", "pretrain",
         "--config", str(SMOKE), "--data", "random:32", "--out", str(out), "--steps", "3", "--no-progress"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "processes 2" in proc.stdout
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3]
    assert log[-1]["images_seen"] == 3 * 2 * 8  # both ranks contribute their batch
    assert (out / "backbone" / "model.safetensors").exists()


def test_prefetched_masks_equal_direct_ones() -> None:
    """The GPU path makes the next step's masks in a thread; they must be the ones of that step."""
    cfg = _smoke()
    trainer = Pretrainer(cfg, load_pretraining_pool("random:8", cfg.pool_size))
    direct = [trainer._masks(s) for s in (3, 4, 9)]
    got = [trainer._masks_async(s).result() for s in (3, 4, 9)]  # 4 comes from the prefetch of 3
    for a, b in zip(direct, got, strict=True):
        assert torch.equal(a, b)
    assert not torch.equal(direct[0], direct[1])


def test_fit_schedule_scales_every_step_count() -> None:
    cfg = _smoke(steps=1000)
    cfg.optim.warmup_steps, cfg.loss.teacher_temp_warmup_steps = 100, 300
    cfg.gram.start_step, cfg.gram.refresh_every = 800, 50
    cfg.checkpoint_every = 0  # no checkpoint time: the whole budget is steps
    trainer = Pretrainer(cfg, load_pretraining_pool("random:8", cfg.pool_size))
    ratio = trainer.gram_cost_ratio()
    assert ratio > 1.5  # the Gram teacher sees 2x resolution: 4x the patches of each global crop
    n = trainer._fitted_total(0.1, 100.0, 0.0)
    # the fitted run, main phase at 0.1 s/step and Gram phase at `ratio` times that, uses most of the
    # 100 s budget and not more (a safety margin takes the rest)
    gram_fraction = (cfg.steps - cfg.gram.start_step) / cfg.steps
    estimate = n * 0.1 * ((1 - gram_fraction) + gram_fraction * ratio)
    assert 80.0 <= estimate <= 100.0
    assert trainer._fitted_total(0.1, 200.0, 0.0) == pytest.approx(2 * n, abs=2)  # twice the time, twice the steps
    assert trainer._fitted_total(0.1, 100.0, 5.0) < n  # k-NN passes take their share
    trainer.fit_schedule(250)
    assert (cfg.steps, cfg.optim.warmup_steps, cfg.loss.teacher_temp_warmup_steps) == (250, 25, 75)
    assert (cfg.gram.start_step, trainer.gram_start, cfg.gram.refresh_every) == (200, 200, 12)


class _Clock:
    """A fake `time` for the trainer: it advances only when a step runs, by `step_s` seconds, so a run
    bounded by minutes takes the same number of steps on any machine."""

    def __init__(self, step_s: float) -> None:
        self.now, self.step_s = 1000.0, step_s

    def time(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch):
    import explorer.ssl.train as train_mod

    def use(step_s: float) -> _Clock:
        c = _Clock(step_s)
        step = Pretrainer.train_step

        def timed_step(self: Pretrainer) -> dict:
            c.now += c.step_s
            return step(self)

        monkeypatch.setattr(train_mod, "time", c)
        monkeypatch.setattr(Pretrainer, "train_step", timed_step)
        return c

    return use


def test_minutes_stop_the_run_after_the_steps_that_fit(tmp_path: Path, clock) -> None:
    from explorer.cli.pretrain import main

    clock(2.0)
    out = tmp_path / "stop"
    assert main(["--config", str(SMOKE), "--data", "random:16", "--out", str(out), "--steps", "1000",
                 "--minutes", "0.5", "--no-progress"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stop_reason"] == "minutes" and summary["step"] == 15  # 15 steps x 2 s = 30 s
    assert (out / "backbone" / "model.safetensors").exists()  # a stopped run still exports


def test_cli_fit_to_minutes_finishes_the_shrunk_schedule(tmp_path: Path, clock) -> None:
    from explorer.cli.pretrain import main

    clock(2.0)
    out = tmp_path / "fit"
    assert main(["--config", str(SMOKE), "--data", "random:16", "--out", str(out), "--steps", "100000",
                 "--minutes", "1", "--fit", "--no-progress"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    cfg = RecipeConfig.load(out / "config.json")
    assert 12 < cfg.steps < 30  # 60 s at 2 s/step (Gram steps cost more), after the 12 timed steps
    assert summary["stop_reason"] == "steps" and summary["step"] == cfg.steps  # it finished its recipe
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert any(r.get("fitted_steps") == cfg.steps for r in log)
    assert any(r["gram_active"] for r in log)  # the shrunk schedule still reaches its Gram phase


def test_cli_fit_grows_a_short_schedule(tmp_path: Path, clock) -> None:
    from explorer.cli.pretrain import main

    clock(2.0)
    out = tmp_path / "grow"
    assert main(["--config", str(SMOKE), "--data", "random:16", "--out", str(out), "--steps", "14",
                 "--minutes", "1", "--fit", "--no-progress"]) == 0
    assert 14 < RecipeConfig.load(out / "config.json").steps < 30


def test_batchnorm_head_uses_batch_statistics_in_the_teacher_too() -> None:
    """With head BatchNorm, a teacher BN in eval mode would use stale running stats (zeros/ones at
    the start) and lose exactly the per-batch normalisation that keeps the outputs apart."""
    torch.manual_seed(0)
    cfg = _smoke(steps=3)
    cfg.head.batch_norm = True
    trainer = Pretrainer(cfg, load_pretraining_pool("random:16", cfg.pool_size, seed=1))
    bns = [m for m in trainer.teacher.dino_head.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    assert len(bns) == cfg.head.num_layers - 1 and all(m.training for m in bns)
    x = 5.0 + torch.randn(8, cfg.model.hidden_size)  # a large shared component, as CLS tokens have
    with torch.no_grad():
        hidden = trainer.teacher.dino_head.mlp[:2](x)
    assert torch.allclose(hidden.mean(0), torch.zeros(hidden.shape[1]), atol=1e-4)
    rows = [trainer.train_step() for _ in range(cfg.steps)]
    assert all(math.isfinite(r["loss"]) for r in rows)


def test_compiled_blocks_train_like_eager_ones() -> None:
    """`compile: true` wraps every transformer block in torch.compile and leaves parameter names alone
    (checkpoints stay interchangeable). The "eager" backend runs dynamo's graph capture without
    inductor's minutes-long kernel build on this CPU; the loss of a step equals the uncompiled one."""
    losses = []
    for compiled in (False, True):
        torch.manual_seed(0)
        cfg = _smoke(steps=2)
        cfg.compile, cfg.compile_backend = compiled, "eager"
        trainer = Pretrainer(cfg, load_pretraining_pool("random:8", cfg.pool_size, seed=1))
        losses.append([trainer.train_step()["loss"] for _ in range(2)])
        blocks = list(trainer.student.backbone.model.layer)
        assert all(hasattr(b, "_compiled_call_impl") and (b._compiled_call_impl is not None) == compiled
                   for b in blocks)
        names = {k for k, _ in trainer.student.named_parameters()}
        assert not any("_orig_mod" in k for k in names)
    assert losses[1] == pytest.approx(losses[0], rel=1e-5)
