"""The collapse investigation's entry point: each mode is the project's Pretrainer with one objective."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from experiments import collapse
from explorer.ssl.config import RecipeConfig
from explorer.ssl.data import load_pretraining_pool

SMOKE = str(Path(__file__).resolve().parents[2] / "configs" / "smoke.json")


def test_overrides_reach_the_config_and_typos_are_refused() -> None:
    cfg = collapse.apply_overrides(RecipeConfig.load(SMOKE), {"loss.koleo_weight": 0.0, "crops.num_local": 0})
    assert cfg.loss.koleo_weight == 0.0 and cfg.crops.num_local == 0
    with pytest.raises(KeyError, match="loss.koleo_wieght"):
        collapse.apply_overrides(cfg, {"loss.koleo_wieght": 0.0})


def test_info_nce_by_hand() -> None:
    """Two images whose views are identical and orthogonal to the other image's, temperature 1: each
    row keeps the logits (1 for its positive, 0, 0) once its own entry is removed, so every row's
    cross-entropy is -log(e / (e + 2))."""
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    expected = -math.log(math.e / (math.e + 2.0))
    assert collapse.info_nce(a, a.clone(), 1.0).item() == pytest.approx(expected, rel=1e-6)


def test_recipe_mode_is_the_pretrainer(capsys) -> None:
    out = collapse.main(["recipe", "nokoleo", "3", "--config", SMOKE, "--data", "random:16",
                         "--set", '{"loss.koleo_weight": 0.0}', "--workers", "1"])
    assert out["name"] == "nokoleo" and out["knn_start"] is None  # random data: no labelled held-out split
    assert len(out["dino_by_fifth"]) == 3 and all(math.isfinite(v) for v in out["dino_by_fifth"])


@pytest.mark.parametrize("mode", ["contrastive", "supervised"])
def test_swapped_objective_trains_the_student_and_the_teacher_follows(mode: str) -> None:
    cfg = RecipeConfig.load(SMOKE)
    cfg.gram.enabled = False
    pool = load_pretraining_pool("random:16", cfg.pool_size, seed=1)
    trainer = collapse.ObjectiveSwap(cfg, pool, None, mode)
    before = {k: v.clone() for k, v in trainer.student.backbone.state_dict().items()}
    proj_before = [p.clone() for p in trainer.projection.parameters()]
    rows = [trainer.train_step() for _ in range(2)]
    assert all(math.isfinite(r["loss"]) and r["ibot"] == 0.0 for r in rows)
    after = trainer.student.backbone.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)  # the backbone learned
    assert any(not torch.equal(a, b) for a, b in zip(proj_before, trainer.projection.parameters(), strict=True))
    teacher = trainer.teacher.backbone.state_dict()
    assert all(torch.allclose(teacher[k], after[k]) for k in after)  # momentum 0: the monitor sees the student
