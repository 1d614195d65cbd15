"""The one entry point: `python -m explorer <group>` and the `explorer` console script reach the same
dispatcher, and the package metadata declares what requirements.txt installs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import tomllib

import explorer.cli as cli

ROOT = Path(__file__).resolve().parents[2]


def test_python_dash_m_runs_a_group(tmp_path: Path) -> None:
    out = tmp_path / "world"
    proc = subprocess.run([sys.executable, "-m", "explorer", "data", "make", "--out", str(out), "--n", "8",
                           "--size", "64", "--format", "imagefolder"], capture_output=True, text=True, cwd=tmp_path,
                          env={"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["n"] == 8 and summary["train"] + summary["val"] + summary["test"] == 8
    assert len(list((out / "imagefolder").rglob("*.png"))) == 8


def test_unknown_group_is_usage_not_a_traceback(capsys) -> None:
    assert cli.main(["nonsense"]) == 2
    assert cli.main([]) == 2
    assert cli.main(["--help"]) == 0
    assert "data,pretrain,train-head,eval" in capsys.readouterr().out


def test_every_group_module_has_a_main() -> None:
    import importlib

    for name in cli.GROUPS.values():
        assert callable(importlib.import_module(name).main)


def test_console_script_and_dependencies_declared() -> None:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    module, func = meta["scripts"]["explorer"].split(":")
    assert (module, func) == ("explorer.cli", "main")
    reqs = [line.strip() for line in (ROOT / "requirements.txt").read_text().splitlines()
            if line.strip() and not line.startswith("#")]
    assert meta["dependencies"] == reqs


def test_bad_input_is_one_line_not_a_traceback(tmp_path: Path, capsys) -> None:
    missing = tmp_path / "no-such-world"
    assert cli.main(["eval", "discovery", "--data", str(missing), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) >= 1 and err[-1].startswith("error: ") and "Traceback" not in "\n".join(err)
