#!/usr/bin/env bash
# The multi-task LIBERO policy (issue #19): one libero-deep policy (16 layers) for every
# recorded LIBERO task (every shard in DEMOS), the OFT L1 recipe plus the grounded
# recipe's heads that have labels on LIBERO (patch position; target: the object until the
# grasp, then where it goes), large-label weighting and early-frame oversampling, and NO
# attention loss (--aux-attention): the headline policy gets no help for the pruner.
# The same recipe trains the LIBERO-shaped suites' policy (scripts/tabletop_pipeline.sh:
# DEMOS=demos/tabletop,demos/tabletop_paired RUN=runs/tabletop_grounded, with the
# named-object head added), whose demos carry the same labels.
#
# Reproducible from a clean checkout: scripts/setup.sh, the demos (README, "LIBERO"), then
#   bash scripts/train_libero.sh
# Resumable: SIGTERM / Ctrl-C ends the sitting at a step boundary and saves RUN/train_state.pt
# (also every 10 min); the same command continues exactly where it stopped (bitwise the
# uninterrupted run at the same THREADS, default 2: 4.2-4.7 samples/s on the current 2-core
# development machine, 1.7 (1.0 on one thread) on the slower one before; README, "LIBERO
# training"). MINUTES=60 caps a sitting, STOP_STEP=N ends it at
# step N. The schedule is fixed by STEPS; the data by the demo files, checked on resume.
# Refuses to start while the recording still writes shards (*.partial in DEMOS):
# ALLOW_PARTIAL=1 trains on the complete ones (smoke tests only).
# Extra arguments go to specprune.train.training (they must be the same on resume).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

DEMOS=${DEMOS:-demos/libero}
RUN=${RUN:-runs/libero_deep}
PRESET=${PRESET:-libero-deep}
STEPS=${STEPS:-6000}

# a run kept in the repository (libero_pipeline.sh's keep stage, KEEP_DIR/<run name>)
# continues from there; a finished one's checkpoint is put back in place
KEPT=${KEPT:-${KEEP_DIR:-checkpoints}/$(basename "$RUN")}
if [ ! -f "$RUN/train_state.pt" ] && [ -f "$KEPT/train_state.pt" ]; then
  echo "train_libero: $RUN has no train_state.pt: resuming from the kept $KEPT" >&2
  mkdir -p "$RUN"
  cp "$KEPT/train_state.pt" "$RUN/train_state.pt"
elif [ ! -f "$RUN/train_state.pt" ] && [ -f "$KEPT/checkpoint/model.safetensors" ]; then
  if [ ! -f "$RUN/checkpoint/model.safetensors" ]; then
    mkdir -p "$RUN"
    cp -r "$KEPT/checkpoint" "$RUN/checkpoint"
  fi
  echo "train_libero: $RUN is finished (kept in $KEPT): its checkpoint is in place" >&2
  exit 0
fi
IFS=, read -ra demo_dirs <<< "$DEMOS"  # one folder, or several comma-separated
partial=$(find "${demo_dirs[@]}" -maxdepth 1 -name '*.partial' 2>/dev/null | wc -l)
if [ "$partial" -gt 0 ] && [ -z "${ALLOW_PARTIAL:-}" ]; then
  echo "train_libero: $DEMOS holds $partial unfinished shard(s): the recording is still" \
    "running; train when it is done (ALLOW_PARTIAL=1 overrides)" >&2
  exit 2
fi
resume=()
[ -f "$RUN/train_state.pt" ] && resume=(--resume)

set -x
exec .venv/bin/python -m specprune.train.training \
  --demos "$DEMOS" --out "$RUN/checkpoint" --state-dir "$RUN" \
  --preset "$PRESET" --steps "$STEPS" --warmup-steps 200 --batch-size 16 --lr 8e-4 \
  --seed 0 --val-demos "${VAL_DEMOS:-20}" \
  --aux-position 0.2 --aux-target 0.3 --aux-target-readout fixed --aux-target-all-frames \
  --label-weight 1.0 --early-frames 8 --early-repeat 3 \
  --threads "${THREADS:-2}" --save-every-minutes 10 --log-every 20 \
  ${MINUTES:+--minutes "$MINUTES"} ${STOP_STEP:+--stop-step "$STOP_STEP"} \
  "${resume[@]}" "$@"
