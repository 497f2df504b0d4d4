"""``python -m specprune_ros.eval.executor_jerk``: how smooth each chunk-combination rule is.

Runs the trained policy closed loop on the simulated arm, in process and on the simulator's
clock, through the executor's own ROS-free logic (chunk_timing.ChunkCombiner,
cartesian_motion.CartesianMotion with config/executor_sim.yaml's limits: a tick with no chunk
point is a hold, decelerating at the stop limits as the executor's holds do) and the
bridge's twist ->
OSC conversion, exactly as ``specprune_executor`` (output twist) and ``specprune_sim_arm``
(command_input twist) do over ROS, but deterministic: the policy steps every ``--replan``
ticks on the rendered observation of that tick; its chunk is stamped with that tick's time
and reaches the executor ``--latency`` ticks later (the step's latency: those points are
skipped). Every rule runs the same seeds.

Jerk: the RMS over all executed ticks of ||v[k] - 2 v[k-1] + v[k-2]|| / dt^2, where v is
the commanded end-effector velocity (linear m/s, angular rad/s) and dt the control period
(m/s^3, rad/s^3); also the RMS second difference itself, the hold ticks and the successes.

    python -m specprune_ros.eval.executor_jerk --episodes 5 --json docs/executor_jerk.json
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import yaml

from specprune import load_policy
from specprune.bench import machine
from specprune_ros.eval.configurations import EVAL_SEED, model_hash
from specprune_ros.eval.episode_env import frame_of
from specprune_ros.eval.episodes import observation
from specprune_ros.node import executor_parameters as xp
from specprune_ros.node.cartesian_motion import CartesianMotion
from specprune_ros.node.chunk_timing import RULES, ChunkCombiner, parse_chunk
from specprune_ros.node.ee_motion import MotionEstimator
from specprune_ros.node.input_faults import Limits as InputLimits
from specprune_ros.node.package_data import data_path, shipped_checkpoint
from specprune_ros.node.safety_envelope import Limits
from specprune_ros.sim.sim_arm import ACTION_NAMES, GRIPPER_OPEN, SimArm, SimArmConfig
from specprune_ros.sim.bridge_commands import twist_to_action

T0 = 1.0  # simulated time of tick 0 (a chunk stamped 0 means "no stamp")


def sim_limits() -> Limits:
    """The executor's limits with config/executor_sim.yaml applied."""
    text = Path(data_path("config/executor_sim.yaml")).read_text()
    overrides = yaml.safe_load(text)[xp.NODE_NAME]["ros__parameters"]
    return xp.limits_from({**{s.name: s.default for s in xp.PARAMS}, **overrides})


class Episode:
    """One closed-loop episode through the executor logic; the commanded velocities."""

    def __init__(self, arm: SimArm, policy: Any, combiner: ChunkCombiner, limits: Limits,
                 replan: int, latency: int) -> None:
        self.arm, self.policy, self.combiner = arm, policy, combiner
        self.cartesian = CartesianMotion(limits, "twist")
        self.replan, self.latency = replan, latency
        self.scale = (xp.BY_NAME["linear_scale"].default, xp.BY_NAME["angular_scale"].default)
        self.velocities: List[np.ndarray] = []
        self.holds = self.skipped = self.steps = 0
        self.success = False

    def run(self, seed: int, horizon: int) -> "Episode":
        obs = self.arm.reset(seed=seed)
        self.policy.reset()
        self.combiner.reset()
        self.cartesian.reset()
        motion = MotionEstimator(InputLimits())
        pending: List[Any] = []
        gripper, dt = GRIPPER_OPEN, self.arm.dt
        for tick in range(horizon):
            now = T0 + tick * dt
            if tick % self.replan == 0:
                rendered = self.arm.observe() if tick else obs
                chunk, _ = self.policy.step(observation(frame_of(rendered),
                                                        self.arm.instruction, motion.motion))
                self.steps += 1
                offsets = [(i + 1) * dt for i in range(len(chunk.actions))]
                pending.append((tick + self.latency, parse_chunk(
                    ACTION_NAMES, chunk.actions.tolist(), offsets, ACTION_NAMES, now,
                    now + self.latency * dt, seq=tick)))
            for arrival, item in [p for p in pending if p[0] <= tick]:
                self.combiner.add(item)
            pending = [p for p in pending if p[0] > tick]
            linear, angular, gripper = self._command(now, obs, gripper, dt)
            obs = self.arm.step(twist_to_action(linear, angular, gripper, dt), render=False)
            pos, quat = obs.eef_pose_in_base()
            motion.add(pos, quat, obs.sim_time)
            if obs.success:
                self.success = True
                break
        return self

    def _command(self, now: float, obs: Any, gripper: float, dt: float) -> Any:
        sample = self.combiner.sample(now)
        self.skipped += sample.skipped
        pos, quat = obs.eef_pose_in_base()
        pose = (pos, quat, now)  # measured at this tick: no age to extrapolate over
        if sample.action is None:  # the gripper keeps its last command in a hold
            self.holds += 1
            linear, angular = self.cartesian.hold(pose, now, dt)
        else:
            action = np.clip(sample.action, -1.0, 1.0)
            wanted = (action[:3] * self.scale[0], action[3:6] * self.scale[1])
            (linear, angular), _ = self.cartesian.move(*wanted, pose, now, dt, 1e9)
            gripper = float(action[6])
        self.velocities.append(np.concatenate([linear, angular]))
        return linear, angular, gripper


def rms_second_difference(series: Sequence[np.ndarray]) -> np.ndarray:
    """(linear, angular) RMS of ||x[k] - 2 x[k-1] + x[k-2]|| over one episode's ticks."""
    v = np.asarray(series)
    if len(v) < 3:
        return np.full(2, np.nan)
    d2 = v[2:] - 2.0 * v[1:-1] + v[:-2]
    return np.sqrt(np.stack([(np.linalg.norm(d2[:, :3], axis=1) ** 2).mean(),
                             (np.linalg.norm(d2[:, 3:], axis=1) ** 2).mean()]))


def measure(args: argparse.Namespace) -> Dict[str, Any]:
    import torch

    torch.set_num_threads(args.threads)
    policy = load_policy(args.policy, device="cpu", dtype="float32")
    arm = SimArm(SimArmConfig(task="pick_color", horizon=args.horizon + 1, seed=args.seed))
    limits = sim_limits()
    seeds = [args.seed + i for i in range(args.episodes)]
    results: Dict[str, Any] = {}
    start = time.monotonic()
    try:
        for rule in args.rules:
            combiner = ChunkCombiner(rule, args.ensemble_k, args.crossfade_points)
            episodes = [Episode(arm, policy, combiner, limits, args.replan, args.latency)
                        .run(seed, args.horizon) for seed in seeds]
            d2 = np.array([rms_second_difference(e.velocities) for e in episodes])
            ticks = np.array([len(e.velocities) for e in episodes])
            rms = np.sqrt((d2 ** 2 * ticks[:, None]).sum(axis=0) / ticks.sum())
            dt = arm.dt
            results[rule] = {
                "rms_jerk_linear_m_s3": float(rms[0] / dt ** 2),
                "rms_jerk_angular_rad_s3": float(rms[1] / dt ** 2),
                "rms_second_difference_linear_m_s": float(rms[0]),
                "rms_second_difference_angular_rad_s": float(rms[1]),
                "per_episode_rms_jerk_linear_m_s3": [float(x / dt ** 2) for x in d2[:, 0]],
                "mean_linear_speed_m_s": float(np.mean([np.linalg.norm(v[:3]) for e in
                                                        episodes for v in e.velocities])),
                "ticks": int(ticks.sum()), "hold_ticks": int(sum(e.holds for e in episodes)),
                "points_skipped": int(sum(e.skipped for e in episodes)),
                "policy_steps": int(sum(e.steps for e in episodes)),
                "successes": int(sum(e.success for e in episodes)),
            }
            print(f"{rule:10s} jerk linear {results[rule]['rms_jerk_linear_m_s3']:8.1f} m/s^3, "
                  f"angular {results[rule]['rms_jerk_angular_rad_s3']:8.1f} rad/s^3, "
                  f"{results[rule]['successes']}/{len(seeds)} successes", flush=True)
    finally:
        arm.close()
    return {"rules": results, "seeds": seeds, "episodes": args.episodes,
            "horizon": args.horizon, "replan_ticks": args.replan,
            "latency_ticks": args.latency, "control_rate_hz": 1.0 / arm.dt,
            "ensemble_k": args.ensemble_k, "crossfade_points": args.crossfade_points,
            "policy": args.policy, "checkpoint_hash": model_hash(args.policy),
            "limits": "config/executor.yaml + executor_sim.yaml",
            "seconds": time.monotonic() - start,
            "machine": machine(args.threads, "cpu", "float32")}


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policy", default=None, help="checkpoint (default: the shipped one)")
    parser.add_argument("--episodes", type=int, default=5)
    parser.add_argument("--horizon", type=int, default=150, help="control ticks per episode")
    parser.add_argument("--seed", type=int, default=EVAL_SEED)
    parser.add_argument("--replan", type=int, default=4,
                        help="ticks between policy steps (4: 5 Hz, as specprune-eval --via ros)")
    parser.add_argument("--latency", type=int, default=2,
                        help="ticks from an observation to its chunk at the executor")
    parser.add_argument("--rules", default=",".join(RULES))
    parser.add_argument("--ensemble-k", type=float, default=0.01)
    parser.add_argument("--crossfade-points", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", default="", help="write the results here")
    args = parser.parse_args(argv)
    args.rules = [r for r in args.rules.split(",") if r]
    unknown = [r for r in args.rules if r not in RULES]
    if unknown or args.replan < 1 or args.latency < 0 or args.episodes < 1:
        parser.error(f"rules must be among {RULES}; replan >= 1, latency >= 0, episodes >= 1")
    args.policy = args.policy or shipped_checkpoint()
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    result = measure(args)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
