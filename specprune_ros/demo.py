"""The main job: the simulated arm, the policy node and the executor as processes, a few
episodes.

Starts ``specprune_sim_arm`` (task pick_color), ``specprune_policy`` with the shipped
checkpoint and ``specprune_executor`` between them (the same parameter files and wiring
as sim_policy.launch.py: twist commands, /clock) and runs the same seeded
episodes unpruned and with SpecPrune, switching the node's ``prune.*`` parameters live
through its set_parameters service (what ``ros2 param set`` does) and resetting the arm
through its ~/reset service (``specprune_ros.eval.eval_ros``). Prints, per episode, the
instruction and whether the arm did it, then latency and tokens kept per configuration.
``--record BAG`` also runs specprune-record beside them (on the bridge's /clock) and closes
the bag at the end: ``specprune-replay BAG`` replays it.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
from typing import Dict, List, Optional

from specprune_ros.node.package_data import shipped_checkpoint

DEFAULT_MODEL = shipped_checkpoint()  # the installed share directory, else the source tree


def _summary(result: Dict) -> str:
    """Per configuration, success and latency, then each episode's instruction and outcome
    (the speedup and paired comparison are format_table's last lines)."""
    lines = []
    configs = result["configs"]
    for name, row in configs.items():
        ok = [e for e in row["per_episode"] if e["success"]]
        lines.append(f"{name}: {len(ok)}/{row['episodes']} episodes succeeded; "
                     f"step latency mean {row['step_ms_mean'] or float('nan'):.0f} ms, "
                     f"visual tokens kept {row['kept_visual_tokens_mean'] or float('nan'):.0f}"
                     f" of {row['visual_tokens_total']}")
        for e in row["per_episode"]:
            outcome = f"done after {e['steps']} ticks" if e["success"] else (
                e["error"] or f"not done in {e['steps']} ticks")
            lines.append(f"  seed {e['seed']}: '{e['instruction']}': {outcome}")
    return "\n".join(lines)


def start_recorder(bag: str) -> subprocess.Popen:
    """specprune-record into ``bag`` on the ROS domain evaluate_ros will use (it keeps a
    ROS_DOMAIN_ID already set), on simulated time."""
    os.environ.setdefault("ROS_DOMAIN_ID", str(50 + os.getpid() % 50))
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    return subprocess.Popen([sys.executable, "-m", "specprune_ros.node.recorder", "-o", bag,
                             "--ros-args", "-p", "use_sim_time:=true"])


def stop_recorder(proc: subprocess.Popen, bag: str) -> int:
    """SIGINT (the recorder closes the bag), then its exit code."""
    proc.send_signal(signal.SIGINT)
    code = proc.wait(60)
    print(f"recording: {bag} (exit code {code}); replay it with: specprune-replay {bag}")
    return code


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT_MODEL,
                        help="checkpoint folder or preset (default: the shipped checkpoint)")
    parser.add_argument("--episodes", type=int, default=3, help="episodes per configuration")
    parser.add_argument("--seed", type=int, default=None,
                        help="first episode's seed (default: specprune-eval's, past the "
                             "demonstrations' seeds)")
    parser.add_argument("--horizon", type=int, default=150, help="control ticks per episode")
    parser.add_argument("--json", default="", help="also write the evaluation JSON here")
    parser.add_argument("--record", default="", metavar="BAG",
                        help="record the episodes into this new bag (specprune-record)")
    args = parser.parse_args(argv)
    from specprune_ros.eval.eval_results import format_table
    from specprune_ros.eval.eval_ros import evaluate_ros
    from specprune_ros.eval.configurations import EVAL_SEED
    from specprune_ros.eval.evaluate import parse_args as evaluation_args

    seed = EVAL_SEED if args.seed is None else args.seed
    eval_args = evaluation_args([
        "--via", "ros", "--policy", args.model, "--configs", "unpruned,specprune",
        "--episodes", str(args.episodes), "--seed", str(seed), "--horizon", str(args.horizon)])
    recorder = start_recorder(args.record) if args.record else None
    try:
        result = evaluate_ros(eval_args)
    finally:
        record_code = stop_recorder(recorder, args.record) if recorder else 0
    print(format_table(result))
    print(_summary(result))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)
    errors = sum(row["errors"] for row in result["configs"].values())
    codes = result.get("node_exit_codes", {})
    counters = result.get("policy_node_counters", {})
    print("policy node: " + (", ".join(f"{k}={v}" for k, v in counters.items()) or
                             "no diagnostics received"))
    executor = result.get("executor_counters", {})
    print("executor: " + (", ".join(f"{k}={v}" for k, v in executor.items() if v) or
                          "no diagnostics received"))
    print(f"processes stopped (exit codes policy={codes.get('policy')}, "
          f"executor={codes.get('executor')}, sim={codes.get('sim')}); "
          f"{errors} episode errors")
    return 0 if errors == 0 and not any(codes.values()) and not record_code else 1


if __name__ == "__main__":
    sys.exit(main())
