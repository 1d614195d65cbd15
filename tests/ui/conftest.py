"""A real app server (`python app.py --model <tiny folder> --port <free>`) shared by the UI tests."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(url: str, proc: subprocess.Popen, timeout: float = 240.0) -> None:
    """Poll until the server answers; fail early (with its log) if it died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"app exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:  # noqa: S310 - localhost only
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"app did not start within {timeout:.0f} s")


@contextlib.contextmanager
def launched_app(log_dir: Path, env: dict[str, str], args: Sequence[str] = ()) -> Iterator[tuple[str, subprocess.Popen]]:
    """`python app.py` on a free loopback port with `env` on top of the test environment; yields (url, process)."""
    port = free_port()
    log = log_dir / "app.log"
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "GRADIO_ANALYTICS_ENABLED": "False",
                "NO_PROXY": "127.0.0.1,localhost", "HF_HUB_OFFLINE": "1", **env}
    for name in ("SPACE_ID", "EXPLORER_PUBLIC", "DINOV3_MODELS"):
        if name not in env:
            full_env.pop(name, None)  # a test that wants public mode says so
    with open(log, "w") as fh:
        proc = subprocess.Popen([sys.executable, str(REPO / "app.py"), "--port", str(port), "--host", "127.0.0.1",
                                 *args], cwd=REPO, env=full_env, stdout=fh, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(url + "/", proc)
    except Exception:
        proc.kill()
        print(log.read_text()[-4000:])
        raise
    try:
        yield url, proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="session")
def app_url(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a launched app (local mode) serving the tiny random backbone."""
    with launched_app(tmp_path_factory.mktemp("applog"), {"DINOV3_MODEL": str(tiny_model_dir)}) as (url, _):
        yield url


@pytest.fixture(scope="session")
def deep_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second tiny model, 4 layers deep (the app starts on the 2-layer one)."""
    from tests.conftest import make_tiny_model

    folder = tmp_path_factory.mktemp("tiny-dinov3-deep")
    make_tiny_model(seed=1, num_hidden_layers=4).save_pretrained(folder, safe_serialization=True)
    return folder


@pytest.fixture(scope="session")
def scene_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A non-square (240×144) picture with a clear object: a red disc on a textured green field."""
    rng = np.random.default_rng(0)
    h, w = 144, 240
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 1] = 120 + rng.integers(0, 40, (h, w))
    img[..., 2] = 40
    disc = (yy - 70) ** 2 + (xx - 150) ** 2 < 40**2
    img[disc] = (220, 30, 30)
    path = tmp_path_factory.mktemp("img") / "scene.png"
    Image.fromarray(img).save(path)
    return path
