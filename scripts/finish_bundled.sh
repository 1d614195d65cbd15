#!/usr/bin/env bash
# After pretraining: bundle the backbone, train its heads on one world, evaluate on another.
#   scripts/finish_bundled.sh RUN_DIR      (e.g. runs/bundled_v2; worlds/train and worlds/test must exist:
#   python -m explorer data make --out worlds/train --n 4000 --seed 11; ... --out worlds/test --n 2000 --seed 12;
#   the shipped segmentation decoder and probe used a 16000-scene train world: TRAIN_WORLD=worlds/train16k, --n 16000 --seed 11)
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${1:?run directory}
PY=${PY:-.venv/bin/python}
DEST=${DEST:-pretrained/dinov3-explorer-tiny}
TRAIN_WORLD=${TRAIN_WORLD:-worlds/train}
TEST_WORLD=${TEST_WORLD:-worlds/test}
MODEL=${MODEL:-bundled}
OUTDIR=${OUTDIR:-runs/final}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} HF_HUB_OFFLINE=1
mkdir -p "$DEST" "$OUTDIR"
step() { echo "[$(date +%H:%M:%S)] $*"; }

if [ "${SKIP_BUNDLE:-0}" != 1 ]; then
step "bundle $RUN/backbone -> $DEST (float16 safetensors)"
$PY - "$RUN/backbone" "$DEST" <<'PY'
import shutil, sys
from pathlib import Path
from safetensors.torch import load_file, save_file
src, dst = Path(sys.argv[1]), Path(sys.argv[2])
for name in ("config.json", "preprocessor_config.json"):
    shutil.copy(src / name, dst / name)
tensors = {k: v.half().contiguous() for k, v in load_file(str(src / "model.safetensors")).items()}
save_file(tensors, str(dst / "model.safetensors"), metadata={"format": "pt"})
PY
fi
if [ "${SKIP_HEADS:-0}" != 1 ]; then
step "probe";        $PY -m explorer train-head probe --data "$TRAIN_WORLD" --model "$MODEL" --C 0.1,1,10 --no-progress
step "segmentation"; $PY -m explorer train-head segmentation --data "$TRAIN_WORLD" --model "$MODEL" --arch conv --hidden 256 --layers 3 \
                       --epochs 25 --train-batch 32 --lr 2e-3 --no-progress
step "detection";    $PY -m explorer train-head detection --data "$TRAIN_WORLD" --model "$MODEL" --format coco --kind dense --grid-flip \
                       --config '{"upsample": false, "hidden": 192, "num_convs": 3}' --no-progress
fi
for task in probe segmentation detection discovery; do
  step "eval $task"
  $PY -m explorer eval "$task" --data "$TEST_WORLD" --model "$MODEL" --split test --json "$OUTDIR/$task.json" --update-card --no-progress || true
done
step "backbone report (pretrained vs random init)"
$PY -m explorer report --model "$DEST" --json "$DEST/metrics.json" ${REPORT_ARGS:---n-train 1000 --n-val 200 --n-test 500} > "$OUTDIR/backbone_report.log" 2>&1
step done
