#!/usr/bin/env bash
# The ROS-side tests (nodes, bridge, executor, ROS evaluation) beside two CPU-burning
# processes, as on a busy robot computer; the burners are started and ended by PID.
#   bash scripts/test_under_load.sh
set -uo pipefail
cd "$(dirname "$0")/.."
python3 -c "while True: pass" & b1=$!
python3 -c "while True: pass" & b2=$!
echo "burners $b1 $b2"
start=$(date +%s)
.venv/bin/python -m pytest -q -p no:logging test/test_executor_node.py test/test_policy_node.py \
  test/test_sim_bridge.py test/test_bridge_camera_rate.py test/test_parameters.py \
  test/test_executor_logic.py test/test_eval_journal.py test/test_bridge_reset.py \
  test/test_evaluate.py 2>&1 | tail -15
rc=${PIPESTATUS[0]}
ps -o pid,pcpu,cmd -p $b1,$b2
kill $b1 $b2
wait $b1 $b2 2>/dev/null
echo "pytest rc=$rc in $(( $(date +%s) - start )) s; burners left: $(pgrep -fc 'while True: pass' || true)"
