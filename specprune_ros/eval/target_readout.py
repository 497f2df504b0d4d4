"""``python -m specprune_ros.eval.target_readout``: which object does a policy's state point
at before it moves?

A policy trained with the target head's fixed readout (``--aux-target-readout fixed``,
specprune/train/auxiliary.py) writes "the named object relative to the end effector, base
frame, metres x ``target_scale``" into coordinates 0-2 of the first chunk step's head states
(mean over the action dimensions). That readout survives export (it has no parameters), so
on a fresh episode it says which object the model has in mind, in seconds instead of a
closed-loop evaluation. Per (task, seed): one unpruned step on the first frame, the readout,
every object's true offset and the nearest one. Tasks that share a scene for a seed (the
spatial suite's four instructions, the goal suite's) also show whether the instruction moves
the readout at all: ``spread`` is the largest distance between two tasks' readouts on one
seed.

    python -m specprune_ros.eval.target_readout --policy runs/tabletop_deep/checkpoint \\
        --tasks sim_spatial_0,sim_spatial_1 --seed 610000 --episodes 6

Only meaningful for a checkpoint trained with that readout; development seeds only.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from specprune import PruneConfig, load_policy
from specprune.model.folder_hash import checkpoint_hash
from specprune.train.train_config import TrainConfig
from specprune_ros.eval.episode_env import SimArmEnv
from specprune_ros.eval.episodes import observation
from specprune_ros.sim.sim_arm import SimArm, SimArmConfig
from specprune_ros.sim.tabletop_suites import tabletop_task

#: Metres -> units of the target label, as the recipe trains it (TrainConfig's default).
TARGET_SCALE = TrainConfig.__dataclass_fields__["aux_target_scale"].default


@dataclass
class Readout:
    """One (task, seed): the readout and each object's distance from it (metres)."""

    task: str
    seed: int
    named: str
    readout: List[float]
    distance: Dict[str, float]

    @property
    def nearest(self) -> str:
        return min(self.distance, key=self.distance.get)


class ReadoutProbe:
    """Reads the fixed target readout off the policy's action head input."""

    def __init__(self, policy, scale: float = TARGET_SCALE) -> None:
        self.policy, self.scale = policy, scale
        self.action_dim = len(policy.layout.action_names)
        self._last: Optional[np.ndarray] = None
        policy.model.action_head.register_forward_pre_hook(self._keep)

    def _keep(self, module, args) -> None:
        first = args[0][0, :self.action_dim, :3]  # first chunk step's states, coords 0-2
        self._last = first.mean(0).detach().float().cpu().numpy() / self.scale

    def read(self, arm: SimArm, seed: int) -> Readout:
        frame = SimArmEnv(arm).reset(seed)
        self.policy.reset()
        self.policy.step(observation(frame, arm.instruction, None))
        obs = arm.last_observation
        eef = obs.proprio_in_base()[:3]
        offsets = {name[:-4]: obs.point_in_base(pos) - eef for name, pos in obs.extras.items()
                   if name.endswith("_pos") and name[:-4] in scene_objects(arm)}
        return Readout(arm.config.task, seed, arm.goal[0][1], self._last.tolist(),
                       {k: float(np.linalg.norm(self._last - v)) for k, v in offsets.items()})


def scene_objects(arm: SimArm) -> Sequence[str]:
    """The task's objects (tabletop suites)."""
    return [obj.name for obj in tabletop_task(arm.config.task).objects]


def spread(readouts: Sequence[Readout]) -> Dict[int, float]:
    """Per seed read on several tasks: the largest distance between two readouts (metres)."""
    by_seed: Dict[int, List[np.ndarray]] = {}
    for r in readouts:
        by_seed.setdefault(r.seed, []).append(np.asarray(r.readout))
    return {seed: max(float(np.linalg.norm(a - b)) for a in points for b in points)
            for seed, points in by_seed.items() if len(points) > 1}


def run(policy_dir: str, tasks: Sequence[str], seeds: Sequence[int],
        threads: int = 2) -> List[Readout]:
    torch.set_num_threads(threads)
    policy = load_policy(policy_dir, device="cpu", dtype="float32")
    policy.update_config(PruneConfig(enabled=False))
    probe = ReadoutProbe(policy)
    out = []
    for task in tasks:
        if tabletop_task(task) is None:
            raise ValueError(f"{task!r} is not a tabletop suite task (sim_<suite>_<i>)")
        with SimArm(SimArmConfig(task=task, horizon=tabletop_task(task).horizon)) as arm:
            out.extend(probe.read(arm, seed) for seed in seeds)
    return out


def report(readouts: Sequence[Readout]) -> str:
    lines = []
    for r in readouts:
        ranked = sorted(r.distance.items(), key=lambda kv: kv[1])
        near = ", ".join(f"{k} {100 * d:.0f}" for k, d in ranked)
        lines.append(f"{r.task} seed {r.seed}: readout {np.round(np.array(r.readout) * 100, 1)}"
                     f" cm, nearest {r.nearest}; named {r.named}; cm from it: {near}")
    for task in dict.fromkeys(r.task for r in readouts):
        mine = [r for r in readouts if r.task == task]
        hits = sum(r.nearest == r.named for r in mine)
        lines.append(f"{task}: readout nearest the named object on {hits}/{len(mine)} seeds")
    moved = spread(readouts)
    if moved:
        lines.append("spread of the readout over the tasks on one seed (cm): " + ", ".join(
            f"{seed} {100 * d:.1f}" for seed, d in moved.items()))
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policy", required=True, help="checkpoint folder")
    parser.add_argument("--tasks", required=True, help="comma-separated sim_<suite>_<i>")
    parser.add_argument("--seed", type=int, default=610000, help="first development seed")
    parser.add_argument("--episodes", type=int, default=6, help="seeds per task")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", default="", help="also write the readouts here")
    args = parser.parse_args(argv)
    seeds = list(range(args.seed, args.seed + args.episodes))
    try:
        readouts = run(args.policy, args.tasks.split(","), seeds, args.threads)
    except (OSError, ValueError) as err:
        print(f"target_readout: {err}", file=sys.stderr)
        return 2
    print(report(readouts))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"policy": args.policy, "checkpoint_hash": checkpoint_hash(args.policy),
                       "seeds": seeds, "target_scale": TARGET_SCALE,
                       "readouts": [dict(asdict(r), nearest=r.nearest) for r in readouts],
                       "spread": spread(readouts)}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
