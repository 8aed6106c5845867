#!/usr/bin/env bash
# Create (or reuse) the project virtualenv at .venv and install vla-parl into it.
# Idempotent: re-installs only when pyproject.toml changed. Usage: scripts/setup_env.sh [EXTRAS]
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-all}"
py="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$py" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
fi
stamp=".venv/.vla-parl-installed-$extras"
want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "[setup] installing vla-parl[$extras] into .venv (first run downloads torch: a few minutes)" >&2
  .venv/bin/python -m pip install -q -e ".[$extras]" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
  echo "$want" > "$stamp"
fi
