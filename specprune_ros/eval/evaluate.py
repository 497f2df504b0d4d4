"""``specprune-eval``: closed-loop task success with and without pruning, on paired seeds.

Runs N episodes of the simulated task per configuration -- ``unpruned``, ``specprune``
(defaults), one ablation per SpecPrune component and ``fastv`` at SpecPrune's visual
budget -- where episode i uses seed + i in EVERY configuration (same cube placement and
instruction), and writes JSON + a table (+ a PNG with ``--plot``)::

    specprune-eval --episodes 200 --json eval.json --plot eval.png
    python -m specprune_ros.eval.evaluate --policy tiny --episodes 2 --horizon 20 \\
        --json /tmp/e.json

``--via direct`` (default) runs in-process: per policy step the cameras are rendered
(``arm.observe()``), the policy sees both views, the instruction, the LIBERO proprio (in the
base frame, as the node builds it) and the end-effector motion measured the way the policy
node measures it (finite difference of the base-frame pose over the last control tick), and
the whole chunk is executed open loop without rendering (OpenVLA-OFT executes all 8 actions
on LIBERO). Episodes are run
seed-major (every configuration on seed s, then on s + 1...) so that slow drifts of the
machine's load hit all configurations alike. One model is loaded; every configuration
shares its weights. ``--via ros``: see specprune_ros/eval/eval_ros.py.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np
import torch

from specprune import EEMotion, Observation, PruneConfig, SpecPrunePolicy, load_policy
from specprune.bench import FastVPolicy, hit_rate, machine
from specprune.model.presets import PRESETS
from specprune_ros.eval.configurations import CONFIGS, EVAL_SEED, run_meta
from specprune_ros.eval.eval_results import (FASTV, SPECPRUNE, UNPRUNED, ConfigRun, EpisodeRecord,
                                             StepRecord, format_table, plot, summarize)
from specprune_ros.node import package_data
from specprune_ros.node.observation_builder import Limits, MotionEstimator
from specprune_ros.sim.sim_arm import SimArm, SimArmConfig, SimObservation

DEFAULT_POLICY = package_data.SHIPPED_CHECKPOINT  # found under the share dir / source tree
#: Camera of each model view: view 0 third person, view 1 wrist (LIBERO's order).
VIEWS = ("agentview", "robot0_eye_in_hand")


@dataclass
class Variant:
    """One configuration's policy (sharing the model with every other variant)."""

    name: str
    policy: SpecPrunePolicy
    changes: Dict[str, Any]


# ------------------------------------------------------------------------------ policies
def build_variants(base: SpecPrunePolicy, names: Sequence[str]) -> Dict[str, Variant]:
    """A policy per configuration around ``base``'s model, tokenizer and statistics."""
    shared = (base.model, base.tokenizer, base.statistics, base.layout)
    variants = {}
    for name in names:
        changes = CONFIGS[name][0]
        kind = FastVPolicy if name == FASTV else SpecPrunePolicy
        policy = kind(*shared, PruneConfig().updated(**changes), str(base.device), base.dtype)
        variants[name] = Variant(name, policy, dict(changes))
    return variants


def observation(obs: SimObservation, instruction: str,
                motion: Optional[EEMotion]) -> Observation:
    """The policy input of a rendered SimObservation."""
    return Observation(images=[obs.images[v] for v in VIEWS], instruction=instruction,
                       proprio=obs.proprio_in_base(), ee_motion=motion, stamp=obs.sim_time)


def _add_pose(motion: MotionEstimator, obs: SimObservation) -> None:
    """Feed the base-frame pose at sim time, as the bridge publishes it to the node."""
    pos, quat = obs.eef_pose_in_base()
    motion.add(pos, quat, obs.sim_time)


# ------------------------------------------------------------------------------ episodes
class DirectRunner:
    """Runs episodes in-process on one SimArm; records into ConfigRuns."""

    def __init__(self, arm: SimArm, reference: SpecPrunePolicy, horizon: int,
                 l1_every: int = 1, hit_every: int = 0, hit_k: int = 20) -> None:
        self.arm, self.reference, self.horizon = arm, reference, horizon
        self.l1_every, self.hit_every, self.hit_k = l1_every, hit_every, hit_k
        self.hit_rates: List[float] = []
        self._motion = MotionEstimator(Limits())

    def warm_up(self, variants: Sequence[Variant], seed: int) -> None:
        """One untimed step per policy (first-call allocations), then forget it."""
        obs = self.arm.reset(seed=seed)
        for policy in [v.policy for v in variants] + [self.reference]:
            policy.step(observation(obs, self.arm.instruction, None))
            policy.reset()

    def episode(self, variant: Variant, run: ConfigRun, seed: int,
                sample_hits: bool = False) -> EpisodeRecord:
        """One episode; any exception or non-finite action ends it as a failure."""
        record = EpisodeRecord(seed=seed)
        try:
            self._episode(variant, run, record, sample_hits)
        except Exception as exc:  # noqa: BLE001 - a failure of this episode, not the run
            record.success = False
            record.error = f"{type(exc).__name__}: {exc}"
        run.episodes.append(record)
        return record

    def _episode(self, variant: Variant, run: ConfigRun, record: EpisodeRecord,
                 sample_hits: bool) -> None:
        obs = self.arm.reset(seed=record.seed)
        record.instruction = self.arm.instruction
        variant.policy.reset()
        self._motion.reset()
        _add_pose(self._motion, obs)
        while record.steps < self.horizon:
            if record.policy_steps:
                obs = self.arm.observe()
            inputs = observation(obs, record.instruction, self._motion.motion)
            chunk = self._step(variant, run, inputs, record.policy_steps)
            if sample_hits and self.hit_every and record.policy_steps % self.hit_every == 0:
                self.hit_rates.append(hit_rate(self.reference, inputs, self.hit_k))
            record.policy_steps += 1
            for action in chunk:
                obs = self.arm.step(action, render=False)
                record.steps += 1
                _add_pose(self._motion, obs)
                if obs.success:
                    record.success = True
                    return
                if record.steps >= self.horizon:
                    return

    def _step(self, variant: Variant, run: ConfigRun, inputs: Observation,
              index: int) -> np.ndarray:
        """Time one policy step, record its stats and action deviation; the actions."""
        start = time.perf_counter()
        chunk, stats = variant.policy.step(inputs)
        wall_ms = (time.perf_counter() - start) * 1e3
        if not np.all(np.isfinite(chunk.actions)):
            raise ValueError("the policy returned non-finite actions")
        record = StepRecord(step_ms=wall_ms, llm_ms=stats.llm_ms,
                            kept_visual_tokens=stats.kept_visual_tokens,
                            visual_tokens_total=stats.visual_tokens_total, mode=stats.mode)
        if variant.name != UNPRUNED and self.l1_every and index % self.l1_every == 0:
            ref, _ = self.reference.step(inputs)
            record.action_l1 = float(np.abs(chunk.normalized - ref.normalized).mean())
        run.steps.append(record)
        return chunk.actions


def run_direct(variants: Dict[str, Variant], runner: DirectRunner, seeds: Sequence[int],
               fastv_budget: int = 0,
               progress: Callable[[str], None] = print) -> Dict[str, ConfigRun]:
    """Every configuration on every seed, seed-major. FastV keeps ``fastv_budget`` visual
    tokens, or (0) SpecPrune's mean kept so far in this run (its class default before)."""
    runs = {name: ConfigRun(name, v.changes) for name, v in variants.items()}
    hit_source = UNPRUNED if UNPRUNED in variants else next(iter(variants))
    for i, seed in enumerate(seeds):
        for name, variant in variants.items():
            if name == FASTV:
                _set_fastv_budget(variant, runs.get(SPECPRUNE), fastv_budget)
            record = runner.episode(variant, runs[name], seed, sample_hits=name == hit_source)
            status = "success" if record.success else (record.error or "failure")
            progress(f"[{i + 1}/{len(seeds)}] seed {seed} {name}: {status} after "
                     f"{record.steps} ticks, {record.policy_steps} policy steps")
    return runs


def _set_fastv_budget(variant: Variant, spec: Optional[ConfigRun], fixed: int) -> None:
    kept = [s.kept_visual_tokens for s in spec.steps] if spec is not None else []
    if fixed:
        variant.policy.budget = fixed
    elif kept:
        variant.policy.budget = max(1, int(round(float(np.mean(kept)))))
    variant.changes["budget"] = int(variant.policy.budget)


# ------------------------------------------------------------------------------ the CLI
def resolve_policy(path: str) -> str:
    """A preset name, or a checkpoint folder relative to the working directory or to the
    package's data (its installed share directory, else the source tree: the shipped
    checkpoint is ``checkpoints/pick_color`` there); ValueError when it is neither."""
    if path in PRESETS or os.path.isdir(path):
        return path
    in_package = package_data.data_path(path)
    if os.path.isdir(in_package):
        return in_package
    raise ValueError(f"policy {path!r} is neither a checkpoint folder nor a preset "
                     f"({', '.join(PRESETS)})")


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="configurations: " + "; ".join(f"{k}: {v[1]}" for k, v in CONFIGS.items()))
    parser.add_argument("--episodes", type=int, default=20, help="episodes per configuration")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--plot", help="write a PNG of success and latency here")
    parser.add_argument("--policy", default=DEFAULT_POLICY,
                        help="checkpoint folder or preset (default: the shipped checkpoint)")
    parser.add_argument("--configs", default=",".join(CONFIGS),
                        help="comma-separated subset of: " + ", ".join(CONFIGS))
    parser.add_argument("--via", choices=("direct", "ros"), default="direct")
    parser.add_argument("--task", default="pick_color")
    parser.add_argument("--horizon", type=int, default=150, help="control ticks per episode")
    parser.add_argument("--seed", type=int, default=EVAL_SEED,
                        help="episode i uses seed + i (default: past the demos' seeds 0, 1, "
                             "..., so no evaluated placement was demonstrated)")
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--dtype", default="auto", help="auto (bf16 on GPU), float32, ...")
    parser.add_argument("--l1-every", type=int, default=1,
                        help="run the unpruned model on every k-th step's observation for "
                             "action_l1_vs_unpruned (0: never; it doubles a step's cost)")
    parser.add_argument("--hit-every", type=int, default=4,
                        help="hit rate on every k-th observation of the unpruned episodes "
                             "(0: never)")
    parser.add_argument("--hit-k", type=int, default=20, help="top-k per view of the hit rate")
    parser.add_argument("--fastv-budget", type=int, default=0,
                        help="FastV's visual tokens (0: SpecPrune's mean kept so far in this "
                             "run, or %d without specprune)" % FastVPolicy.budget)
    args = parser.parse_args(argv)
    args.configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = [c for c in args.configs if c not in CONFIGS]
    if unknown or not args.configs:
        parser.error(f"--configs: unknown {unknown}; choose from {', '.join(CONFIGS)}")
    if args.episodes < 1 or args.horizon < 1 or args.seed < 0:
        parser.error("--episodes and --horizon must be >= 1, --seed >= 0")
    counts = (args.l1_every, args.hit_every, args.fastv_budget)
    if min(counts) < 0 or min(args.hit_k, args.threads) < 1:
        parser.error("--l1-every / --hit-every / --fastv-budget must be >= 0, "
                     "--hit-k / --threads >= 1")
    try:
        args.policy = resolve_policy(args.policy)
    except ValueError as exc:
        parser.error(str(exc))
    # SpecPrune runs before FastV on each seed (FastV takes its budget)
    args.configs = sorted(args.configs, key=list(CONFIGS).index)
    return args


def evaluate_direct(args: argparse.Namespace) -> Dict[str, Any]:
    torch.set_num_threads(args.threads)
    base = load_policy(args.policy, device=args.device, dtype=args.dtype,
                       prune_config=PruneConfig(enabled=False))
    variants = build_variants(base, args.configs)
    seeds = [args.seed + i for i in range(args.episodes)]
    start = time.monotonic()
    with SimArm(SimArmConfig(task=args.task, horizon=args.horizon, seed=args.seed)) as arm:
        runner = DirectRunner(arm, base, args.horizon, args.l1_every, args.hit_every,
                              args.hit_k)
        runner.warm_up(list(variants.values()), seeds[0])
        runs = run_direct(variants, runner, seeds, args.fastv_budget)
    host = machine(args.threads, str(base.device), str(base.dtype).replace("torch.", ""))
    meta = run_meta(args, seeds, time.monotonic() - start, host)
    return summarize(runs, meta, runner.hit_rates)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    if args.via == "ros":
        from specprune_ros.eval.eval_ros import evaluate_ros  # rclpy only when asked for
        result = evaluate_ros(args)
    else:
        result = evaluate_direct(args)
    print(format_table(result))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)
    if args.plot:
        plot(result, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
