#!/usr/bin/env bash
# Start DINOv3 Explorer on the bundled offline model (sets up .venv on first use).
# Extra arguments go to app.py, e.g.  scripts/run_app.sh --port 8000 --model /path/to/hf-folder
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/_venv.sh
source scripts/_venv.sh
ensure_venv "torch, transformers, gradio" requirements.txt
export GRADIO_ANALYTICS_ENABLED=False NO_PROXY="127.0.0.1,localhost${NO_PROXY:+,$NO_PROXY}"
exec .venv/bin/python app.py --model "${DINOV3_MODEL:-bundled}" "$@"
