"""Closed-loop episodes in process: the policy variants (one per configuration, sharing one
model), the runner that steps an EpisodeEnv and records each step, and ``run_episodes``,
the unit of work of both the serial evaluation and a Ray task.

Per policy step the cameras are rendered (``env.observe()``), the policy sees both views,
the instruction, the proprio and the end-effector motion measured the way the policy node
measures it (finite difference of the pose over the last control tick), and the chunk is
executed without rendering: all of it (OpenVLA-OFT executes all 8 actions on LIBERO)
unless the action-aware controller would enter fine mode after one of its ticks. Then the
rest is dropped and the policy replans on a fresh observation (SpecPrune's released code
checks the switch on every executed action and re-plans on it; the new chunk comes back
with ``replan`` set). Configurations without pruning never replan.

FastV and random dropping keep SpecPrune's visual budget: per step by default, the count
SpecPrune's own selection keeps on the same observation (a shadow SpecPrune policy with its
own cross-step state steps on the baseline's observations, untimed), or SpecPrune's mean
over the run (``mean``), or a fixed count. Per step is what "at the same budget" means on
a task whose budget moves (fine mode, V_dynamic on motion): a mean would give the baseline
more tokens than SpecPrune where SpecPrune keeps few and fewer where it needs many.
``compute`` is per step too, but at SpecPrune's compute rather than its static count: the
baseline keeps the mean of SpecPrune's visual tokens over the layers from the baseline's
drop layer to the last, so both run the same visual token-layers there (SpecPrune's layer
pruning drops more tokens deeper; matched at the static count a baseline keeps those).
Everything an episode does follows from its seed: the same seed gives the same episode in
any process, and a run resumed from its journal (eval_journal.py) runs only the (seed,
configuration) pairs it does not hold yet.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from specprune import EEMotion, Observation, PruneConfig, SpecPrunePolicy, StepStats, load_policy
from specprune.bench import BASELINE_POLICIES as BASELINES, FastVPolicy, RandomDropPolicy, hit_rate
from specprune.config import layer_roles as prune_layer_roles
from specprune_ros.eval.configurations import CONFIGS
from specprune_ros.eval.episode_env import EpisodeEnv, Frame, open_env
from specprune_ros.eval.eval_journal import Journal, in_seed_order
from specprune_ros.eval.eval_results import (SPECPRUNE, UNPRUNED, ConfigRun, EpisodeRecord,
                                             StepRecord)
from specprune_ros.node.ee_motion import MotionEstimator
from specprune_ros.node.input_faults import Limits

#: how the baselines' budget follows SpecPrune's
BUDGET_STEP, BUDGET_MEAN, BUDGET_COMPUTE = "step", "mean", "compute"
BUDGET_MATCHES = (BUDGET_STEP, BUDGET_MEAN, BUDGET_COMPUTE)
#: the per-step rules (a shadow SpecPrune sets the budget) and their label in the JSON
SHADOW_LABELS = {BUDGET_STEP: "specprune_per_step", BUDGET_COMPUTE: "specprune_compute_per_step"}


@dataclass
class Variant:
    """One configuration's policy (sharing the model with every other variant); a baseline
    matched per step has a ``shadow`` SpecPrune policy whose kept count sets its budget."""

    name: str
    policy: SpecPrunePolicy
    changes: Dict[str, Any]
    shadow: Optional[SpecPrunePolicy] = None
    layers: Dict[str, List[int]] = field(default_factory=dict)
    per_step: str = BUDGET_STEP  # with a shadow: its static count, or its token-layers

    def shadow_budget(self, stats: StepStats) -> int:
        """The baseline's budget from its shadow's step (BUDGET_STEP / BUDGET_COMPUTE)."""
        if self.per_step != BUDGET_COMPUTE:
            return stats.kept_visual_tokens
        deeper = stats.visual_tokens_per_layer[self.policy.layer:]
        return int(round(sum(deeper) / len(deeper))) if deeper else stats.kept_visual_tokens


# ------------------------------------------------------------------------------ policies
def build_variants(base: SpecPrunePolicy, names: Sequence[str],
                   per_step: Optional[str] = BUDGET_STEP,
                   defaults: Optional[PruneConfig] = None) -> Dict[str, Variant]:
    """A policy per configuration around ``base``'s model, tokenizer and statistics; each
    configuration's changes apply on top of ``defaults`` (PruneConfig()). A baseline
    follows a shadow SpecPrune per step: its static count (BUDGET_STEP) or its token-layers
    (BUDGET_COMPUTE); ``per_step`` None: no shadow (a mean or fixed budget is set later)."""
    shared = (base.model, base.tokenizer, base.statistics, base.layout)
    place = (str(base.device), base.dtype)
    defaults = defaults or PruneConfig()
    variants = {}
    for name in names:
        changes = CONFIGS[name][0]
        kind = BASELINES.get(name, SpecPrunePolicy)
        policy = kind(*shared, defaults.updated(**changes), *place)
        shadow = (SpecPrunePolicy(*shared, defaults, *place)
                  if name in BASELINES and per_step else None)
        variants[name] = Variant(name, policy, dict(changes), shadow, layer_roles(policy))
        if shadow is not None:
            variants[name].per_step = per_step
            variants[name].changes["budget"] = SHADOW_LABELS[per_step]
    return variants


def layer_roles(policy: SpecPrunePolicy) -> Dict[str, List[int]]:
    """The decoder layers where ``policy`` drops visual tokens, by role
    (specprune.config.layer_roles; FastV's one layer)."""
    if isinstance(policy, FastVPolicy):
        return {"drop": [policy.layer]}
    return prune_layer_roles(policy.config, policy.model.num_layers)


def observation(frame: Frame, instruction: str, motion: Optional[EEMotion]) -> Observation:
    """The policy input of a rendered Frame."""
    if frame.images is None:
        raise ValueError("the policy needs a rendered frame")
    return Observation(images=list(frame.images), instruction=instruction,
                       proprio=frame.proprio, ee_motion=motion, stamp=frame.stamp)


def replan_due(policy: SpecPrunePolicy, motion: Optional[EEMotion]) -> bool:
    """Whether the policy's controller would enter fine mode on ``motion`` now (the
    released code then drops the rest of the chunk and re-plans); never without pruning."""
    cfg = policy.config
    return (cfg.enabled and cfg.replan_on_fine_entry
            and policy.controller.would_enter_fine(motion, cfg))


def start_episode(variant: Variant, seed: int) -> None:
    """Forget the previous episode; random dropping draws from this episode's seed."""
    variant.policy.reset()
    if variant.shadow is not None:
        variant.shadow.reset()
    if isinstance(variant.policy, RandomDropPolicy):
        variant.policy.episode_seed = seed


# ------------------------------------------------------------------------------ episodes
class SimulatorFailure(RuntimeError):
    """The environment, not the policy, failed (a LIBERO worker died or timed out, the
    simulator raised): the run stops instead of recording a failed episode, and a run
    resumed from its journal (``--resume``) runs that episode again in a fresh
    environment. Recorded as failures, one dead worker failed every later episode of
    every configuration (its task's arm was kept), and the journal kept them."""


class DirectRunner:
    """Runs episodes in-process on one EpisodeEnv; records into ConfigRuns."""

    def __init__(self, env: EpisodeEnv, reference: SpecPrunePolicy, horizon: int,
                 l1_every: int = 1, hit_every: int = 0, hit_k: int = 20) -> None:
        self.env, self.reference, self.horizon = env, reference, horizon
        self.l1_every, self.hit_every, self.hit_k = l1_every, hit_every, hit_k
        self.hit_rates: List[float] = []
        self._motion = MotionEstimator(Limits())

    def warm_up(self, variants: Sequence[Variant], seed: int) -> None:
        """One untimed step per policy (first-call allocations), then forget it."""
        inputs = observation(self.env.reset(seed), self.env.instruction, None)
        shadows = [v.shadow for v in variants if v.shadow is not None]
        for policy in [v.policy for v in variants] + shadows + [self.reference]:
            policy.step(inputs)
            policy.reset()

    def episode(self, variant: Variant, run: ConfigRun, seed: int,
                sample_hits: bool = False) -> EpisodeRecord:
        """One episode; an exception of the policy or a non-finite action ends it as a
        failure, one of the environment stops the run (SimulatorFailure)."""
        record = EpisodeRecord(seed=seed)
        try:
            self._episode(variant, run, record, sample_hits)
        except SimulatorFailure:
            raise
        except Exception as exc:  # noqa: BLE001 - a failure of this episode, not the run
            record.success = False
            record.error = f"{type(exc).__name__}: {exc}"
        run.episodes.append(record)
        return record

    def _episode(self, variant: Variant, run: ConfigRun, record: EpisodeRecord,
                 sample_hits: bool) -> None:
        frame = self._env(self.env.reset, record.seed)
        record.instruction = self.env.instruction
        start_episode(variant, record.seed)
        self._motion.reset()
        self._note_tick(frame, record)
        while record.steps < self.horizon:
            index = record.policy_steps
            if index:
                frame = self._env(self.env.observe)
            inputs = observation(frame, record.instruction, self._motion.motion)
            chunk = self._step(variant, run, record, inputs)
            if sample_hits and self.hit_every and index % self.hit_every == 0:
                self.hit_rates.append(hit_rate(self.reference, inputs, self.hit_k))
            if self._execute(variant.policy, chunk, record):
                return

    def _execute(self, policy: SpecPrunePolicy, chunk: np.ndarray,
                 record: EpisodeRecord) -> bool:
        """Execute the chunk tick by tick, its rest dropped when a replan is due; True when
        the episode ended (success or horizon)."""
        for done, action in enumerate(chunk, 1):
            frame = self._env(self.env.step, action)
            record.steps += 1
            self._note_tick(frame, record)
            if frame.success:
                record.success = True
                return True
            if record.steps >= self.horizon:
                return True
            if done < len(chunk) and replan_due(policy, self._motion.motion):
                record.replans += 1
                return False
        return False

    @staticmethod
    def _env(call: Callable[..., Frame], *args: Any) -> Frame:
        try:
            return call(*args)
        except Exception as exc:  # noqa: BLE001 - whatever the simulator raises
            raise SimulatorFailure(f"{call.__name__}: {type(exc).__name__}: {exc}") from exc

    def _note_tick(self, frame: Frame, record: EpisodeRecord) -> None:
        """Feed the tick's pose at sim time, as the bridge publishes it to the node, and
        note its goal progress."""
        self._motion.add(*frame.ee_pose, frame.stamp)
        if frame.progress is not None:
            record.note_progress(frame.progress)

    def _step(self, variant: Variant, run: ConfigRun, record: EpisodeRecord,
              inputs: Observation) -> np.ndarray:
        """Time one policy step, record its stats and action deviation; the actions."""
        if variant.shadow is not None:  # untimed: what SpecPrune keeps on this observation
            variant.policy.budget = variant.shadow_budget(variant.shadow.step(inputs)[1])
        start = time.perf_counter()
        chunk, stats = variant.policy.step(inputs)
        wall_ms = (time.perf_counter() - start) * 1e3
        if not np.all(np.isfinite(chunk.actions)):
            raise ValueError("the policy returned non-finite actions")
        step = StepRecord(step_ms=wall_ms, llm_ms=stats.llm_ms,
                          kept_visual_tokens=stats.kept_visual_tokens,
                          visual_tokens_total=stats.visual_tokens_total, mode=stats.mode,
                          visual_tokens_per_layer=list(stats.visual_tokens_per_layer))
        if (variant.name != UNPRUNED and self.l1_every
                and record.policy_steps % self.l1_every == 0):
            ref, _ = self.reference.step(inputs)
            step.action_l1 = float(np.abs(chunk.normalized - ref.normalized).mean())
        run.steps.append(step)
        record.note_step(step)
        return chunk.actions


@dataclass
class Resume:
    """A run's journal to resume from (``--resume``), opened once the runs exist; after the
    run ``journal`` holds every attempt's episodes, hit rates and wall time."""

    path: str
    key: Dict[str, Any]
    journal: Optional[Journal] = None
    info: Optional[Dict[str, Any]] = None  # where this attempt runs (Journal.open)

    def open(self, runs: Dict[str, ConfigRun], seeds: Sequence[int]) -> Journal:
        self.journal = Journal.open(self.path, self.key, runs, seeds, info=self.info)
        return self.journal


def late_configs(configs: Sequence[str], budget_match: str, fixed_budget: int) -> List[str]:
    """The baselines that must wait for SpecPrune's whole run (mean budget matching)."""
    if budget_match != BUDGET_MEAN or fixed_budget:
        return []
    return [c for c in configs if c in BASELINES]


def run_direct(variants: Dict[str, Variant], runner: DirectRunner, seeds: Sequence[int],
               fixed_budget: int = 0, progress: Callable[[str], None] = print,
               hit_source: Optional[str] = None, late: Sequence[str] = (),
               resume: Optional[Resume] = None) -> Dict[str, ConfigRun]:
    """Every configuration on every seed, seed-major. The baselines without a shadow keep
    ``fixed_budget`` visual tokens, or (0) SpecPrune's mean over all of this run's
    SpecPrune steps (its class default without SpecPrune); those in ``late`` run after the
    others for that. The hit rate is sampled in ``hit_source``'s episodes (default:
    hit_source_of(variants)). With ``resume`` the episodes already in its journal are read
    back and skipped, and each new one is journalled as it ends."""
    runs = {name: ConfigRun(name, v.changes, layers=v.layers) for name, v in variants.items()}
    journal = resume.open(runs, seeds) if resume is not None else None
    hit_source = hit_source or hit_source_of(list(variants))
    first = [name for name in variants if name not in late]
    for name in first:
        if name in BASELINES and variants[name].shadow is None:
            set_budget(variants[name], fixed_budget)
    for phase in [first] + ([list(late)] if late else []):
        if phase is not first:
            for name in phase:
                set_budget(variants[name], budget_of(runs.get(SPECPRUNE), fixed_budget))
        for i, seed in enumerate(seeds):
            for name in phase:
                if journal is not None and (seed, name) in journal.done:
                    continue
                began, steps, hits = time.monotonic(), len(runs[name].steps), len(
                    runner.hit_rates)
                record = runner.episode(variants[name], runs[name], seed,
                                        sample_hits=name == hit_source)
                if journal is not None:
                    journal.record(name, record, runs[name].steps[steps:], {},
                                   time.monotonic() - began, runner.hit_rates[hits:])
                status = "success" if record.success else (record.error or "failure")
                progress(f"[{i + 1}/{len(seeds)}] seed {seed} {name}: {status} after "
                         f"{record.steps} ticks, {record.policy_steps} policy steps")
    if journal is not None:
        in_seed_order(runs, seeds)
    return runs


def hit_source_of(configs: Sequence[str]) -> str:
    """The configuration whose episodes sample the hit rate: unpruned, else the first."""
    return UNPRUNED if UNPRUNED in configs else configs[0]


def budget_of(spec: Optional[ConfigRun], fixed: int) -> int:
    """A baseline's visual-token budget without a shadow: ``fixed``, else SpecPrune's mean
    kept tokens (0: its class default)."""
    if fixed:
        return fixed
    kept = [s.kept_visual_tokens for s in spec.steps] if spec is not None else []
    return max(1, int(round(float(np.mean(kept))))) if kept else 0


def set_budget(variant: Variant, budget: int) -> None:
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
    budget_match: str = BUDGET_STEP  # how FastV / random follow SpecPrune's budget
    prune_defaults: Tuple[Tuple[str, Any], ...] = ()  # PruneConfig fields under every config
    claim: bool = False  # a claim run (LIBERO: the benchmark's fixed initial states)
    gripper_convention: str = "env"  # "openvla_oft": a released LIBERO checkpoint's gripper

    def defaults(self) -> PruneConfig:
        return PruneConfig().updated(**dict(self.prune_defaults))


def run_episodes(spec: EpisodeSpec, configs: Sequence[str], seeds: Sequence[int],
                 fixed_budget: int = 0, progress: Callable[[str], None] = print,
                 hit_source: Optional[str] = None, late: Sequence[str] = (),
                 resume: Optional[Resume] = None
                 ) -> Tuple[Dict[str, ConfigRun], List[float], str, str]:
    """Load the policy, open the simulator and run ``configs`` on ``seeds`` (run_direct):
    (runs, hit rates of the episodes this call ran, device, dtype)."""
    torch.set_num_threads(spec.threads)
    base = load_policy(spec.policy, device=spec.device, dtype=spec.dtype,
                       prune_config=PruneConfig(enabled=False))
    per_step = (spec.budget_match if spec.budget_match in SHADOW_LABELS and not fixed_budget
                else None)
    variants = build_variants(base, configs, per_step, spec.defaults())
    with open_env(spec.task, spec.horizon, spec.first_seed, spec.claim,
                  spec.gripper_convention) as env:
        runner = DirectRunner(env, base, spec.horizon, spec.l1_every, spec.hit_every,
                              spec.hit_k)
        runner.warm_up(list(variants.values()), seeds[0])
        runs = run_direct(variants, runner, seeds, fixed_budget, progress, hit_source, late,
                          resume)
    return runs, runner.hit_rates, str(base.device), str(base.dtype).replace("torch.", "")
