"""Load test: N concurrent gradio_client sessions against a real `python app.py`, loopback only.

Each client has its own picture, of a size no other client has, and makes a mixed sequence over
every API endpoint. Every answer that carries an image is checked against its own picture
(/features' `image_size`, the overlay's display size, the Gram-loss text's input size), so an
answer computed on another client's features counts as `crosstalk`. The server's forward counter
(`/server_stats`) must equal the number of distinct (image, size, layer, model) the requests
named; its peak RSS is sampled with psutil. The baseline is one client alone, in the same run.

    python benchmarks/load.py [--clients 16] [--requests 10] [--arch bundled|vits16] [--memory-mb MB]

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import psutil  # noqa: E402
from PIL import Image  # noqa: E402

from explorer.backbone.preprocess import target_size  # noqa: E402
from explorer.ui.service import DISPLAY_MAX_SIDE, DISPLAY_MIN_SIDE  # noqa: E402
from explorer.viz import display_array  # noqa: E402

HEADS = REPO / "pretrained_heads" / "bundled--dinov3-explorer-tiny"
SIZE = 448


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def picture(path: Path, hw: tuple[int, int], seed: int) -> Path:
    """Coloured 16-px blocks with a bright disc: structure for TokenCut, distinct per client."""
    rng = np.random.default_rng(seed)
    h, w = hw
    blocks = rng.integers(0, 256, (h // 16 + 1, w // 16 + 1, 3), dtype=np.uint8)
    img = np.kron(blocks, np.ones((16, 16, 1), np.uint8))[:h, :w].copy()
    yy, xx = np.mgrid[0:h, 0:w]
    img[(yy - h / 2) ** 2 + (xx - w / 2) ** 2 < (min(h, w) / 4) ** 2] = (230, 40, 40)
    Image.fromarray(img).save(path)
    return path


def vits16_folder(out: Path) -> Path:
    """A random-init ViT-S/16 DINOv3 in Hugging Face format (real shapes, no download)."""
    import torch
    from transformers import DINOv3ViTConfig, DINOv3ViTModel

    torch.manual_seed(0)
    DINOv3ViTModel(DINOv3ViTConfig(num_register_tokens=4, layerscale_value=1e-5)).eval().save_pretrained(out)
    return out


class Sampler(threading.Thread):
    """Peak RSS (every 50 ms) and peak USS (every 0.5 s: it reads smaps) of the server process.

    USS is the memory only this process holds; RSS also counts shared, clean library pages (a CUDA
    build of torch maps ~0.4 GB of CUDA libraries even on a machine without a GPU).
    """

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.proc = psutil.Process(pid)
        self.peak = 0
        self.peak_uss = 0
        self.stop = threading.Event()

    def rss(self) -> int:
        return int(self.proc.memory_info().rss)

    def run(self) -> None:
        tick = 0
        while not self.stop.is_set():
            try:
                self.peak = max(self.peak, self.rss())
                if tick % 10 == 0:
                    self.peak_uss = max(self.peak_uss, int(self.proc.memory_full_info().uss))
            except psutil.Error:
                return
            tick += 1
            time.sleep(0.05)


class Plan:
    """One client's picture and its requests; knows what each answer must look like."""

    def __init__(self, index: int, path: Path, hw: tuple[int, int], model: str, num_layers: int, patch: int,
                 heads: dict[str, tuple[int, int]]) -> None:
        self.index, self.path, self.hw, self.model = index, path, hw, model
        self.patch = patch
        h, w = hw
        display = display_array(Image.new("RGB", (w, h)), DISPLAY_MAX_SIDE, DISPLAY_MIN_SIDE)
        self.display_wh = (display.shape[1], display.shape[0])
        self.layer = num_layers - index % 2  # half the clients look at the last layer, half at the one before
        self.size = SIZE if index % 3 else 320
        self.heads = heads
        self.keys: set[tuple] = set()  # (image, size, layer) this client's requests need features for

    def ops(self) -> list[Callable[[], tuple]]:
        ops = [self.features, self.similarity, self.tokencut, self.pca, self.gram, self.tokencut_sweep,
               self.gram_loss, self.similarity_corner]
        if self.heads:
            ops += [self.classify, self.detect, self.segment]
        return ops

    def requests(self, n: int) -> list[tuple[str, tuple, Callable[[Any], bool]]]:
        ops = self.ops()
        start = self.index % len(ops)
        return [ops[(start + k) % len(ops)]() for k in range(n)]

    # Each op: (api_name, args after the base four, check(answer) -> belongs to this picture)
    def _base(self, size: int | None = None, layer: int | None = None) -> tuple:
        from gradio_client import handle_file

        self.keys.add((self.index, size or self.size, layer or self.layer))
        return handle_file(str(self.path)), self.model, size or self.size, layer or self.layer

    def _image_is_mine(self, path: Any) -> bool:
        return Image.open(path).size == self.display_wh

    def features(self) -> tuple:
        return "/features", self._base(), lambda out: out[1].get("image_size") == list(self.hw)

    def similarity(self) -> tuple:
        return "/similarity", (*self._base(), self.hw[1] // 2, self.hw[0] // 2), lambda o: self._image_is_mine(o[0])

    def similarity_corner(self) -> tuple:
        return "/similarity", (*self._base(), 3, 3), lambda o: self._image_is_mine(o[0])

    def tokencut(self) -> tuple:
        return "/tokencut", (*self._base(), 0.2), lambda o: self._image_is_mine(o[0]) and self._image_is_mine(o[1])

    def tokencut_sweep(self) -> tuple:
        return "/tokencut_sweep", self._base(), lambda o: len(o["data"]) == 10

    def pca(self) -> tuple:
        return "/pca", (*self._base(), True, 0.2), lambda o: self._image_is_mine(o[0])

    def gram(self) -> tuple:
        return "/gram", (*self._base(), "pca", 3), lambda o: self._image_is_mine(o[1])

    def gram_loss(self) -> tuple:
        base = self._base()
        self.keys.add((self.index, 224, self.layer))
        out_h, out_w = target_size(self.hw[1], self.hw[0], self.size, self.patch)
        return ("/gram_loss", (*base, "another resolution", 1, 224, ""),
                lambda o: f"{out_w}×{out_h} px vs" in o[1])

    def _head_base(self, kind: str) -> tuple:
        base = self._base()
        self.keys.add((self.index, *self.heads[kind]))
        return base

    def classify(self) -> tuple:
        return "/classify", self._head_base("probe"), lambda o: len(o[0].get("confidences", [])) > 0

    def detect(self) -> tuple:
        return "/detect", (*self._head_base("detection"), 0.3), lambda o: self._image_is_mine(o[0])

    def segment(self) -> tuple:
        return "/segment", (*self._head_base("segmentation"), 0.5), lambda o: self._image_is_mine(o[0])


def mapped_packages(pid: int) -> list[str]:
    """Which heavy native packages the server has loaded by the end (from its memory map)."""
    names = ("torchvision", "sklearn", "cv2", "skimage", "pandas", "matplotlib", "pycocotools")
    try:
        maps = Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return []
    return [n for n in names if f"/site-packages/{n}/" in maps or f"/site-packages/{n}." in maps]


def cuda_library_rss(pid: int) -> int:
    """Resident bytes of CUDA libraries mapped by the process (shared, clean pages; none with a CPU torch wheel)."""
    total, current = 0, ""
    try:
        with open(f"/proc/{pid}/smaps") as fh:
            for line in fh:
                parts = line.split()
                if parts and "-" in parts[0] and len(parts) >= 5:
                    current = parts[5] if len(parts) > 5 else ""
                elif parts[:1] == ["Rss:"] and ("/nvidia/" in current or "_cuda" in current or "/triton/" in current):
                    total += int(parts[1]) * 1024
    except OSError:
        return 0
    return total


def head_keys(arch: str) -> dict[str, tuple[int, int]]:
    """(size, layer) each bundled head runs at, from its card; none for other backbones."""
    if arch != "bundled" or not HEADS.is_dir():
        return {}
    out = {}
    for kind in ("probe", "detection", "segmentation"):
        card = json.loads((HEADS / f"{kind}.json").read_text())
        size = card.get("input_size", 224)
        out[kind] = (int(max(size) if isinstance(size, list) else size), int(card["layer"]))
    return out


def run_client(url: str, plan: Plan, n: int, deadline: float, lat: dict, errors: list, crosstalk: list) -> None:
    from gradio_client import Client

    try:
        client = Client(url, verbose=False)
    except Exception as err:  # noqa: BLE001 - a failed connect is an error of the run, not a crash
        errors.append(f"client {plan.index}: connect: {err}")
        return
    for api_name, args, check in plan.requests(n):
        if time.monotonic() > deadline:
            errors.append(f"client {plan.index}: time limit")
            return
        t0 = time.perf_counter()
        try:
            out = client.predict(*args, api_name=api_name)
        except Exception as err:  # noqa: BLE001
            errors.append(f"client {plan.index} {api_name}: {type(err).__name__}: {str(err)[:200]}")
            continue
        lat[api_name].append((time.perf_counter() - t0) * 1000.0)
        try:
            mine = bool(check(out))
        except Exception:  # noqa: BLE001 - an answer of the wrong shape is not this client's answer
            mine = False
        if not mine:
            crosstalk.append(f"client {plan.index} {api_name}")
    client.close()


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    qs = statistics.quantiles(values, n=20, method="inclusive") if len(values) > 1 else [values[0]] * 19
    return {"n": len(values), "p50_ms": round(statistics.median(values), 1), "p95_ms": round(qs[18], 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--requests", type=int, default=10)
    ap.add_argument("--arch", choices=["bundled", "vits16"], default="bundled")
    ap.add_argument("--time-limit", type=float, default=900.0, help="seconds for the whole run")
    ap.add_argument("--memory-mb", type=float, default=None,
                    help="EXPLORER_MEMORY_MB for the server (small: a flood of uploads over the budget)")
    args = ap.parse_args()
    if not (1 <= args.clients <= 64 and 1 <= args.requests <= 50):
        raise SystemExit("--clients 1..64, --requests 1..50: this is a bounded loopback test")

    from gradio_client import Client

    work = Path(tempfile.mkdtemp(prefix="explorer-load-"))
    model = "bundled" if args.arch == "bundled" else str(vits16_folder(work / "vits16"))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "NO_PROXY": "127.0.0.1,localhost",
           "HF_HUB_OFFLINE": "1", "DINOV3_MODEL": model}
    if args.memory_mb is not None:
        env["EXPLORER_MEMORY_MB"] = str(args.memory_mb)
    t_start = time.monotonic()
    with open(work / "app.log", "w") as log:
        server = subprocess.Popen([sys.executable, str(REPO / "app.py"), "--port", str(port)], cwd=REPO, env=env,
                                  stdout=log, stderr=subprocess.STDOUT)
    sampler = Sampler(server.pid)
    sampler.start()
    try:
        while True:
            if server.poll() is not None or time.monotonic() - t_start > 300:
                raise SystemExit(f"server did not start; see {work / 'app.log'}")
            try:
                with urllib.request.urlopen(url + "/", timeout=2):  # noqa: S310 - loopback
                    break
            except OSError:
                time.sleep(0.5)
        deadline = time.monotonic() + args.time_limit
        probe = Client(url, verbose=False)
        from gradio_client import handle_file

        probe_image = handle_file(str(picture(work / "probe.png", (100, 150), 999)))
        _, summary = probe.predict(probe_image, model, SIZE, None, api_name="/features")  # None: the last layer
        num_layers, patch = int(summary["num_layers"]), int(summary["patch_size"])
        idle_rss = sampler.rss()  # the model is loaded, one small image seen
        heads = head_keys(args.arch)
        forwards0 = probe.predict(api_name="/server_stats")["forwards"]

        def plans(n: int, offset: int) -> list[Plan]:
            out = []
            for i in range(n):
                hw = (160 + 7 * (i + offset), 320 + 4 * (i + offset))  # a size no other client has
                out.append(Plan(i + offset, picture(work / f"c{i + offset}.png", hw, i + offset), hw, model,
                                num_layers, patch, heads))
            return out

        # Baseline: one client alone, every endpoint, same kind of picture.
        alone = plans(1, args.clients)  # the next size in the series: no load client has it
        lat_alone: dict[str, list[float]] = defaultdict(list)
        errors: list[str] = []
        crosstalk: list[str] = []
        run_client(url, alone[0], len(alone[0].ops()), deadline, lat_alone, errors, crosstalk)
        warm_rss = sampler.rss()  # every endpoint has run once: lazy imports and first-use set-up are paid
        # The load: N clients at once.
        clients = plans(args.clients, 0)
        lat: dict[str, list[float]] = defaultdict(list)
        threads = [threading.Thread(target=run_client, args=(url, p, args.requests, deadline, lat, errors, crosstalk))
                   for p in clients]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join(max(1.0, deadline - time.monotonic()))
        wall = time.perf_counter() - t0
        stats = probe.predict(api_name="/server_stats")
        cuda_libs = cuda_library_rss(server.pid)
        packages = mapped_packages(server.pid)
        expected = len(set().union(*(p.keys for p in alone + clients)))
        all_lat = [v for vs in lat.values() for v in vs]
        alone_all = [v for vs in lat_alone.values() for v in vs]
        result = {
            "arch": args.arch, "clients": args.clients, "requests_per_client": args.requests,
            "requests": sum(len(v) for v in lat.values()), "wall_s": round(wall, 1),
            "errors": len(errors), "crosstalk": len(crosstalk),
            "forwards": stats["forwards"] - forwards0, "forwards_expected": expected,
            "endpoints": {name: percentiles(v) for name, v in sorted(lat.items())},
            "p50_ms": round(statistics.median(all_lat), 1) if all_lat else None,
            "alone_p50_ms": round(statistics.median(alone_all), 1) if alone_all else None,
            "p50_ratio_vs_alone": round(statistics.median(all_lat) / statistics.median(alone_all), 2)
            if all_lat and alone_all else None,
            "idle_rss_mb": round(idle_rss / 2**20, 1), "warm_rss_mb": round(warm_rss / 2**20, 1),
            "peak_rss_mb": round(sampler.peak / 2**20, 1), "peak_uss_mb": round(sampler.peak_uss / 2**20, 1),
            "cuda_libs_rss_mb": round(cuda_libs / 2**20, 1), "server_loaded": packages,
            "cache_mb": stats["memory"]["used_mb"], "cache_budget_mb": stats["memory"]["max_mb"],
            "evictions": stats["memory"]["evictions"],
            "error_samples": errors[:5], "crosstalk_samples": crosstalk[:5],
        }
        probe.close()
    finally:
        sampler.stop.set()
        server.terminate()
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
