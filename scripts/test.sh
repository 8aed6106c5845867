#!/usr/bin/env bash
# Set up the environment (first run only) and run the whole test suite. Extra args go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh all
exec .venv/bin/python -m pytest "$@"
