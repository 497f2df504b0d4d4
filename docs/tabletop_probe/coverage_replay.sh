# Open-loop check of coverage_k / region_grid at a matched budget: demo_replay on two demos of
# one file per suite, SpecPrune's defaults SPEC (each spec a space-separated FIELD=VALUE list),
# the baselines at its count per step. JSONs: docs/tabletop_probe/coverage_replay_TAG_SPEC_FILE.
P=${P:-checkpoints/tabletop_grounded_contrast_attention_tokendrop/checkpoint}
TAG=${TAG:-tokendrop}
SPECS=${SPECS:-"keep_scale=2;keep_scale=1 coverage_k=48"}
IFS=';' read -ra specs <<< "$SPECS"
for spec in "${specs[@]}"; do
  args=''; for a in $spec; do args="$args --prune $a"; done
  name=$(echo $spec | tr ' =' '_-')
  for f in sim_spatial_task00 sim_object_task01 sim_goal_task02 sim_long_task00; do
    .venv/bin/python -m specprune_ros.eval.demo_replay --policy $P \
      --demos demos/tabletop/${f}_part03.hdf5 --configs unpruned,specprune,fastv,random,grid \
      --prune layer_depth=32 $args --stride 1 --max-demos 2 --threads 1 \
      --json docs/tabletop_probe/coverage_replay_${TAG}_${name}_$f.json
  done
done
