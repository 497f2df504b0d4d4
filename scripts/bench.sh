#!/usr/bin/env bash
# The SpecPrune benchmark on the oft-cpu preset (unpruned vs SpecPrune vs FastV).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/env.sh
mkdir -p bench_out
exec .venv/bin/python -m specprune.bench --json bench_out/bench.json "$@"
