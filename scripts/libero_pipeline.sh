#!/usr/bin/env bash
# The LIBERO benchmark of issue #19 from demonstrations to the development table, as one
# resumable job: rerun the same command after any stop (a reboot, the end of a session)
# and every stage continues where it was.
#
#   nohup bash scripts/libero_pipeline.sh > runs/libero_pipeline.log 2>&1 &
#
# 1. record  demos for every task with an expert, two recorders side by side (nice 19);
#            complete shards are kept, a stopped shard is recorded again from its seeds
# 2. train   scripts/train_libero.sh (no attention loss), resumable to the step
# 3. evaluate development episodes per task (seeds from DEV_SEED, never the fixed initial
#            states), unpruned / SpecPrune / FastV / random, one JSON per task, skipped
#            when it exists; then the ablations on fewer episodes
# 4. table   specprune-suite-table over each suite's task JSONs
#
# The claim (the benchmark's 50 fixed initial states per task, --claim) is NOT run here:
# it runs once, at the end, by hand (README, "LIBERO").
# Stages can be chosen: bash scripts/libero_pipeline.sh record train
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

DEMOS=${DEMOS:-demos/libero}
RUN=${RUN:-runs/libero_deep}
EVAL=${EVAL:-runs/libero_eval}
# suite:tasks with a scripted expert (libero_experts.py / libero_primitives.py docstrings);
# a two-part task's demos are labelled part by part (libero_demos.py, obs/part).
RECORD=${RECORD:-"libero_spatial:0-3,5-9 libero_object:0-9 libero_goal:1,2,4-9 libero_10:0,1,2,7"}
EVAL_EPISODES=${EVAL_EPISODES:-10}  # per task: 100 paired episodes per 10-task suite
ABLATION_EPISODES=${ABLATION_EPISODES:-5}  # per task: 50 per suite
DEV_SEED=${DEV_SEED:-500000}
THREADS=${THREADS:-1}
stages=("$@")
[ ${#stages[@]} -eq 0 ] && stages=(record train evaluate table)

log() { echo "$(date -u +%FT%TZ) libero_pipeline: $*"; }

record() {
  local pids=() item
  for item in $RECORD; do
    nice -n 19 .venv/bin/python -m specprune_ros.sim.libero_demos --suite "${item%%:*}" \
      --tasks "${item#*:}" --per-task 50 --seed 10000 --frame-every 4 --shard-size 10 \
      --out "$DEMOS" &
    pids+=($!)
    if [ ${#pids[@]} -ge 2 ]; then wait "${pids[0]}"; pids=("${pids[@]:1}"); fi
  done
  for pid in "${pids[@]}"; do wait "$pid"; done
}

evaluate_task() {  # suite task episodes configs name
  local out="$EVAL/$5_$1_task$(printf %02d "$2").json"
  [ -f "$out" ] && return 0
  log "evaluate $1:$2 ($4, $3 episodes)"
  .venv/bin/python -m specprune_ros.eval.evaluate --policy "$RUN/checkpoint" \
    --task "$1:$2" --episodes "$3" --seed "$DEV_SEED" --configs "$4" \
    --prune layer_depth=32 --threads "$THREADS" --json "$out.tmp"
  mv "$out.tmp" "$out"
}

evaluate() {
  mkdir -p "$EVAL"
  local item suite task
  for name in main ablations; do
    for item in $RECORD; do
      suite=${item%%:*}
      for task in $(.venv/bin/python -c "from specprune_ros.sim.libero_experts import \
parse_ranges; print(*parse_ranges('${item#*:}'))"); do
        if [ "$name" = main ]; then
          evaluate_task "$suite" "$task" "$EVAL_EPISODES" unpruned,specprune,fastv,random main
        else
          evaluate_task "$suite" "$task" "$ABLATION_EPISODES" \
            specprune,no_global,no_dynamic,no_local,no_action_aware,no_layer_pruning ablations
        fi
      done
    done
  done
}

table() {
  local item suite
  for item in $RECORD; do
    suite=${item%%:*}
    .venv/bin/python -m specprune_ros.eval.suite_table "$EVAL"/main_"$suite"_task*.json \
      --md "$EVAL/table_$suite.md" --plot "$EVAL/table_$suite.png"
  done
}

for stage in "${stages[@]}"; do
  log "stage $stage"
  case "$stage" in
    record) record ;;
    train) bash scripts/train_libero.sh ;;
    evaluate) evaluate ;;
    table) table ;;
    *) echo "unknown stage $stage (record, train, evaluate, table)" >&2; exit 2 ;;
  esac
done
log "done: ${stages[*]}"
