#!/usr/bin/env bash
# One prepared pretraining job for a lent GPU box (or, with small settings, a CPU smoke test).
# 1) calibrate seconds/step, 2) main run sized to the time budget, Gram anchoring over its last 20%,
# 3) the same final phase WITHOUT Gram anchoring from the pre-Gram checkpoint (ablation),
# 4) float16 copies of both backbones + logs, packed as $OUT/result.tar (the device tool returns at most
#    8 files), or under runs/device when OUT is unset.
# On the lent GPU box: call it as `bash scripts/device_pretrain.sh > $OUT/log.txt 2>&1` (never through a
# pipe, whose buffer is lost when the call is cut) and keep BUDGET_S well inside the device time left.
# While it runs, each arm's log.jsonl is copied to $RESULT/progress_{gram,nogram}.jsonl every 15 s, so a
# cut call still returns the loss curves so far.
set -euo pipefail
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
PY=${PY:-python3}
CONFIG=${CONFIG:-configs/tiny_gpu.json}
POOL_N=${POOL_N:-50000}
BUDGET_S=${BUDGET_S:-380}          # seconds for main run + ablation arm together
CALIB_STEPS=${CALIB_STEPS:-40}
GRAM_COST=${GRAM_COST:-1.5}        # a Gram-phase step costs this many plain steps (2x-res teacher)
RESULT=${OUT:-runs/device}
WORK=${WORK:-/tmp/pretrain}
mkdir -p "$RESULT" "$WORK"
t_start=$(date +%s)
BATCH_ARGS=()
if [ -n "${BATCH:-}" ]; then BATCH_ARGS=(--batch-size "$BATCH"); fi
( while sleep 15; do
    for arm in nogram gram; do
      if [ -f "$WORK/$arm/log.jsonl" ]; then cp "$WORK/$arm/log.jsonl" "$RESULT/progress_$arm.jsonl"; fi
    done
  done ) &
COPIER=$!
trap 'kill $COPIER 2>/dev/null || true' EXIT
$PY - <<PY
import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__,
      "cuda", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
PY
if [ -z "${STEPS:-}" ]; then
$PY -m explorer pretrain --config "$CONFIG" --data "world:${CALIB_POOL:-2000}" --out "$WORK/calib" --steps "$CALIB_STEPS" --no-progress "${BATCH_ARGS[@]}"
STEPS=$($PY - "$WORK/calib/log.jsonl" "$BUDGET_S" "$GRAM_COST" <<'PY'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
rows = [r for r in rows if "wall_s" in r]
a, b = rows[len(rows) // 4], rows[-1]
per_step = (b["wall_s"] - a["wall_s"]) / max(1, b["step"] - a["step"])
budget, gram_cost = float(sys.argv[2]), float(sys.argv[3])
steps = int(budget / (per_step * (0.8 + 0.2 * gram_cost + 0.2)))
print(max(50, steps // 10 * 10))
print(f"calibration: {per_step * 1000:.1f} ms/step -> {steps} steps", file=sys.stderr)
PY
)
fi
GRAM_START=$(( STEPS * 8 / 10 ))
$PY - "$CONFIG" "$WORK/config.json" "$STEPS" "$GRAM_START" <<'PY'
import json, sys
cfg = json.load(open(sys.argv[1]))
cfg["steps"] = int(sys.argv[3]); cfg["gram"]["start_step"] = int(sys.argv[4])
cfg["checkpoint_every"] = max(cfg["steps"] // 4, 1)
json.dump(cfg, open(sys.argv[2], "w"), indent=2)
PY
echo "steps=$STEPS gram_start=$GRAM_START"
$PY -m explorer pretrain --config "$WORK/config.json" --data "world:$POOL_N" --out "$WORK/gram" --no-progress "${BATCH_ARGS[@]}" \
    --minutes "$($PY -c "print($BUDGET_S * ${MAIN_SHARE:-0.85} / 60)")" || echo "main run failed"
if [ -d "$WORK/gram/checkpoint_pre_gram" ] && [ "${SKIP_NOGRAM:-0}" != 1 ]; then
  $PY -m explorer pretrain --config "$WORK/config.json" --data "world:$POOL_N" --out "$WORK/nogram" --no-progress "${BATCH_ARGS[@]}" \
      --gram-phase-from "$WORK/gram/checkpoint_pre_gram" --no-gram --minutes "$($PY -c "print($BUDGET_S * 0.3 / 60)")" || echo "no-Gram arm failed"
fi
$PY - "$WORK" "$RESULT" <<'PY'
import json, shutil, sys
from pathlib import Path
from safetensors.torch import load_file, save_file
work, result = Path(sys.argv[1]), Path(sys.argv[2])
for arm in ("gram", "nogram"):
    src = work / arm / "backbone"
    if not src.is_dir():
        continue
    dst = result / arm
    dst.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "preprocessor_config.json"):
        shutil.copy(src / name, dst / name)
    tensors = {k: v.half().contiguous() for k, v in load_file(str(src / "model.safetensors")).items()}
    save_file(tensors, str(dst / "model.safetensors"), metadata={"format": "pt"})
    for name in ("log.jsonl", "summary.json", "config.json"):
        if (work / arm / name).exists():
            shutil.copy(work / arm / name, result / f"{arm}_{name}")
print(sorted(str(p) for p in result.rglob("*")))
PY
kill $COPIER 2>/dev/null || true
if [ -n "${OUT:-}" ]; then
  (cd "$RESULT" && tar cf result.tar gram nogram ./*_log.jsonl ./*_summary.json ./*_config.json 2>/dev/null || true)
  (cd "$RESULT" && rm -rf gram nogram ./*_log.jsonl ./*_summary.json ./*_config.json)
  ls -la "$RESULT"
fi
echo "total wall: $(( $(date +%s) - t_start )) s"
