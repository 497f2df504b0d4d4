"""The main job (``scripts/demo.sh`` = ``python -m specprune_ros.demo``) as a user runs it:
the shipped pick_color checkpoint, the simulated arm and the policy node as two processes,
one episode unpruned and one with SpecPrune set live through the node's parameters."""
import json
import re
import subprocess
import sys
from pathlib import Path

from ros_helpers import REPO, domain_id, ros_environment
from specprune_ros.demo import DEFAULT_MODEL
from specprune_ros.eval.configurations import EVAL_SEED


def test_main_job_runs_both_configurations_on_the_shipped_checkpoint(tmp_path: Path) -> None:
    out = tmp_path / "demo.json"
    env = ros_environment(tmp_path, domain_id(79))
    cmd = [sys.executable, "-m", "specprune_ros.demo", "--episodes", "1", "--horizon", "24",
           "--json", str(out)]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=400)
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0, text[-4000:]
    for name in ("unpruned", "specprune"):
        assert re.search(rf"^{name}: [01]/1 episodes succeeded; step latency mean \d+ ms",
                         proc.stdout, re.M), proc.stdout
    assert re.search(rf"seed {EVAL_SEED}: 'pick up the (red|green|blue) cube': ", proc.stdout)
    assert "exit codes policy=0, executor=0, sim=0); 0 episode errors" in proc.stdout
    result = json.loads(out.read_text())
    counters = result["policy_node_counters"]  # pairing by stamp: never out of sync
    assert counters["steps"] >= 2 and "skipped.cameras_out_of_sync" not in counters, counters
    assert Path(result["policy"]).resolve() == Path(DEFAULT_MODEL).resolve()
    unpruned, pruned = result["configs"]["unpruned"], result["configs"]["specprune"]
    assert unpruned["per_episode"][0]["instruction"] == pruned["per_episode"][0]["instruction"]
    assert unpruned["kept_visual_tokens_mean"] == 512
    assert 0 < pruned["kept_visual_tokens_mean"] < 512
    for row in (unpruned, pruned):
        assert row["policy_steps"] >= 1 and row["errors"] == 0
