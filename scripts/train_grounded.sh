#!/usr/bin/env bash
# The grounded pick_color recipe (issue #11): the OFT L1 recipe plus the four
# training-only auxiliary heads, large-label weighting and early-frame oversampling, in
# three warm-started stages that reproduce the shipped checkpoints/pick_color:
#   A  1032 steps of an 8000-step schedule: the diagnosis' recipe. It grounded x and the
#      instruction but left y's amplitude tiny (see train/auxiliary.py, target readout).
#   B  196 steps of a 6000-step schedule from A, with the parameter-free target readout on
#      every frame: y grounded (README, "Why B"), but SpecPrune's text -> visual scores
#      kept 0 of the named cube's third-person patches.
#   C  267 steps of a 6000-step schedule from B, plus the attention loss on those scores
#      (train/auxiliary.py): the shipped policy.
# Each stage ends at its --stop-step (the LR schedule still follows --steps, as when the
# stages were run and stopped by hand), exports runs/<stage>/checkpoint and is the next
# stage's --init. Resumable: run it again (same command) and every stage continues from its
# saved state, a finished one only re-exports; MINUTES=60 caps each sitting.
#   bash scripts/train_grounded.sh
# Demos: python -m specprune_ros.sim.demos --out demos/pick_color_aux.hdf5 --episodes 400 --seed 0
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

stage() {  # stage RUN_DIR STOP_STEP [extra training options...]
  local run=$1 stop=$2
  shift 2
  local resume=()
  [ -f "$run/train_state.pt" ] && resume=(--resume)
  .venv/bin/python -m specprune.train.training \
    --demos demos/pick_color_aux.hdf5 --out "$run/checkpoint" --state-dir "$run" \
    --preset sim-small --batch-size 16 --lr 8e-4 --seed 0 --stop-step "$stop" "$@" \
    --aux-position 0.2 --aux-colour 0.1 --aux-named 0.2 --aux-target 0.3 \
    --label-weight 1.0 --early-frames 8 --early-repeat 3 \
    --threads "${THREADS:-1}" --save-every-minutes 5 --log-every 20 \
    ${MINUTES:+--minutes "$MINUTES"} "${resume[@]}"
  # the next stage starts from this one's checkpoint only once it reached its stop step
  .venv/bin/python - "$run/checkpoint/training_summary.json" "$stop" <<'PY'
import json, sys
done = json.load(open(sys.argv[1]))["steps"]
if done != int(sys.argv[2]):
    sys.exit(f"{sys.argv[1]}: {done} steps, the stage ends at {sys.argv[2]}: run again "
             "to continue (a state saved past the stop step needs its folder removed)")
PY
}

set -x
stage runs/pick_color_grounded 1032 --steps 8000 --warmup-steps 100
stage runs/pick_color_grounded_b 196 --steps 6000 --warmup-steps 50 \
  --init runs/pick_color_grounded/checkpoint --aux-target-readout fixed --aux-target-all-frames
stage runs/pick_color_grounded_c 267 --steps 6000 --warmup-steps 20 \
  --init runs/pick_color_grounded_b/checkpoint --aux-target-readout fixed \
  --aux-target-all-frames --aux-attention 0.05 --aux-attention-layers=0,1,-1
