"""Cold start: `python app.py` (bundled model) to the first served page, on loopback.

Also measured in the same run, as baselines: bare `import gradio`, `import torch` and both in a fresh
interpreter (the floor no app code can go below), and which heavy libraries the app has imported
by the time its page is served (each one a library that start-up pays for).

    python benchmarks/cold_start.py [--runs 1]

Prints one JSON object: cold_start_s (best of runs), import floors, ratio to the floor.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers", "timm", "sklearn", "scipy", "plotly", "pandas", "cv2", "matplotlib")
ENV = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "NO_PROXY": "127.0.0.1,localhost", "HF_HUB_OFFLINE": "1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def timed_import(code: str) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], cwd=REPO, env=ENV, check=True, capture_output=True)
    return time.perf_counter() - t0


def cold_start() -> float:
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, str(REPO / "app.py"), "--port", str(port)], cwd=REPO, env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            if proc.poll() is not None:
                raise SystemExit("app.py exited before serving a page")
            if time.perf_counter() - t0 > 300:
                raise SystemExit("app.py did not serve a page within 300 s")
            try:
                with urllib.request.urlopen(url, timeout=2) as r:  # noqa: S310 - loopback
                    if r.status == 200:
                        return time.perf_counter() - t0
            except OSError:
                time.sleep(0.1)
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()


def imported_at_start() -> dict[str, bool]:
    """Which heavy libraries building the app (what `app.py` does before launch) imports."""
    code = ("import sys, json; sys.argv=['app.py']; from explorer.ui.layout import build_app; build_app(); "
            f"print(json.dumps({{m: m in sys.modules for m in {HEAVY!r}}}))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=ENV, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=1)
    args = ap.parse_args()
    gradio_s = timed_import("import gradio")
    torch_s = timed_import("import torch")
    floor_s = timed_import("import gradio, torch")  # what any torch + Gradio app pays before its own code
    starts = [cold_start() for _ in range(max(1, args.runs))]
    best = min(starts)
    print(json.dumps({
        "cold_start_s": round(best, 2), "runs_s": [round(s, 2) for s in starts],
        "import_gradio_s": round(gradio_s, 2), "import_torch_s": round(torch_s, 2),
        "import_gradio_torch_s": round(floor_s, 2), "ratio_vs_import_floor": round(best / floor_s, 2),
        "imported_at_start": imported_at_start(), "cpus": os.cpu_count(),
    }))


if __name__ == "__main__":
    main()
