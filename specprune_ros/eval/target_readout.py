"""``python -m specprune_ros.eval.target_readout``: which object does a policy's state point
at before it moves?

A policy trained with the target head's fixed readout (``--aux-target-readout fixed``,
specprune/train/auxiliary.py) writes "the named object relative to the end effector, base
frame, metres x ``target_scale``" into coordinates 0-2 of the first chunk step's head states
(mean over the action dimensions). That readout survives export (it has no parameters), so
on a fresh episode it says which object the model has in mind, in seconds instead of a
closed-loop evaluation. Per (task, seed): one unpruned step on the first frame, the readout,
every object's true offset and the nearest one. Tasks of one suite share a scene on a seed
(the spatial suite's four instructions, the goal suite's), so they also show whether the
instruction moves the readout at all: ``spread`` is, per pair of such tasks, the distance
between their readouts on each seed.

    python -m specprune_ros.eval.target_readout --policy runs/tabletop_grounded/checkpoint \\
        --tasks sim_spatial_0,sim_spatial_1 --seed 610000 --episodes 6

The scale and the readout kind come from the checkpoint's training_summary.json; a
checkpoint trained without the fixed readout is refused. Development seeds only.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict, dataclass
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from specprune import PruneConfig, load_policy
from specprune.model.checkpoint import TRAINING_SUMMARY, training_summary
from specprune.model.folder_hash import checkpoint_hash
from specprune.train.auxiliary import fixed_target_readout
from specprune_ros.eval.episode_env import SimArmEnv
from specprune_ros.eval.episodes import observation
from specprune_ros.sim.sim_arm import SimArm, SimArmConfig
from specprune_ros.sim.tabletop_suites import tabletop_task


@dataclass
class Readout:
    """One (task, seed): the readout and each object's true offset from the end effector
    (metres, base frame)."""

    task: str
    seed: int
    named: str
    readout: List[float]
    offset: Dict[str, List[float]]

    @property
    def distance(self) -> Dict[str, float]:
        """Each object's distance from the readout (metres)."""
        return {k: float(np.linalg.norm(np.subtract(self.readout, v)))
                for k, v in self.offset.items()}

    @property
    def nearest(self) -> str:
        return min(self.distance, key=self.distance.get)


class ReadoutProbe:
    """Reads the fixed target readout off the policy's action head input."""

    def __init__(self, policy, scale: float) -> None:
        self.policy, self.scale = policy, scale
        self.action_dim = len(policy.layout.action_names)
        self._last: Optional[np.ndarray] = None
        policy.model.action_head.register_forward_pre_hook(self._keep)

    def _keep(self, module, args) -> None:
        readout = fixed_target_readout(args[0], self.action_dim)[0]
        self._last = readout.detach().float().cpu().numpy() / self.scale

    def read(self, arm: SimArm, seed: int) -> Readout:
        frame = SimArmEnv(arm).reset(seed)
        self.policy.reset()
        self._last = None
        self.policy.step(observation(frame, arm.instruction, None))
        if self._last is None:
            raise RuntimeError("the policy's step did not run its action head")
        obs = arm.last_observation
        eef = obs.proprio_in_base()[:3]
        objects = {obj.name for obj in tabletop_task(arm.config.task).objects}
        offsets = {name: obs.point_in_base(obs.extras[f"{name}_pos"]) - eef
                   for name in sorted(objects)}
        return Readout(arm.config.task, seed, arm.goal[0][1], self._last.tolist(),
                       {k: v.tolist() for k, v in offsets.items()})


def spread(readouts: Sequence[Readout]) -> Dict[str, Dict[int, float]]:
    """``"<task> vs <task>"`` for each pair of tasks of one suite (one scene per seed): the
    distance between their readouts on each seed both were read on (metres)."""
    by_key = {(r.task, r.seed): np.asarray(r.readout) for r in readouts}
    tasks = list(dict.fromkeys(r.task for r in readouts))
    out: Dict[str, Dict[int, float]] = {}
    for i, a in enumerate(tasks):
        for b in tasks[i + 1:]:
            if tabletop_task(a).suite != tabletop_task(b).suite:
                continue
            seeds = [s for (t, s) in by_key if t == a and (b, s) in by_key]
            out[f"{a} vs {b}"] = {s: float(np.linalg.norm(by_key[(a, s)] - by_key[(b, s)]))
                                  for s in seeds}
    return out


def readout_scale(policy_dir: str) -> float:
    """The target label's scale (metres -> units) the checkpoint was trained with;
    ValueError unless it was trained with the fixed readout."""
    summary = training_summary(policy_dir)
    if summary is None:
        raise ValueError(f"{os.path.join(policy_dir, TRAINING_SUMMARY)} is missing: the "
                         "readout needs the training settings")
    cfg = summary.get("config", {})
    if not cfg.get("aux_target") or cfg.get("aux_target_readout") != "fixed":
        raise ValueError(f"{policy_dir} was not trained with the fixed target readout "
                         f"(aux_target {cfg.get('aux_target')}, aux_target_readout "
                         f"{cfg.get('aux_target_readout')!r})")
    return float(cfg["aux_target_scale"])


def run(policy_dir: str, tasks: Sequence[str], seeds: Sequence[int],
        threads: int = 2) -> List[Readout]:
    """Every task on every seed; the tasks and the checkpoint are checked before loading."""
    unknown = [task for task in tasks if tabletop_task(task) is None]
    if unknown:
        raise ValueError(f"{', '.join(map(repr, unknown))}: not a tabletop suite task "
                         "(sim_<suite>_<i>)")
    scale = readout_scale(policy_dir)
    torch.set_num_threads(threads)
    policy = load_policy(policy_dir, device="cpu", dtype="float32")
    policy.update_config(PruneConfig(enabled=False))
    probe = ReadoutProbe(policy, scale)
    out = []
    for task in tasks:
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
    for pair, by_seed in spread(readouts).items():
        lines.append(f"{pair}: the readouts differ by (cm, per seed) " + ", ".join(
            f"{seed} {100 * d:.1f}" for seed, d in by_seed.items()))
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
                       "seeds": seeds, "target_scale": readout_scale(args.policy),
                       "readouts": [dict(asdict(r), distance=r.distance, nearest=r.nearest)
                                    for r in readouts],
                       "spread": spread(readouts)}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
