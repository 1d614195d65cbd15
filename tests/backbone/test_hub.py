"""The default source chain and hub refusals, in fresh processes started WITHOUT HF_HUB_OFFLINE.

huggingface_hub reads its endpoint and offline switch at import, so each case runs in a subprocess
with its own environment: `HF_ENDPOINT` points at a closed localhost port (an unreachable hub) or at a
tiny local HTTP server answering 401/403/404 — the network is mocked at the HTTP layer only.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from explorer.backbone import hub

REPO_ROOT = Path(__file__).resolve().parents[2]
# Runs in the child: tries each source, prints one JSON object.
CHILD = """
import json, sys
from explorer.backbone import load_backbone, load_source, SourceUnavailable
results = {}
for source in sys.argv[1:]:
    if source == "auto":
        r = load_backbone()
        results[source] = {"loaded": r.backbone.model_id if r.backbone else None, "message": r.message,
                           "fell_back": r.fell_back, "requested": r.requested}
        continue
    try:
        results[source] = {"loaded": load_source(source).model_id}
    except SourceUnavailable as error:
        results[source] = {"error": str(error)}
print(json.dumps(results))
"""


def child_env(tmp_path: Path, endpoint: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"HF_HUB_OFFLINE", "DINOV3_MODEL", "HF_TOKEN"}}
    env.update(HF_ENDPOINT=endpoint, HF_HUB_CACHE=str(tmp_path / "empty-cache"), HF_HOME=str(tmp_path / "hf"),
               PYTHONPATH=str(REPO_ROOT), HF_HUB_ETAG_TIMEOUT="5")
    return env


def run_child(tmp_path: Path, endpoint: str, *sources: str) -> dict:
    done = subprocess.run([sys.executable, "-c", CHILD, *sources], env=child_env(tmp_path, endpoint),
                          capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_offline_default_is_the_bundled_model_and_says_why(tmp_path: Path) -> None:
    results = run_child(tmp_path, f"http://127.0.0.1:{closed_port()}", "auto",
                        "timm:vit_small_patch16_dinov3.lvd1689m", "facebook/dinov2-small")
    auto = results["auto"]
    assert auto["requested"] == "auto" and auto["loaded"].startswith("bundled/") and not auto["fell_back"]
    assert "127.0.0.1 cannot be reached" in auto["message"] and "bundled" in auto["message"]
    for source in ("timm:vit_small_patch16_dinov3.lvd1689m", "facebook/dinov2-small"):
        assert "cannot be reached (offline)" in results[source]["error"]


class RefusingHub(BaseHTTPRequestHandler):
    """Answers every request for a repo with the status the test gave it; counts requests."""

    statuses: dict[str, tuple[int, str]] = {}
    requests: list[str] = []

    def _answer(self) -> None:
        type(self).requests.append(self.path)
        status, code = next((v for k, v in self.statuses.items() if k in self.path), (404, "RepoNotFound"))
        body = json.dumps({"error": code}).encode()
        self.send_response(status)
        self.send_header("X-Error-Code", code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_HEAD = _answer

    def log_message(self, *args) -> None:  # keep test output clean
        pass


@pytest.fixture
def refusing_hub():
    RefusingHub.statuses = {
        "dinov3-vits16-pretrain-lvd1689m": (401, "GatedRepo"),
        "dinov3-vitb16-pretrain-lvd1689m": (403, "GatedRepo"),
        "timm/vit_small_patch16_dinov3.lvd1689m": (401, "GatedRepo"),
    }
    RefusingHub.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), RefusingHub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.mark.slow
def test_a_refusing_hub_gets_one_line_naming_the_way_out(tmp_path: Path, refusing_hub: str) -> None:
    results = run_child(tmp_path, refusing_hub, "facebook/dinov3-vits16-pretrain-lvd1689m",
                        "facebook/dinov3-vitb16-pretrain-lvd1689m", "facebook/dinov3-vits16-pretrain-lvd1689",
                        "auto")
    gated = results["facebook/dinov3-vits16-pretrain-lvd1689m"]["error"]
    assert "gated" in gated and "HTTP 401" in gated and "HF_TOKEN" in gated
    assert "'timm:vit_small_patch16_dinov3.lvd1689m'" in gated
    forbidden = results["facebook/dinov3-vitb16-pretrain-lvd1689m"]["error"]
    assert "HTTP 403" in forbidden and "'timm:vit_base_patch16_dinov3.lvd1689m'" in forbidden
    typo = results["facebook/dinov3-vits16-pretrain-lvd1689"]["error"]
    assert "HTTP 404" in typo and "Did you mean 'facebook/dinov3-vits16-pretrain-lvd1689m'" in typo
    auto = results["auto"]  # the hub answers, so the real model is tried first, then the bundled one
    assert auto["fell_back"] and auto["loaded"].startswith("bundled/") and "Fell back" in auto["message"]
    assert all("\n" not in r.get("error", "") for r in results.values())
    assert len(RefusingHub.requests) <= 12  # a refusal is final: no retry storm


def test_probe_reads_the_endpoint_host(monkeypatch: pytest.MonkeyPatch, refusing_hub: str) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", refusing_hub)
    assert hub.endpoint_host() == "127.0.0.1" and hub.hub_reachable()
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed_port()}")
    assert not hub.hub_reachable()
    monkeypatch.setenv("HF_ENDPOINT", refusing_hub)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert not hub.hub_reachable()  # the user's offline switch wins
