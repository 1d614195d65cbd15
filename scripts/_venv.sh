# Sourced by scripts/run_app.sh and scripts/test.sh: make sure .venv exists and is up to date.
# Usage: ensure_venv "python modules that must import" requirements.txt [requirements-dev.txt]
# A stamp (.venv/.requirements.sha256) remembers which requirement files were installed, so a
# changed requirements file triggers `pip install -r` again; a working environment built by hand
# (no stamp, every module imports) is left alone.
ensure_venv() {
  local modules="$1"; shift
  local py="${PYTHON:-python3}" stamp=".venv/.requirements.sha256" want req
  want="$(cat "$@" | sha256sum | cut -d' ' -f1)"
  if [ ! -x .venv/bin/python ]; then
    echo "[setup] creating .venv with $("$py" --version 2>&1)"
    "$py" -m venv .venv
    .venv/bin/python -m pip install --upgrade pip >/dev/null
    .venv/bin/python -m pip install torch==2.13.0
  fi
  [ "$(cat "$stamp" 2>/dev/null)" = "$want" ] && return 0
  if [ ! -f "$stamp" ] && .venv/bin/python -c "import $modules" 2>/dev/null; then
    return 0
  fi
  for req in "$@"; do
    echo "[setup] pip install -r $req"
    .venv/bin/python -m pip install -r "$req"
  done
  echo "$want" > "$stamp"
}
