"""Closed-loop episodes of the simulated task, in process: the policy variants (one per
configuration, sharing one model), the runner that steps the arm and records each step,
and ``run_episodes``, the unit of work of both the serial evaluation and a Ray task.

Per policy step the cameras are rendered (``arm.observe()``), the policy sees both views,
the instruction, the LIBERO proprio (in the base frame, as the node builds it) and the
end-effector motion measured the way the policy node measures it (finite difference of the
base-frame pose over the last control tick), and the whole chunk is executed open loop
without rendering (OpenVLA-OFT executes all 8 actions on LIBERO). Everything an episode
does follows from its seed: the same seed gives the same episode in any process.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from specprune import EEMotion, Observation, PruneConfig, SpecPrunePolicy, load_policy
from specprune.bench import FastVPolicy, hit_rate
from specprune_ros.eval.configurations import CONFIGS
from specprune_ros.eval.eval_results import (FASTV, SPECPRUNE, UNPRUNED, ConfigRun, EpisodeRecord,
                                             StepRecord)
from specprune_ros.node.observation_builder import Limits, MotionEstimator
from specprune_ros.sim.sim_arm import SimArm, SimArmConfig, SimObservation

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
               fastv_budget: int = 0, progress: Callable[[str], None] = print,
               hit_source: Optional[str] = None) -> Dict[str, ConfigRun]:
    """Every configuration on every seed, seed-major, FastV last: it keeps
    ``fastv_budget`` visual tokens, or (0) SpecPrune's mean over all of this run's
    SpecPrune steps (its class default without SpecPrune). The hit rate is sampled in
    ``hit_source``'s episodes (default: hit_source_of(variants))."""
    runs = {name: ConfigRun(name, v.changes) for name, v in variants.items()}
    hit_source = hit_source or hit_source_of(list(variants))
    first = [name for name in variants if name != FASTV]
    phases = [first] + ([[FASTV]] if FASTV in variants else [])
    for phase in phases:
        if phase == [FASTV]:
            set_fastv_budget(variants[FASTV], fastv_budget_of(runs.get(SPECPRUNE), fastv_budget))
        for i, seed in enumerate(seeds):
            for name in phase:
                record = runner.episode(variants[name], runs[name], seed,
                                        sample_hits=name == hit_source)
                status = "success" if record.success else (record.error or "failure")
                progress(f"[{i + 1}/{len(seeds)}] seed {seed} {name}: {status} after "
                         f"{record.steps} ticks, {record.policy_steps} policy steps")
    return runs


def hit_source_of(configs: Sequence[str]) -> str:
    """The configuration whose episodes sample the hit rate: unpruned, else the first."""
    return UNPRUNED if UNPRUNED in configs else configs[0]


def fastv_budget_of(spec: Optional[ConfigRun], fixed: int) -> int:
    """FastV's visual-token budget: ``fixed``, else SpecPrune's mean kept tokens (0: its
    class default)."""
    if fixed:
        return fixed
    kept = [s.kept_visual_tokens for s in spec.steps] if spec is not None else []
    return max(1, int(round(float(np.mean(kept))))) if kept else 0


def set_fastv_budget(variant: Variant, budget: int) -> None:
    if budget:
        variant.policy.budget = budget
    variant.changes["budget"] = int(variant.policy.budget)


@dataclass(frozen=True)
class EpisodeSpec:
    """What every process running episodes must agree on (picklable, for Ray tasks)."""

    policy: str
    task: str
    horizon: int
    threads: int
    device: str
    dtype: str
    l1_every: int
    hit_every: int
    hit_k: int
    first_seed: int  # of the whole evaluation (the simulator's construction seed)


def run_episodes(spec: EpisodeSpec, configs: Sequence[str], seeds: Sequence[int],
                 fastv_budget: int = 0, progress: Callable[[str], None] = print,
                 hit_source: Optional[str] = None
                 ) -> Tuple[Dict[str, ConfigRun], List[float], str, str]:
    """Load the policy, open the simulator and run ``configs`` on ``seeds`` (run_direct):
    (runs, hit rates, device, dtype)."""
    torch.set_num_threads(spec.threads)
    base = load_policy(spec.policy, device=spec.device, dtype=spec.dtype,
                       prune_config=PruneConfig(enabled=False))
    variants = build_variants(base, configs)
    with SimArm(SimArmConfig(task=spec.task, horizon=spec.horizon,
                             seed=spec.first_seed)) as arm:
        runner = DirectRunner(arm, base, spec.horizon, spec.l1_every, spec.hit_every,
                              spec.hit_k)
        runner.warm_up(list(variants.values()), seeds[0])
        runs = run_direct(variants, runner, seeds, fastv_budget, progress, hit_source)
    return runs, runner.hit_rates, str(base.device), str(base.dtype).replace("torch.", "")
