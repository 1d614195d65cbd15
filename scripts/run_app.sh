#!/usr/bin/env bash
# Start DINOv3 Explorer (sets up .venv on first use) on "auto" (real DINOv3 ViT-S/16 weights when the hub answers or they are cached, else the bundled model).
# Extra arguments go to app.py, e.g.  scripts/run_app.sh --port 8000 --model /path/to/hf-folder
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/_venv.sh
source scripts/_venv.sh
ensure_venv "torch, transformers, gradio" requirements.txt
export GRADIO_ANALYTICS_ENABLED=False NO_PROXY="127.0.0.1,localhost${NO_PROXY:+,$NO_PROXY}"
exec .venv/bin/python app.py --model "${DINOV3_MODEL:-auto}" "$@"
