#!/usr/bin/env bash
# Set up the environment (first run only) and run the main job: the embedded CPU demo
# (demos -> SFT -> Cal-QL critic -> offline PA-RL -> online PA-RL; report in runs/demo/report.md).
# Extra arguments go to `vla-parl run demo`, e.g. `scripts/demo.sh seeds=[0,1,2] --output-dir runs/demo3`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh all
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
exec .venv/bin/vla-parl run demo "$@"
