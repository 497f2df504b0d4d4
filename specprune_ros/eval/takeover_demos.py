"""Takeover demonstrations (DAgger-style) for the LIBERO-shaped suites: a trained policy
drives the first part of each episode, then the scripted expert takes over from wherever
the policy left the arm and finishes the task; only the expert's part is recorded.

Why: behaviour cloning learns the expert's states, and a policy that is a few centimetres
off at the grasp reaches states no demonstration shows (measured on the tabletop policy at
step 3115, a training layout of ``sim_goal_0``: it descends 3.7 cm beside the cube, closes
on nothing and carries the empty gripper to the plate, while LIBERO's expert in that state
moves over the cube first). Here the expert answers exactly those states: it opens, moves
over the object and grasps again, or carries what the policy did pick up.

- The switch tick is drawn per episode from its seed: uniformly in
  [``earliest``, ``latest_share`` x the task's step limit], so the recorded starts cover
  the policy's approach, its failed grasps and what follows them.
- The policy runs as the evaluation runs it (``episodes.observation``: both views, the
  proprio and the end-effector motion; chunks executed whole), unpruned, on its own
  copy of the simulator's state; an episode the policy solves before the switch teaches
  nothing and is not kept (it counts as a try), and neither is one where at the switch
  the policy holds an object: LIBERO's expert starts each part from its approach with the
  gripper open and would teach letting go of a good grasp. Parts the policy has already
  placed stay placed: the expert begins at the first part left (a two-part task's second
  placement is taught from the policy's own first one), and an episode whose later part
  holds before an earlier one is not kept.
- The expert's part is recorded as ``tabletop_demos`` records an episode (noise, pushes,
  labels, success filter), and the shard's ``env_args`` name the policy and the rule.

::

    python -m specprune_ros.eval.takeover_demos --policy runs/tabletop_grounded/checkpoint \\
        --suite sim_goal --tasks 0-3 --per-task 10 --seed 70000 --frame-every 4 \\
        --out demos/tabletop_takeover

Stoppable; the same command continues (``demo_shards``). Seeds: the demos' blocks start at
10000 (``tabletop_pipeline.sh``), these at ``--seed``; evaluations use 500000+.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import sys
from dataclasses import asdict, dataclass
from typing import List, Optional, Tuple

import numpy as np
import torch

from specprune import PruneConfig, SpecPrunePolicy, load_policy
from specprune_ros.eval.configurations import model_hash
from specprune_ros.eval.episode_env import frame_of
from specprune_ros.eval.episodes import observation
from specprune_ros.node.ee_motion import MotionEstimator
from specprune_ros.node.input_faults import Limits
from specprune_ros.sim.demos import NoiseConfig
from specprune_ros.sim.libero_experts import parse_ranges
from specprune_ros.sim.sim_arm import SimArm, SimObservation
from specprune_ros.sim.tabletop_demos import record_shards
from specprune_ros.sim.tabletop_suites import SUITES, suite_tasks, tabletop_task


@dataclass(frozen=True)
class TakeoverRule:
    """When the expert takes over: a tick drawn uniformly per episode (seeded by it)."""

    earliest: int = 16  # ticks: two policy steps at least
    latest_share: float = 0.6  # of the task's step limit

    def __post_init__(self) -> None:
        if self.earliest < 1 or not 0.0 < self.latest_share <= 1.0:
            raise ValueError(f"TakeoverRule: earliest >= 1 and 0 < latest_share <= 1, got "
                             f"{self.earliest}, {self.latest_share}")

    def switch_tick(self, seed: int, horizon: int) -> int:
        latest = max(self.earliest, int(self.latest_share * horizon))
        rng = np.random.default_rng([seed, 0x7A4E])
        return int(rng.integers(self.earliest, latest + 1))


class PolicyStart:
    """``tabletop_demos.Start`` for one episode: ``policy`` drives until the switch tick."""

    def __init__(self, policy: SpecPrunePolicy, switch: int) -> None:
        self.policy, self.switch = policy, switch

    def __call__(self, arm: SimArm, obs: SimObservation
                 ) -> Tuple[Optional[SimObservation], int]:
        self.policy.reset()
        motion = MotionEstimator(Limits())
        frame = frame_of(obs)
        motion.add(*frame.ee_pose, frame.stamp)
        tick = 0
        while tick < self.switch:
            if tick:
                frame = frame_of(arm.observe())
            chunk, _ = self.policy.step(observation(frame, arm.instruction, motion.motion))
            for action in chunk.actions:
                obs = arm.step(action, render=False)
                tick += 1
                moved = frame_of(obs, rendered=False)
                motion.add(*moved.ee_pose, moved.stamp)
                if obs.success:
                    return None, tick  # solved by the policy: nothing to teach
                if tick >= self.switch:
                    break
        if any(arm.goal_progress()[1]):
            # LIBERO's expert starts a part from its approach (gripper open): taking over
            # a grasp, it would teach letting go of a good one (parts already placed are
            # fine: the expert begins at the first one left, tabletop_demos)
            return None, tick
        return arm.observe(), tick


def other_policy_shards(out: str, suite: str, takeover: dict) -> List[str]:
    """The complete shards of ``suite`` in ``out`` recorded with another policy (checkpoint
    hash) or switch rule than ``takeover``: a resumed recording must not mix them."""
    import h5py

    found = []
    for path in sorted(glob.glob(os.path.join(out, f"{suite}_task*_part*.hdf5"))):
        with h5py.File(path, "r") as f:
            held = json.loads(f["data"].attrs["env_args"]).get("takeover", {})
        if {k: held.get(k) for k in ("checkpoint_hash", "earliest", "latest_share")} != {
                k: takeover[k] for k in ("checkpoint_hash", "earliest", "latest_share")}:
            found.append(path)
    return found


def main(argv: Optional[list] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--policy", required=True, help="checkpoint folder")
    parser.add_argument("--suite", default="sim_goal", choices=SUITES)
    parser.add_argument("--tasks", default="all", help="task indices, e.g. 0-3 (all: every)")
    parser.add_argument("--per-task", type=int, default=10, help="recorded demos per task")
    parser.add_argument("--seed", type=int, default=70000, help="first development seed")
    parser.add_argument("--out", default="demos/tabletop_takeover", help="folder of shards")
    parser.add_argument("--frame-every", type=int, default=4)
    parser.add_argument("--shard-size", type=int, default=10)
    parser.add_argument("--earliest", type=int, default=TakeoverRule.earliest)
    parser.add_argument("--latest-share", type=float, default=TakeoverRule.latest_share)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args(argv)
    if min(args.per_task, args.frame_every, args.shard_size, args.threads) < 1:
        parser.error("--per-task, --frame-every, --shard-size and --threads must be >= 1")
    try:
        rule = TakeoverRule(args.earliest, args.latest_share)
    except ValueError as exc:
        parser.error(str(exc))
    known = [t.index for t in suite_tasks(args.suite)]
    tasks = known if args.tasks == "all" else parse_ranges(args.tasks)
    if sorted(set(tasks) - set(known)):
        parser.error(f"{args.suite} has tasks {known}, not {tasks}")
    extra = {"takeover": {"policy": args.policy, "checkpoint_hash": model_hash(args.policy),
                          **asdict(rule)}}
    other = other_policy_shards(args.out, args.suite, extra["takeover"])
    if other:
        parser.error(f"{args.out} holds takeover shards of another policy or rule ({other[0]}"
                     f"{' and more' if len(other) > 1 else ''}): one folder, one policy")
    torch.set_num_threads(args.threads)
    policy = load_policy(args.policy, device="cpu", dtype="float32",
                         prune_config=PruneConfig(enabled=False))
    for task in tasks:
        horizon = tabletop_task(f"{args.suite}_{task}").horizon
        record_shards(args.out, args.suite, [task], args.per_task, args.seed, args.shard_size,
                      NoiseConfig(), args.frame_every, extra=extra,
                      start_for=lambda seed, h=horizon: PolicyStart(
                          policy, rule.switch_tick(seed, h)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
