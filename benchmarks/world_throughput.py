"""Scene-generator throughput: single process (the >= 200 scenes/s target at 224 px) and the
multi-process ``generate_pool``. Prints one JSON object.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/world_throughput.py [--n 1000] [--size 224] [--workers 2]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere
from explorer.data.classes import NUM_CLASSES  # noqa: E402
from explorer.data.world import SceneGenerator, generate_pool  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=0, help="0 = skip the pool measurement")
    p.add_argument("--pool-n", type=int, default=0, help="scenes for the pool measurement (default --n)")
    p.add_argument("--digest", type=int, default=0,
                   help="also hash scenes 0..N-1 (image, seg, labels) to compare machines/versions")
    args = p.parse_args()
    cv2.setNumThreads(1)
    gen = SceneGenerator(args.seed, args.size)
    for i in range(20):  # warm-up (allocations, caches)
        gen.scene(10**6 + i)
    t0, c0 = time.perf_counter(), time.process_time()
    kinds = {"single": 0, "cluttered": 0}
    n_inst = 0
    sides, labels, all_classes = [], [], []
    for i in range(args.n):
        sc = gen.scene(i)
        kinds[sc.kind] += 1
        n_inst += len(sc.instances)
        labels.append(sc.label)
        for inst in sc.instances:
            x0, y0, x1, y1 = inst.box_xyxy
            sides.append(max(x1 - x0, y1 - y0))
            all_classes.append(inst.class_id)
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    out = {"benchmark": "world_throughput", "size": args.size, "n": args.n,
           "scenes_per_s": round(args.n / dt, 1), "ms_per_scene": round(1000 * dt / args.n, 3),
           "scenes_per_cpu_s": round(args.n / cpu, 1),
           "note": "scenes_per_s is wall-clock; scenes_per_cpu_s is what one uncontended core gives",
           "instances_per_scene": round(n_inst / args.n, 2), "kinds": kinds,
           "cpu_count": os.cpu_count(), "machine": platform.machine(), "python": platform.python_version()}
    lab = np.bincount(labels, minlength=NUM_CLASSES)
    inst = np.bincount(all_classes, minlength=NUM_CLASSES)
    out.update(box_side_px_percentiles={str(q): round(float(np.percentile(sides, q)), 1) for q in (0, 5, 25, 50, 75, 95, 100)},
               label_count_min_max=[int(lab.min()), int(lab.max())],
               instance_count_min_max=[int(inst.min()), int(inst.max())])
    if args.workers:
        pool_n = args.pool_n or args.n
        t0 = time.perf_counter()
        generate_pool(args.seed, pool_n, args.size, workers=args.workers)
        dt = time.perf_counter() - t0
        out.update(pool_workers=args.workers, pool_n=pool_n, pool_scenes_per_s=round(pool_n / dt, 1),
                   pool_note="includes process start-up (spawn) and the final copy out of the memory-mapped scratch file")
    if args.digest:
        h = hashlib.sha256()
        for i in range(args.digest):
            sc = gen.scene(i)
            h.update(sc.image.tobytes())
            h.update(sc.seg.tobytes())
            h.update(repr([(x.box_xyxy, x.class_id, x.area) for x in sc.instances]).encode())
        out.update(digest_n=args.digest, digest_sha256=h.hexdigest()[:16],
                   versions={"numpy": np.__version__, "opencv": cv2.__version__})
    print(json.dumps(out))


if __name__ == "__main__":
    main()
