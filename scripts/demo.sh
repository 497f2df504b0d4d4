#!/usr/bin/env bash
# The main job: simulated Panda arm + SpecPrune policy node, a short episode, a summary.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/env.sh
exec .venv/bin/python -m specprune_ros.demo "$@"
