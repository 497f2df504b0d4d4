#!/usr/bin/env bash
# The LIBERO benchmark of issue #19 from demonstrations to the development table, as one
# resumable job: rerun the same command after any stop (a reboot, the end of a session)
# and every stage continues where it was.
#
#   nohup bash scripts/libero_pipeline.sh > runs/libero_pipeline.log 2>&1 &
#
# 1. record   PER_TASK demos for every task with an expert, JOBS recorders side by side
#             (nice 19), breadth first: round r records shard r of every task, so a stop
#             at any point leaves every task with the same number of demos, not some tasks
#             with all of theirs and others with none; complete shards are kept, a stopped
#             shard is recorded again from its own seeds (the same demos)
#             (tabletop: then PAIRED_RECORD's tasks again on shared scenes, see below)
# 2. train    scripts/train_libero.sh (no attention loss), resumable to the step
# keep        (never a default stage) RUN's train_state.pt, or its checkpoint folder once
#             the run is finished, copied to KEEP_DIR/<run name> to be committed: the next
#             checkout resumes from there (scripts/train_libero.sh)
# 3. evaluate development episodes per task (seeds from DEV_SEED, never the fixed initial
#             states), unpruned / SpecPrune / FastV / random, SUITE_EPISODES paired per
#             suite split over its tasks, one JSON per task, skipped when it exists, each
#             finished episode journalled beside it (.jsonl) so a stopped task resumes at
#             its next episode; then the ablations on ABLATION_EPISODES per suite
# 4. ros      ROS_SUITE over ROS (bridge, node, executor), unpruned / SpecPrune,
#             SUITE_EPISODES paired, each task journalled and resumed episode by episode
# 5. table    specprune-suite-table over each suite's task JSONs
#
# attention (never a default stage; issue #19's second, labelled row, for when SpecPrune
#   loses on the headline policy): the headline checkpoint fine-tuned with the attention loss
#   (--aux-attention ATTN_WEIGHT: help for the pruner, reported as such) for ATTN_STEPS into
#   RUN_ATTN, resumable like train; then the main configurations on the same development
#   seeds into EVAL/attention_<suite>_taskNN.json and their tables. The loss counts the
#   object's and the target's patches (--aux-attention-target): on the headline policy
#   SpecPrune kept the named object's patches at ~1.5-2x chance but the target's at chance
#   (demo replays of every task, README), and the instruction names both.
#
# token_drop (never a default stage; a third labelled row, help for the pruner twice over):
#   RUN_ATTN's checkpoint fine-tuned for DROP_STEPS with the attention loss kept and the
#   token-drop augmentation (specprune/train/token_drop.py: DROP_SHARE of the steps lose a
#   random subset of the visual tokens, kept share uniform in [DROP_KEEP_MIN, 1], before
#   one of DROP_LAYERS) into RUN_DROP, resumable like train. Why: on the headline policy
#   even random dropping at SpecPrune's budget costs 4-15 points (README), a from-scratch
#   policy has none of a pretrained 7B model's slack. Evaluated as any policy:
#   HEADLINE=<RUN_DROP> KEEP_SCALE=2 bash scripts/tabletop_pipeline.sh evaluate ros table
#   DROP_SCORED=s > 0 (with DROP_LAYERS=2): a share s of the drop steps keeps SpecPrune's
#   V_local in each sample instead of random tokens (--token-drop-scored): training for
#   SpecPrune's own selection; DROP_FROM (default RUN_ATTN) the checkpoint it starts from,
#   RUN_DROP gets a _scored suffix. DROP_LAYERS=L > 2: the V_local of the two layers before
#   L (SpecPrune with PRUNE_MORE="local_first_layer=L-2"), RUN_DROP ..._scored_atL.
#
# claim (never a default stage: it runs once, at the end, by naming it):
#   bash scripts/libero_pipeline.sh claim
# the benchmark's fixed initial states 0..CLAIM_STATES-1 of every task in RECORD (the tasks
# the policy was trained on), the main configurations, one JSON per task in CLAIM_DIR and
# its table. CLAIM_STATES is fixed here before any claim run (10 of the 50 per task: 500
# episodes per suite per configuration do not fit this project's CPUs); a claim JSON is never
# written over.
# Stages can be chosen: bash scripts/libero_pipeline.sh record train
# DRY_RUN=1 prints each command a stage would run instead of running it.
#
# BENCH=tabletop runs the same chain on the LIBERO-shaped suites of our own simulator
# (specprune_ros/sim/tabletop_suites.py; scripts/tabletop_pipeline.sh sets it): their
# recorder, tasks named <suite>_<index>, its own folders, and a claim on the claim seed
# range fixed in specprune_ros/eval/configurations.py (CLAIM_SEEDS) instead of LIBERO's
# fixed initial states, as many per task as the main configurations' development runs.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

BENCH=${BENCH:-libero}
case "$BENCH" in
  libero)
    RECORDER=specprune_ros.sim.libero_demos SEP=:
    # suite:tasks with a scripted expert (libero_experts.py / libero_primitives.py
    # docstrings); a two-part task's demos are labelled part by part (obs/part).
    RECORD=${RECORD:-"libero_spatial:0-3,5-9 libero_object:0-9 libero_goal:1,2,4-9 libero_10:0,1,2,7"}
    claim_episodes() { echo "$CLAIM_STATES"; }  # suite:tasks -> claim episodes per task
    ;;
  tabletop)
    RECORDER=specprune_ros.sim.tabletop_demos SEP=_
    RECORD=${RECORD:-"sim_spatial:0-3 sim_object:0-3 sim_goal:0-3 sim_long:0-2"}
    PER_TASK=${PER_TASK:-40}
    RUN=${RUN:-runs/tabletop_grounded}
    # The headline recipe (since the step-6000 policy of runs/tabletop_deep went for the
    # wrong object: it read the side words of sim_spatial's instructions but not the
    # landmark words, and never grasped sim_long_2's first object): PAIRED_RECORD's tasks
    # recorded a second time with --shared-scenes (every task of a suite on the same seeds
    # from 80000; a suite's tasks share their scene on a seed, so each scene is shown under
    # every instruction and only the words tell the demos apart), PAIRED_PER_TASK per task
    # into PAIRED_DEMOS, trained on with the rest;
    # and the grounded recipe's named-object head (--aux-named NAMED_WEIGHT: the visual
    # states entering layer 2 -> "this patch shows the object the instruction names",
    # labels from the demos' object boxes). Not the attention loss (no loss on the scores
    # SpecPrune ranks by), but it does teach early layers which patches matter: said so
    # wherever its rows are shown.
    PAIRED_RECORD=${PAIRED_RECORD-$RECORD}  # set empty: none
    PAIRED_PER_TASK=${PAIRED_PER_TASK:-20}
    ROS_SUITE=${ROS_SUITE:-sim_object}
    claim_episodes() { per_task "$SUITE_EPISODES" "$1"; }  # as many as development
    ;;
  *) echo "libero_pipeline: BENCH=$BENCH: libero or tabletop" >&2; exit 2 ;;
esac
DEMOS=${DEMOS:-demos/$BENCH}
RUN=${RUN:-runs/${BENCH}_deep}
PAIRED_RECORD=${PAIRED_RECORD:-}  # none on LIBERO
PAIRED_PER_TASK=${PAIRED_PER_TASK:-20}
PAIRED_DEMOS=${PAIRED_DEMOS:-${DEMOS}_paired}
NAMED_WEIGHT=${NAMED_WEIGHT:-0.2}
TRAIN_DEMOS=$DEMOS  # what the headline recipe trains on, and its extra heads
TRAIN_ARGS=()
if [ "$BENCH" = tabletop ]; then
  [ -n "$PAIRED_RECORD" ] && TRAIN_DEMOS=$DEMOS,$PAIRED_DEMOS
  TRAIN_ARGS=(--aux-named "$NAMED_WEIGHT")
fi
# a run's resumable state (train_state.pt) and, once finished, its checkpoint are committed
# in KEEP_DIR/<run name> by the keep stage (ignored folders do not outlive a checkout);
# scripts/train_libero.sh resumes from there when RUN has no state of its own
KEEP_DIR=${KEEP_DIR:-checkpoints}
checkpoint_of() {  # run -> its checkpoint folder, or in a checkout without the run folder
  local kept=$KEEP_DIR/$(basename "$1")/checkpoint  # the keep stage's committed copy
  if [ ! -f "$1/checkpoint/model.safetensors" ] && [ -f "$kept/model.safetensors" ]; then
    echo "$kept"
  else
    echo "$1/checkpoint"
  fi
}
# the run whose checkpoint the evaluation, the ROS suite, the claim and the attention
# variant use; another policy than RUN's gets its results elsewhere (a task whose JSON
# exists is never run again, a claim JSON never written over)
HEADLINE=${HEADLINE:-$RUN}
# SpecPrune's alpha (PruneConfig.keep_scale: every K times this) in every configuration
# of the evaluation, the claim and the ROS suite; FastV and random keep SpecPrune's count
# step by step, so they follow. 1: the ICML version's K (~22 % of the visual tokens kept on
# these policies); 2: ~45 %, the share the paper measured with its released code (~48 %).
# Other than 1, the results go to folders of their own (<run>_keep<alpha>_eval).
KEEP_SCALE=${KEEP_SCALE:-1}
# results/<run>_eval and results/<run>_claim: never mixed with another policy's, and
# tracked (JSONs, tables and the per-episode journals a stopped evaluation resumes from):
# commit them at the end of each sitting, ignored folders do not outlive a checkout
results=results/$(basename "$HEADLINE")
[ "$KEEP_SCALE" = 1 ] || results=${results}_keep$KEEP_SCALE
EVAL=${EVAL:-${results}_eval}
PER_TASK=${PER_TASK:-50}  # demos per task (a multiple of SHARD)
SHARD=10  # demos per shard; a shard's seeds depend on (task, shard), not on PER_TASK
if [ $((PER_TASK % SHARD)) -ne 0 ] || [ "$PER_TASK" -lt "$SHARD" ]; then
  echo "libero_pipeline: PER_TASK=$PER_TASK must be a positive multiple of $SHARD" >&2
  exit 2
fi
SUITE_EPISODES=${SUITE_EPISODES:-100}  # paired per suite, split evenly over its tasks
ABLATION_EPISODES=${ABLATION_EPISODES:-50}  # per suite (0: the main configurations only)
ROS_SUITE=${ROS_SUITE:-libero_object}
CLAIM_DIR=${CLAIM_DIR:-${results}_claim}
CLAIM_STATES=10  # fixed before any claim run: initial states 0-9 of every task in RECORD
MAIN=${MAIN:-unpruned,specprune,fastv,random}  # a subset: a variant on seeds already run
PRUNE_MORE=${PRUNE_MORE:-}  # more FIELD=VALUE PruneConfig settings for every evaluation
# how FastV / random / grid follow SpecPrune's budget in process (specprune-eval
# --budget-match): step (its static count per step) or compute (its token-layers per step)
BUDGET_MATCH=${BUDGET_MATCH:-step}
# the ablations run beside unpruned and SpecPrune, so that each one's speedup is measured
# side by side and its success paired with SpecPrune's on the same seeds
ABLATIONS=unpruned,specprune,no_global,no_dynamic,no_local,no_action_aware,no_layer_pruning
DEV_SEED=${DEV_SEED:-500000}
# takeover (tabletop only, never a default stage until it is adopted): DAgger-style demos
#   where the trained policy drives until a seeded switch tick and the expert finishes
#   (specprune_ros/eval/takeover_demos.py), TAKEOVER_PER_TASK per task into TAKEOVER_DEMOS;
#   then the policy fine-tuned from RUN on the demos and those (TAKEOVER_STEPS) into
#   RUN_TAKEOVER, resumable like train. No help for the pruner: the same heads and losses.
TAKEOVER_DEMOS=${TAKEOVER_DEMOS:-${DEMOS}_takeover}
TAKEOVER_PER_TASK=${TAKEOVER_PER_TASK:-20}
TAKEOVER_STEPS=${TAKEOVER_STEPS:-2000}
RUN_TAKEOVER=${RUN_TAKEOVER:-${RUN}_takeover}
RUN_ATTN=${RUN_ATTN:-${HEADLINE}_attention}
# contrast (tabletop only, never a default stage until it is adopted): CONTRAST_PER_TASK
#   more shared-scene demos per task of CONTRAST_RECORD (seeds from 82000, after the
#   paired demos' 80000-81999) into CONTRAST_DEMOS, then the policy fine-tuned from RUN on
#   the training demos and those (CONTRAST_STEPS) into RUN_CONTRAST, resumable like train.
#   For the words the step-6000 policy did not read (colour, landmark): on one scene each
#   task's demo differs from the others only by the instruction. The same heads and losses.
CONTRAST_RECORD=${CONTRAST_RECORD:-"sim_spatial:0-3 sim_object:0-3 sim_long:0-2"}
CONTRAST_PER_TASK=${CONTRAST_PER_TASK:-20}
CONTRAST_DEMOS=${CONTRAST_DEMOS:-${DEMOS}_contrast}
CONTRAST_STEPS=${CONTRAST_STEPS:-2000}
RUN_CONTRAST=${RUN_CONTRAST:-${RUN}_contrast}
for count in TAKEOVER_PER_TASK PAIRED_PER_TASK CONTRAST_PER_TASK; do
  if [ $((${!count} % SHARD)) -ne 0 ] || [ "${!count}" -lt "$SHARD" ]; then
    echo "libero_pipeline: $count=${!count} must be a positive multiple of $SHARD" >&2
    exit 2
  fi
done
ATTN_STEPS=${ATTN_STEPS:-1500}  # fine-tuning steps from the headline checkpoint
ATTN_WEIGHT=${ATTN_WEIGHT:-0.05}  # pick_color's stage C weight
demos_of() {  # run -> the demos it was trained on (a data-fix stage's fine-tune adds its own)
  case "$1" in
    "$RUN_CONTRAST") echo "$TRAIN_DEMOS,$CONTRAST_DEMOS" ;;
    "$RUN_TAKEOVER") echo "$TRAIN_DEMOS,$TAKEOVER_DEMOS" ;;
    *) echo "$TRAIN_DEMOS" ;;
  esac
}
ATTN_DEMOS=${ATTN_DEMOS:-$(demos_of "$HEADLINE")}
DROP_STEPS=${DROP_STEPS:-1000}
DROP_SHARE=${DROP_SHARE:-0.5}  # of the training steps
DROP_KEEP_MIN=${DROP_KEEP_MIN:-0.15}  # SpecPrune keeps ~22 % at alpha 1, ~45 % at 2
DROP_LAYERS=${DROP_LAYERS:-1,2}  # SpecPrune's candidates and final set; FastV, random: 2
DROP_SCORED=${DROP_SCORED:-0}  # share of the drop steps keeping SpecPrune's V_local
DROP_FROM=${DROP_FROM:-$RUN_ATTN}
drop_run=${RUN_ATTN}_tokendrop
[ "$DROP_SCORED" = 0 ] || drop_run=${drop_run}_scored
# a scored drop before a later layer (its scores from the two layers before it): its own run
[ "$DROP_SCORED" = 0 ] || [ "$DROP_LAYERS" = 2 ] || drop_run=${drop_run}_at${DROP_LAYERS//,/_}
RUN_DROP=${RUN_DROP:-$drop_run}
THREADS=${THREADS:-1}
# the action deviation from unpruned costs one reference pass per sampled step: every 4th
# step keeps ~10 samples per episode and saves a fifth of an evaluation's time (profiled:
# policy passes ~65 %, physics and renders ~35 % of an episode)
L1_EVERY=${L1_EVERY:-4}
JOBS=${JOBS:-2}  # processes side by side (one per core here)
# one llvmpipe render thread per LIBERO worker: JOBS workers share the cores already
[ "$JOBS" -gt 1 ] && export LP_NUM_THREADS=${LP_NUM_THREADS:-1}
stages=("$@")
[ ${#stages[@]} -eq 0 ] && stages=(record train evaluate ros table)

log() { echo "$(date -u +%FT%TZ) libero_pipeline ($BENCH): $*"; }
x() { if [ -n "${DRY_RUN:-}" ]; then echo "DRY_RUN: $*"; else "$@"; fi; }

source scripts/jobs.sh  # spawn, drain: at most JOBS at once, a failed job stops the run

tasks_of() {  # suite:ranges ("libero_spatial:0-3,5-9") -> the task indices, in order
  local part out=()
  IFS=, read -ra parts <<< "${1#*:}"
  for part in "${parts[@]}"; do
    if [[ $part == *-* ]]; then out+=($(seq "${part%-*}" "${part#*-}")); else out+=("$part"); fi
  done
  echo "${out[@]}"
}

per_task() {  # total suite:ranges -> episodes per task, at least total over the suite
  local n
  n=$(tasks_of "$2" | wc -w)
  echo $(( ($1 + n - 1) / n ))
}

shard_rounds() {  # total niceness module [args...]: breadth first, one shard of every
  local total=$1 niceness=$2 module=$3 item per  # task per round, total / SHARD rounds
  shift 3
  for per in $(seq "$SHARD" "$SHARD" "$total"); do
    for item in $RECORD; do
      spawn x nice -n "$niceness" .venv/bin/python -m "$module" \
        --suite "${item%%:*}" --tasks "${item#*:}" --per-task "$per" --shard-size "$SHARD" \
        --frame-every 4 "$@"
    done
    drain
  done
}

tabletop_only() {  # what: a stage (part) our own simulator's suites alone have
  if [ "$BENCH" != tabletop ]; then
    echo "libero_pipeline: $1 the tabletop suites only" >&2
    exit 2
  fi
}

record() {
  shard_rounds "$PER_TASK" 19 "$RECORDER" --seed 10000 --out "$DEMOS"
  [ -z "$PAIRED_RECORD" ] && return 0
  tabletop_only "PAIRED_RECORD: shared scenes are recorded on"
  RECORD=$PAIRED_RECORD shard_rounds "$PAIRED_PER_TASK" 19 "$RECORDER" --seed 80000 \
    --out "$PAIRED_DEMOS" --shared-scenes
}

# A training sitting can end before its last step and still exit 0 (SIGTERM, MINUTES,
# STOP_STEP: it saves and stops at a step boundary). Nothing after it may then run on the
# partial checkpoint: the chain stops here with exit 3, and the same command resumes it.
trained() {  # run (a dry run prints the check: its plan never depends on runs/)
  local state=$1/train_state.pt
  if [ -n "${DRY_RUN:-}" ]; then
    echo "DRY_RUN: trained $1"
  elif [ -f "$state" ] && ! .venv/bin/python -m specprune.train.resumable finished "$state"
  then
    log "$1 stopped before its last step: run the same command again to resume it;" \
      "nothing runs on its partial checkpoint"
    exit 3
  fi
  return 0
}

sitting() {  # run demos steps(empty: the script's) [train_libero args...]: one sitting
  local run=$1 demos=$2 steps=$3
  shift 3
  x env DEMOS="$demos" RUN="$run" ${steps:+STEPS="$steps"} bash scripts/train_libero.sh "$@"
  trained "$run"
}

train() { sitting "$RUN" "$TRAIN_DEMOS" "" "${TRAIN_ARGS[@]}"; }

keep() {  # commit-ready copy of RUN: its resumable state, or its checkpoint once finished
  local dest=$KEEP_DIR/$(basename "$RUN")
  if [ ! -f "$RUN/train_state.pt" ]; then
    echo "libero_pipeline: keep: $RUN has no train_state.pt" >&2
    exit 2
  fi
  x mkdir -p "$dest"
  if .venv/bin/python -m specprune.train.resumable finished "$RUN/train_state.pt"; then
    if [ ! -f "$RUN/checkpoint/model.safetensors" ]; then
      echo "libero_pipeline: keep: $RUN is finished but has no checkpoint" >&2
      exit 2
    fi
    # the finished checkpoint replaces the state (scripts/train_libero.sh restores either)
    x rm -rf "$dest/checkpoint.tmp"
    x cp -r "$RUN/checkpoint" "$dest/checkpoint.tmp"
    x rm -rf "$dest/checkpoint" "$dest/train_state.pt"
    x mv "$dest/checkpoint.tmp" "$dest/checkpoint"
  else
    x cp "$RUN/train_state.pt" "$dest/train_state.pt.tmp"
    x mv "$dest/train_state.pt.tmp" "$dest/train_state.pt"
  fi
  log "keep: $RUN -> $dest (git add it to keep it)"
}

evaluate_task() {  # out suite task episodes configs [extra evaluate arguments...]
  # every finished episode is journalled in out's .jsonl: a stopped run resumes there; once
  # the JSON holds the result the journal goes (a JSON deleted to run a task again must not
  # be rebuilt from the old journal)
  local out=$1 suite=$2 task=$3 episodes=$4 configs=$5 sampling=() alpha=() setting
  shift 5
  [ -f "$out" ] && return 0
  [[ " $* " == *" --via ros "* ]] ||  # in process only
    sampling=(--l1-every "$L1_EVERY" --budget-match "$BUDGET_MATCH")
  [ "$KEEP_SCALE" = 1 ] || alpha=(--prune keep_scale="$KEEP_SCALE")
  for setting in $PRUNE_MORE; do alpha+=(--prune "$setting"); done
  log "evaluate $suite$SEP$task ($configs, $episodes episodes$([ $# -gt 0 ] && echo ", $*"))"
  x .venv/bin/python -m specprune_ros.eval.evaluate \
    --policy "$(checkpoint_of "${POLICY:-$HEADLINE}")" --task "$suite$SEP$task" \
    --episodes "$episodes" --configs "$configs" --prune layer_depth=32 --threads "$THREADS" \
    "${alpha[@]}" "${sampling[@]}" --json "$out.tmp" --resume "${out%.json}.jsonl" "$@"
  x mv "$out.tmp" "$out"
  x rm -f "${out%.json}.jsonl"
}

name_of() { echo "$1/$2_$3_task$(printf %02d "$4").json"; }  # dir kind suite task

evaluate() {
  x mkdir -p "$EVAL"
  local item suite task n configs
  local kinds=(main ablations)
  [ "$ABLATION_EPISODES" -gt 0 ] || kinds=(main)
  for kind in "${kinds[@]}"; do
    for item in $RECORD; do
      suite=${item%%:*}
      if [ "$kind" = main ]; then n=$(per_task "$SUITE_EPISODES" "$item") configs=$MAIN
      else n=$(per_task "$ABLATION_EPISODES" "$item") configs=$ABLATIONS; fi
      for task in $(tasks_of "$item"); do
        spawn evaluate_task "$(name_of "$EVAL" "$kind" "$suite" "$task")" "$suite" "$task" \
          "$n" "$configs" --seed "$DEV_SEED"
      done
    done
  done
  drain
}

attention() {  # fine-tune with the attention loss, then the main configurations on it
  sitting "$RUN_ATTN" "$ATTN_DEMOS" "$ATTN_STEPS" --init "$(checkpoint_of "$HEADLINE")" \
    "${TRAIN_ARGS[@]}" --aux-attention "$ATTN_WEIGHT" --aux-attention-target \
    --lr 2e-4 --warmup-steps 50
  x mkdir -p "$EVAL"
  local item suite task
  for item in $RECORD; do
    suite=${item%%:*}
    for task in $(tasks_of "$item"); do
      POLICY=$RUN_ATTN spawn evaluate_task "$(name_of "$EVAL" attention "$suite" "$task")" \
        "$suite" "$task" "$(per_task "$SUITE_EPISODES" "$item")" "$MAIN" --seed "$DEV_SEED"
    done
  done
  drain
  table "$EVAL" attention
}

token_drop() {  # the attention-trained policy made robust to dropped visual tokens
  local scored=()
  [ "$DROP_SCORED" = 0 ] || scored=(--token-drop-scored "$DROP_SCORED")
  trained "$DROP_FROM"
  sitting "$RUN_DROP" "$ATTN_DEMOS" "$DROP_STEPS" --init "$(checkpoint_of "$DROP_FROM")" \
    "${TRAIN_ARGS[@]}" --aux-attention "$ATTN_WEIGHT" --aux-attention-target \
    --token-drop "$DROP_SHARE" --token-drop-keep-min "$DROP_KEEP_MIN" \
    --token-drop-layers "$DROP_LAYERS" "${scored[@]}" --lr 2e-4 --warmup-steps 50
}

fine_tune() {  # run demos steps from [train_libero args...]: a warm start from FROM's
  local run=$1 demos=$2 steps=$3 from=$4  # checkpoint at the fine-tuning rate, resumable
  shift 4
  sitting "$run" "$demos" "$steps" --init "$(checkpoint_of "$from")" "${TRAIN_ARGS[@]}" "$@" \
    --lr 3e-4 --warmup-steps 50
}

takeover() {  # the policy's near misses finished by the expert, then the fine-tune
  tabletop_only "the takeover stage records"
  shard_rounds "$TAKEOVER_PER_TASK" 10 specprune_ros.eval.takeover_demos \
    --policy "$(checkpoint_of "$RUN")" --seed 70000 --out "$TAKEOVER_DEMOS"
  fine_tune "$RUN_TAKEOVER" "$(demos_of "$RUN_TAKEOVER")" "$TAKEOVER_STEPS" "$RUN"
}

contrast() {  # more scenes told apart by their words alone, then the fine-tune
  tabletop_only "the contrast stage records"
  RECORD=$CONTRAST_RECORD shard_rounds "$CONTRAST_PER_TASK" 19 "$RECORDER" --seed 82000 \
    --out "$CONTRAST_DEMOS" --shared-scenes
  fine_tune "$RUN_CONTRAST" "$(demos_of "$RUN_CONTRAST")" "$CONTRAST_STEPS" "$RUN"
}

ros() {  # one suite through the deployment path; one process at a time (it runs the bridge)
  x mkdir -p "$EVAL"
  local item task n
  for item in $RECORD; do
    [ "${item%%:*}" = "$ROS_SUITE" ] || continue
    n=$(per_task "$SUITE_EPISODES" "$item")
    for task in $(tasks_of "$item"); do
      local out
      out=$(name_of "$EVAL" ros "$ROS_SUITE" "$task")
      evaluate_task "$out" "$ROS_SUITE" "$task" "$n" unpruned,specprune --via ros \
        --seed "$DEV_SEED"
    done
  done
}

claim() {
  x mkdir -p "$CLAIM_DIR"
  local item suite task out n
  for item in $RECORD; do
    suite=${item%%:*}
    n=$(claim_episodes "$item")
    for task in $(tasks_of "$item"); do
      out=$(name_of "$CLAIM_DIR" claim "$suite" "$task")
      if [ -f "$out.tmp" ]; then  # done (written whole or not at all), not yet renamed
        x mv "$out.tmp" "$out"
        x rm -f "${out%.json}.jsonl"
        continue
      fi
      spawn evaluate_task "$out" "$suite" "$task" "$n" "$MAIN" --claim
    done
  done
  drain
  table "$CLAIM_DIR" claim
}

table() {  # [dir kind]: one table per suite, then the paper's Table 1 over every suite
  local dir=${1:-$EVAL} kind=${2:-main} item suite all=()
  for item in $RECORD; do
    suite=${item%%:*}
    x .venv/bin/python -m specprune_ros.eval.suite_table "$dir/${kind}_${suite}"_task*.json \
      --md "$dir/table_${kind}_$suite.md" --plot "$dir/table_${kind}_$suite.png"
    all+=("$dir/${kind}_${suite}"_task*.json)
  done
  x .venv/bin/python -m specprune_ros.eval.suite_table "${all[@]}" \
    --md "$dir/table_${kind}.md" --plot "$dir/table_${kind}.png"
  if [ "$kind" = main ] && [ -n "$(ls "$dir"/ablations_*_task*.json 2>/dev/null)" ]; then
    x .venv/bin/python -m specprune_ros.eval.suite_table "$dir"/ablations_*_task*.json \
      --md "$dir/table_ablations.md" --plot "$dir/table_ablations.png"
  fi
  [ "$kind" = main ] && [ -n "$(ls "$dir"/ros_"$ROS_SUITE"_task*.json 2>/dev/null)" ] && \
    x .venv/bin/python -m specprune_ros.eval.suite_table "$dir"/ros_"$ROS_SUITE"_task*.json \
      --md "$dir/table_ros_$ROS_SUITE.md" --plot "$dir/table_ros_$ROS_SUITE.png"
  return 0
}

# Bash reads a script as it runs it: editing this file during a long stage (a training of
# hours) used to leave the rest to be read at a shifted offset ("syntax error near
# unexpected token" once the stage ended). main is parsed whole before it runs, and the
# exit on its line ends the script before anything after that line is read.
main() {
  for stage in "${stages[@]}"; do
    log "stage $stage"
    case "$stage" in
      record) record ;;
      train) train ;;
      keep) keep ;;
      evaluate) evaluate ;;
      ros) ros ;;
      table) table ;;
      attention) attention ;;
      token_drop) token_drop ;;
      takeover) takeover ;;
      contrast) contrast ;;
      claim) claim ;;
      *) echo "unknown stage $stage (record, train, keep, evaluate, ros, table, attention," \
           "token_drop, takeover, contrast, claim)" >&2
         exit 2 ;;
    esac
  done
  log "done: ${stages[*]}"
}
main "$@"; exit $?
