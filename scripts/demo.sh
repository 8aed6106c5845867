#!/usr/bin/env bash
# Set up the environment (first run only) and run the main job: the embedded CPU demo (until the demo recipe lands: the quickstart).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh all
exec .venv/bin/vla-parl quickstart "$@"
