# Sourced by scripts/run_app.sh and scripts/test.sh: make sure .venv exists and is up to date.
# Usage: ensure_venv "python modules that must import" requirements.txt [requirements-dev.txt]
# A stamp (.venv/.requirements.sha256) remembers which requirement files were installed, so a
# changed requirements file triggers `pip install -r` again; a working environment built by hand
# (no stamp, every module imports) is left alone.
TORCH_SPEC="${TORCH_SPEC:-torch==2.14.1 torchvision==0.29.1}"

ensure_venv() {
  local modules="$1"; shift
  local py="${PYTHON:-python3}" stamp=".venv/.requirements.sha256" want req
  want="$(cat "$@" | sha256sum | cut -d' ' -f1)"
  if [ ! -x .venv/bin/python ]; then
    echo "[setup] creating .venv with $("$py" --version 2>&1)"
    "$py" -m venv .venv
    .venv/bin/python -m pip install --upgrade pip >/dev/null
    # shellcheck disable=SC2086 # TORCH_SPEC is a list of requirement specifiers
    .venv/bin/python -m pip install $TORCH_SPEC
  fi
  [ "$(cat "$stamp" 2>/dev/null)" = "$want" ] && return 0
  if [ ! -f "$stamp" ] && .venv/bin/python -c "import $modules" 2>/dev/null; then
    return 0
  fi
  for req in "$@"; do
    echo "[setup] pip install -r $req"
    .venv/bin/python -m pip install -r "$req"
  done
  if ! .venv/bin/python -c "from transformers import DINOv3ViTModel" 2>/dev/null; then
    # Seen on machines whose local wheel is torch+cpu while torchvision (pulled in by timm) is the
    # default CUDA build: torchvision's ops fail to load and transformers cannot import models.
    echo "[setup] ERROR: transformers cannot import DINOv3ViTModel in .venv." >&2
    .venv/bin/python -c "import torchvision" 2>&1 | tail -1 >&2 || true
    echo "[setup] torch and torchvision builds probably do not match: $(.venv/bin/pip list 2>/dev/null | grep -E '^torch(vision)? ' | tr -s ' ' | tr '\n' ' ')" >&2
    echo "[setup] install a matching pair (e.g. TORCH_SPEC='torch==2.14.1' with torchvision==0.29.1) and rerun." >&2
    return 1
  fi
  echo "$want" > "$stamp"
}
