#!/usr/bin/env bash
# Check the import layers, then run the whole test suite (sets up .venv + dev tools + Chromium on first use).
# Extra arguments go to pytest, e.g.  scripts/test.sh tests/ui -x
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/_venv.sh
source scripts/_venv.sh
ensure_venv "torch, transformers, gradio, pytest, playwright, importlinter" requirements.txt requirements-dev.txt
if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && SUDO="sudo"
  echo "[setup] installing Chromium for the browser tests"
  { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq chromium; } \
    || echo "[setup] could not install Chromium: browser tests will be skipped"
fi
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" GRADIO_ANALYTICS_ENABLED=False HF_HUB_OFFLINE=1 \
       NO_PROXY="127.0.0.1,localhost${NO_PROXY:+,$NO_PROXY}"
# the layers contract (pyproject.toml [tool.importlinter]) first: a violation fails CI before any test runs
.venv/bin/lint-imports
exec .venv/bin/python -m pytest "$@"
