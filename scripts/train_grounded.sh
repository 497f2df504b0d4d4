#!/usr/bin/env bash
# The grounded pick_color recipe (issue #11): the OFT L1 recipe plus the four
# training-only auxiliary heads, large-label weighting and early-frame oversampling.
# Resumable: run it again (same command) and it continues from the saved state; each
# sitting stops after --minutes (default here: until the schedule ends) or Ctrl-C.
#   bash scripts/train_grounded.sh            # first sitting or any later one
#   MINUTES=60 bash scripts/train_grounded.sh # a sitting of at most an hour
# Demos: python -m specprune_ros.sim.demos --out demos/pick_color_aux.hdf5 --episodes 400 --seed 0
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
RUN=runs/pick_color_grounded
RESUME=()
[ -f "$RUN/train_state.pt" ] && RESUME=(--resume)
exec .venv/bin/python -m specprune.train.training \
  --demos demos/pick_color_aux.hdf5 --out "$RUN/checkpoint" --state-dir "$RUN" \
  --preset sim-small --steps 8000 --batch-size 16 --lr 8e-4 --warmup-steps 100 --seed 0 \
  --aux-position 0.2 --aux-colour 0.1 --aux-named 0.2 --aux-target 0.3 \
  --label-weight 1.0 --early-frames 8 --early-repeat 3 \
  --threads "${THREADS:-1}" --save-every-minutes 5 --log-every 20 \
  ${MINUTES:+--minutes "$MINUTES"} "${RESUME[@]}"
