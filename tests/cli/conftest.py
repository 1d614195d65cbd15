"""A tiny world on disk (ImageFolder + VOC, 3 classes of coloured squares) and a tiny DINOv3 saved
as a Hugging Face folder, shared by the command-line tests of this folder (built once per module)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.eval.tiny import save_tiny_model, write_world


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cli")
    write_world(root / "world")
    save_tiny_model(root / "model")
    return {"root": root, "data": root / "world", "model": root / "model", "heads": root / "heads",
            "cache": root / "cache"}


def common_args(w: dict[str, Path]) -> list[str]:
    return ["--data", str(w["data"]), "--model", str(w["model"]), "--cache-dir", str(w["cache"]), "--no-progress"]
