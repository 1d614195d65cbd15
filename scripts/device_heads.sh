#!/usr/bin/env bash
# One prepared job for a lent GPU box: train the bundled backbone's segmentation decoder and probes on a
# larger world than the 2-core machine can afford (N scenes, seed 11: the first 4000 are exactly
# worlds/train). The heads land in $OUT (flat, <= 8 files) and are evaluated back here on worlds/test:
#   scripts/device_heads.sh > $OUT/log.txt 2>&1          (on the GPU box; never through a pipe)
#   N=120 SEG_EPOCHS=1 OUT=/tmp/h scripts/device_heads.sh   (CPU smoke test)
set -euo pipefail
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
PY=${PY:-python3}
RESULT=${OUT:-runs/device_heads}
WORLD=${WORLD:-/tmp/heads_world}
N=${N:-16000}
BATCH=${BATCH:-256}
mkdir -p "$RESULT"
t0=$(date +%s)
stamp() { echo "[$(( $(date +%s) - t0 )) s] $*"; }
stamp "world: $N scenes"
$PY -m explorer data make --out "$WORLD" --n "$N" --seed 11 --format voc,imagefolder --workers "${WORKERS:-16}" > /dev/null
stamp "segmentation decoder"
$PY -m explorer train-head segmentation --data "$WORLD" --model bundled --arch conv --hidden "${SEG_HIDDEN:-256}" \
    --layers "${SEG_LAYERS:-3}" --epochs "${SEG_EPOCHS:-30}" --train-batch 32 --lr 2e-3 --batch-size "$BATCH" \
    --out "$RESULT" --no-progress
stamp "probe (CLS + mean patch)"
$PY -m explorer train-head probe --data "$WORLD" --model bundled --C 0.1,1,10 --feature cls+avgpool --name probe_avgpool \
    --batch-size "$BATCH" --out "$RESULT" --no-progress
stamp "probe (CLS)"
$PY -m explorer train-head probe --data "$WORLD" --model bundled --C 0.1,1,10 --batch-size "$BATCH" --out "$RESULT" --no-progress
stamp "done"
ls -la "$RESULT"
