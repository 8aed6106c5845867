#!/usr/bin/env bash
# Create (or reuse) the project virtualenv at .venv and install vla-parl into it.
# Idempotent: re-installs only when pyproject.toml changed. Usage: scripts/setup_env.sh [EXTRAS]
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-all}"
py="${PYTHON:-python3}"
# PyPI downloads (torch pulls ~3 GB of CUDA wheels) can be cut mid-file: pip resumes partial
# downloads, and a failed install is retried a few times before giving up.
pip_net=(--retries 10 --timeout 60)
with_retries() {
  local attempt
  for attempt in 1 2 3; do
    "$@" && return 0
    echo "[setup] attempt $attempt failed; retrying in $((attempt * 15)) s" >&2
    sleep $((attempt * 15))
  done
  "$@" && return 0
  echo "[setup] giving up: check the network connection to PyPI, then run scripts/setup_env.sh again" >&2
  return 1
}
if [ ! -x .venv/bin/python ]; then
  "$py" -m venv .venv
  with_retries .venv/bin/python -m pip install -q "${pip_net[@]}" --upgrade pip
fi
stamp=".venv/.vla-parl-installed-$extras"
want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "[setup] installing vla-parl[$extras] into .venv (first run downloads torch: a few minutes)" >&2
  with_retries .venv/bin/python -m pip install -q "${pip_net[@]}" --resume-retries 20 -e ".[$extras]" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
  echo "$want" > "$stamp"
fi
