#!/usr/bin/env bash
# docs/tabletop_probe/l1_probe.sh CKPT TAG [KEEP_SCALE] (one-off probe): open-loop action L1 vs unpruned of SpecPrune / FastV / random
# on 2 demos of 6 tasks (part03 shards), one thread; JSONs in runs/l1probe/TAG_*.json; docs/tabletop_probe/helped_rows_dev_probes.json collects them
set -euo pipefail
ckpt=$1 tag=$2 ks=${3:-2}
mkdir -p runs/l1probe
for t in sim_spatial_task00 sim_spatial_task01 sim_object_task00 sim_object_task02 sim_goal_task00 sim_long_task00; do
  out=runs/l1probe/${tag}_${t}.json
  [ -f "$out" ] && continue
  .venv/bin/python -m specprune_ros.eval.demo_replay --policy "$ckpt" --demos demos/tabletop/${t}_part03.hdf5 \
    --max-demos 2 --stride 2 --configs unpruned,specprune,fastv,random --prune layer_depth=32 --prune keep_scale=$ks \
    --threads 1 --json "$out" > /dev/null
done
python3 - "$tag" <<'PY'
import json,glob,sys
tag=sys.argv[1]; rows={}
for f in sorted(glob.glob(f'runs/l1probe/{tag}_*.json')):
    d=json.load(open(f)); t=f.split(tag+'_')[1][:-5]
    rows[t]={k:round(v['action_l1_vs_unpruned'],3) for k,v in d['configs'].items() if k!='unpruned'}
    print(t, rows[t])
import statistics as st
for k in ('specprune','fastv','random'):
    print('mean',k,round(st.mean(r[k] for r in rows.values()),4))
PY
