"""The in-process runner on a scripted environment (no simulator): replanning mid-chunk,
per-step budget matching of the baselines, random token dropping, the per-episode records."""
from dataclasses import dataclass, field
from typing import Callable, List, Optional

import numpy as np
import pytest
import torch

from specprune import ActionChunk, EEMotion, PruneConfig, SpecPrunePolicy, StepStats
from specprune.bench import FastVPolicy, GridDropPolicy, RandomDropPolicy
from specprune.prune.baselines import RandomDropHook, grid_counts, random_visual_subset
from specprune.prune.controller import ActionAwareController
from specprune.prune.decoder import DecoderState
from specprune.synthetic import SyntheticEpisode
from specprune_ros.eval import episodes
from specprune_ros.eval.episode_env import Frame, GoalProgress
from specprune_ros.eval.eval_results import ConfigRun, EpisodeRecord, config_summary

from core_helpers import tiny_policy

CHUNK = 8


class ScriptedEnv:
    """An EpisodeEnv from SyntheticEpisode: the end effector moves along x at ``speed``
    m/s; ``log`` holds ("observe" | "step") per call; ``observed`` the policy's frames."""

    def __init__(self, speed: float = 0.2, succeed_at: Optional[int] = None,
                 progress: Optional[Callable[[int], GoalProgress]] = None) -> None:
        self.speed, self.succeed_at, self.progress = speed, succeed_at, progress
        self.log: List[str] = []
        self.observed: List[Frame] = []
        self.tick = 0
        self.episode = SyntheticEpisode(seed=1)

    @property
    def instruction(self) -> str:
        return "pick up the red cube"

    def _frame(self, rendered: bool) -> Frame:
        images = ([self.episode.frame(v, self.tick) for v in range(2)] if rendered else None)
        pos = np.array([0.4 + self.speed * 0.05 * self.tick, 0.0, 0.2])
        frame = Frame(images=images, proprio=np.zeros(8),
                      ee_pose=(pos, np.array([0.0, 0.0, 0.0, 1.0])), stamp=0.05 * self.tick,
                      success=self.succeed_at is not None and self.tick >= self.succeed_at,
                      progress=self.progress(self.tick) if self.progress else None)
        if rendered:
            self.observed.append(frame)
        return frame

    def reset(self, episode: int) -> Frame:
        self.tick = 0
        self.episode = SyntheticEpisode(seed=episode)
        self.log.append("reset")
        return self._frame(True)

    def observe(self) -> Frame:
        self.log.append("observe")
        return self._frame(True)

    def step(self, action: np.ndarray) -> Frame:
        self.tick += 1
        self.log.append("step")
        return self._frame(False)


@dataclass
class CountingController:
    """Says "enter fine now" on the k-th tick of every chunk (counts since the last step)."""

    k: int
    ticks: int = 0
    asked: List[int] = field(default_factory=list)

    def would_enter_fine(self, motion, cfg) -> bool:
        self.ticks += 1
        self.asked.append(self.ticks)
        return self.ticks == self.k


class ScriptedPolicy:
    """A policy whose controller asks for a replan after k executed actions."""

    def __init__(self, k: int, config: PruneConfig) -> None:
        self.config, self.controller = config, CountingController(k)

    def reset(self) -> None:
        self.controller.ticks = 0

    def step(self, obs):
        self.controller.ticks = 0
        actions = np.zeros((CHUNK, 7))
        stats = StepStats(mode="coarse", visual_tokens_total=512,
                          visual_tokens_per_layer=[512, 200, 80, 80])
        return ActionChunk(actions=actions, normalized=actions), stats


def _ticks_per_policy_step(log: List[str]) -> List[int]:
    """Executed ticks between consecutive observations."""
    counts, current = [], 0
    for entry in log[1:]:
        if entry == "step":
            current += 1
        else:
            counts.append(current)
            current = 0
    return counts + [current]


def _run(policy, horizon: int, env: Optional[ScriptedEnv] = None, name: str = "specprune"):
    env = env or ScriptedEnv()
    runner = episodes.DirectRunner(env, policy, horizon, l1_every=0)
    run = ConfigRun(name, {})
    record = runner.episode(episodes.Variant(name, policy, {}), run, seed=5)
    assert record.error is None, record.error
    return env, run, record


# ------------------------------------------------------------------------------ replanning
@pytest.mark.parametrize("k", [1, 3, 7])
def test_a_chunk_asking_for_replan_after_k_actions_executes_k(k: int) -> None:
    env, _, record = _run(ScriptedPolicy(k, PruneConfig()), horizon=3 * k)
    assert _ticks_per_policy_step(env.log) == [k, k, k]
    # the third chunk reaches the horizon on its k-th tick: the episode ends there
    assert record.policy_steps == 3 and record.replans == 2 and record.steps == 3 * k


def test_without_a_replan_the_whole_chunk_runs_open_loop() -> None:
    env, _, record = _run(ScriptedPolicy(CHUNK + 1, PruneConfig()), horizon=2 * CHUNK)
    assert _ticks_per_policy_step(env.log) == [CHUNK, CHUNK] and record.replans == 0


@pytest.mark.parametrize("changes", [{"enabled": False}, {"replan_on_fine_entry": False}])
def test_unpruned_and_replan_off_execute_whole_chunks(changes) -> None:
    """As openvla-oft: no pruning (or replanning switched off) never cuts a chunk."""
    policy = ScriptedPolicy(2, PruneConfig().updated(**changes))
    env, _, record = _run(policy, horizon=2 * CHUNK)
    assert _ticks_per_policy_step(env.log) == [CHUNK, CHUNK] and record.replans == 0
    assert policy.controller.asked == []  # never even asked


def test_success_mid_chunk_ends_the_episode_there() -> None:
    env, _, record = _run(ScriptedPolicy(CHUNK + 1, PruneConfig()), horizon=50,
                          env=ScriptedEnv(succeed_at=11))
    assert record.success and record.steps == 11 and record.policy_steps == 2


def test_controller_peek_agrees_with_the_switch_it_predicts() -> None:
    """would_enter_fine is True exactly when the next update enters fine mode, and it
    changes nothing (warm-up, fine mode, controller off, bad samples: False)."""
    cfg = PruneConfig(warmup_steps=2)
    slow = EEMotion(linear=np.array([0.02, 0.0, -0.01]), angular=np.zeros(3))
    fast = EEMotion(linear=np.array([0.3, 0.0, 0.0]), angular=np.zeros(3))
    ctrl = ActionAwareController()
    seen = []
    for motion in [slow, slow, fast, slow, slow]:
        peek = ctrl.would_enter_fine(motion, cfg)
        assert ctrl.would_enter_fine(motion, cfg) == peek  # no side effect
        seen.append((peek, ctrl.update(motion, cfg).switched_to_fine))
    assert seen == [(False, False), (False, False), (False, False), (True, True),
                    (False, False)]
    off = PruneConfig(warmup_steps=0, controller_enabled=False)
    assert not ActionAwareController().would_enter_fine(slow, off)
    nan = EEMotion(linear=np.full(3, np.nan), angular=np.zeros(3))
    assert not ActionAwareController().would_enter_fine(nan, PruneConfig(warmup_steps=0))


def test_real_policy_replans_when_the_arm_slows_and_records_fine_steps() -> None:
    """SpecPrune on a slow arm past its warm-up: the first chunk is cut after one tick,
    the next step runs in fine mode and says replan."""
    policy = tiny_policy(PruneConfig(warmup_steps=1))
    env, run, record = _run(policy, horizon=12, env=ScriptedEnv(speed=0.02))
    assert _ticks_per_policy_step(env.log)[0] == 1 and record.replans >= 1
    assert [s.mode for s in run.steps][:2] == ["coarse", "fine"]
    assert record.fine_steps == sum(s.mode == "fine" for s in run.steps) >= 1
    fast_env, fast_run, fast = _run(tiny_policy(PruneConfig(warmup_steps=1)), horizon=12,
                                    env=ScriptedEnv(speed=0.3))
    assert fast.replans == 0 and _ticks_per_policy_step(fast_env.log)[0] == CHUNK


# ------------------------------------------------------------------------------ records
def test_episode_records_count_kept_tokens_and_drops_per_layer() -> None:
    record = EpisodeRecord(seed=0)
    for per_layer, mode in (([512, 200, 80, 72], "coarse"), ([512, 300, 100, 90], "fine")):
        step = episodes.StepRecord(step_ms=1.0, visual_tokens_total=512, mode=mode,
                                   kept_visual_tokens=per_layer[2],
                                   visual_tokens_per_layer=per_layer)
        record.note_step(step)
    assert record.policy_steps == 2 and record.fine_steps == 1
    assert record.kept_visual_tokens == [80, 100]
    assert record.dropped_per_layer == [0, 312 + 212, 120 + 200, 8 + 10]


def test_episode_records_keep_each_steps_time_and_llm_time_to_a_tenth_of_a_ms() -> None:
    record = EpisodeRecord(seed=0)
    for step_ms, llm_ms in ((173.26, 120.04), (98.75, float("nan"))):
        record.note_step(episodes.StepRecord(step_ms=step_ms, llm_ms=llm_ms))
    assert record.step_ms == [173.3, 98.8]
    assert record.llm_ms == [120.0, None]  # not measured: None, not NaN, in the JSON
    summary = config_summary(ConfigRun("specprune", {}, episodes=[record]))
    assert summary["per_episode"][0]["step_ms"] == [173.3, 98.8]


def test_config_summary_names_the_layers_that_pruned() -> None:
    run = ConfigRun("specprune", {}, layers={"static": [1, 2], "layer_pruning": [3, 5]})
    for per_layer in ([512, 200, 80, 72, 72, 72], [512, 200, 80, 80, 80, 80]):
        step = episodes.StepRecord(step_ms=1.0, visual_tokens_total=512,
                                   visual_tokens_per_layer=per_layer)
        run.steps.append(step)
    summary = config_summary(run)
    assert summary["dropped_per_layer_mean"] == [0.0, 312.0, 120.0, 4.0, 0.0, 0.0]
    assert summary["layers_dropping"] == [1, 2, 3]
    assert summary["layer_pruning_acted"] == [3]  # layer 5 never dropped anything


def test_layer_roles_follow_layer_depth() -> None:
    """The paper's 5/10/15/20 written for 32 layers land at 2/3/4 of a 6-layer model (5
    maps below layer 2 and is dropped); absolute numbers keep only what exists."""
    policy = tiny_policy()
    depth = policy.model.num_layers
    rel = SpecPrunePolicy(policy.model, policy.tokenizer, policy.statistics, policy.layout,
                          PruneConfig(layer_depth=32))
    expected = sorted({int(np.floor(i * depth / 32 + 0.5)) for i in (5, 10, 15, 20)} - {0, 1})
    assert episodes.layer_roles(rel)["layer_pruning"] == [i for i in expected if i < depth]
    assert episodes.layer_roles(policy)["layer_pruning"] == [i for i in (5, 10, 15, 20)
                                                             if i < depth]


# ------------------------------------------------------------------------------ baselines
def test_random_subset_is_reproducible_and_depends_on_episode_and_step() -> None:
    a = random_visual_subset(512, 80, (100000, 0))
    assert len(a) == len(set(a)) == 80 and a.min() >= 0 and a.max() < 512
    assert np.array_equal(a, random_visual_subset(512, 80, (100000, 0)))
    assert not np.array_equal(a, random_visual_subset(512, 80, (100000, 1)))
    assert not np.array_equal(a, random_visual_subset(512, 80, (100001, 0)))
    assert len(random_visual_subset(512, 600, (1, 2))) == 512


def test_random_dropping_keeps_exactly_the_budget_and_not_specprunes_set() -> None:
    base = tiny_policy()
    shared = (base.model, base.tokenizer, base.statistics, base.layout)
    spec = SpecPrunePolicy(*shared, PruneConfig(layer_prune_enabled=False))
    rand = RandomDropPolicy(*shared, PruneConfig(enabled=False))
    obs = SyntheticEpisode(seed=1).observation(0)
    spec.step(obs)  # SpecPrune's first step keeps every patch: its budget from the second
    _, spec_stats = spec.step(obs)
    budget = spec_stats.kept_visual_tokens
    assert budget < 512
    rand.budget, rand.episode_seed = budget, 7
    rand.reset()
    _, stats = rand.step(obs)
    assert stats.kept_visual_tokens == budget
    assert set(stats.visual_tokens_per_layer[2:]) == {budget}  # nothing more later
    # the set the hook keeps: exactly the seeded draw, which is not SpecPrune's selection
    prep = rand._prepare(obs)
    state = DecoderState(prep.embeds, torch.arange(prep.embeds.shape[1]),
                         torch.zeros(1, prep.embeds.shape[1], 4),
                         torch.zeros(1, prep.embeds.shape[1], 4))
    RandomDropHook(prep.layout, 2, budget, (7, 0)).before_layer(2, None, state)
    v0, nv = prep.layout.visual_start, prep.layout.num_visual
    kept = state.positions[(state.positions >= v0) & (state.positions < v0 + nv)] - v0
    drawn = random_visual_subset(nv, budget, (7, 0))
    assert kept.tolist() == drawn.tolist()
    # the step reports that set per view (demo_replay's shares and token maps)
    reported = np.flatnonzero(np.concatenate([m.ravel() for m in stats.kept_masks]))
    assert len(stats.kept_masks) == prep.layout.num_views
    assert reported.tolist() == drawn.tolist()
    specprune_set = np.flatnonzero(np.concatenate([m.ravel() for m in spec_stats.kept_masks]))
    assert len(specprune_set) == budget and set(drawn) != set(specprune_set)


def test_fastv_reports_the_tokens_it_keeps_and_unpruned_none() -> None:
    base = tiny_policy()
    shared = (base.model, base.tokenizer, base.statistics, base.layout)
    fastv = FastVPolicy(*shared, PruneConfig(enabled=False))
    fastv.budget = 40
    obs = SyntheticEpisode(seed=3).observation(0)
    _, stats = fastv.step(obs)
    assert sum(int(m.sum()) for m in stats.kept_masks) == 40 == stats.kept_visual_tokens
    unpruned = SpecPrunePolicy(*shared, PruneConfig(enabled=False))
    assert unpruned.step(obs)[1].kept_masks == []


def test_grid_dropping_keeps_an_even_stride_of_every_view_and_only_that() -> None:
    base = tiny_policy()
    shared = (base.model, base.tokenizer, base.statistics, base.layout)
    grid = GridDropPolicy(*shared, PruneConfig(enabled=False))
    grid.budget = 41
    _, stats = grid.step(SyntheticEpisode(seed=3).observation(0))
    assert stats.kept_visual_tokens == 41 and set(stats.visual_tokens_per_layer[2:]) == {41}
    assert [int(m.sum()) for m in stats.kept_masks] == [21, 20]  # split, remainder first
    view = stats.kept_masks[1].ravel()
    kept = np.flatnonzero(view)
    assert kept[0] == 0 and kept[-1] == view.size - 1  # the whole view, corner to corner
    gaps = np.diff(kept)
    assert gaps.max() - gaps.min() <= 1  # an even stride
    with pytest.raises(ValueError, match="budget"):
        grid_counts(-1, 2, 256)
    assert grid_counts(600, 2, 256) == (256, 256)


class Recording:
    """Wraps a policy: keeps every observation it steps on."""

    def __init__(self, policy) -> None:
        self.policy, self.inputs = policy, []

    def __getattr__(self, name: str):
        return getattr(self.policy, name)

    def step(self, obs):
        self.inputs.append(obs)
        return self.policy.step(obs)


@pytest.mark.parametrize("name", ["fastv", "random", "grid"])
def test_baselines_keep_specprunes_count_on_every_observation(name: str) -> None:
    """Per-step matching: on each observation of the baseline's own episode its budget is
    what SpecPrune keeps on that observation (replayed here through a fresh SpecPrune)."""
    base = tiny_policy()
    variant = episodes.build_variants(base, [name])[name]
    variant.shadow = Recording(variant.shadow)
    runner = episodes.DirectRunner(ScriptedEnv(speed=0.2), base, 3 * CHUNK, l1_every=0)
    record = runner.episode(variant, ConfigRun(name, variant.changes), seed=11)
    assert record.error is None and record.policy_steps == 3
    replay = SpecPrunePolicy(base.model, base.tokenizer, base.statistics, base.layout)
    expected = [replay.step(obs)[1].kept_visual_tokens for obs in variant.shadow.inputs]
    assert len(expected) == 3 and record.kept_visual_tokens == expected
    assert variant.changes["budget"] == "specprune_per_step"


def test_compute_matching_gives_the_baseline_specprunes_token_layers_from_its_drop_layer():
    """--budget-match compute: on each observation random keeps the mean of SpecPrune's
    visual tokens over the layers from layer 2 on, fewer than its static count where
    SpecPrune's layer pruning dropped more; the layers from 2 on then hold the same
    token-layers (to rounding)."""
    base = tiny_policy()
    cfg = PruneConfig(layer_prune_layers=(3, 4), layer_prune_min_visual=0)  # acts in 6 layers
    variant = episodes.build_variants(base, ["random"], episodes.BUDGET_COMPUTE,
                                      defaults=cfg)["random"]
    variant.shadow = Recording(variant.shadow)
    runner = episodes.DirectRunner(ScriptedEnv(speed=0.2), base, 3 * CHUNK, l1_every=0)
    record = runner.episode(variant, ConfigRun("random", variant.changes), seed=11)
    assert record.error is None and record.policy_steps == 3
    replay = SpecPrunePolicy(base.model, base.tokenizer, base.statistics, base.layout, cfg)
    shadow = [replay.step(obs)[1] for obs in variant.shadow.inputs]
    deep = [s.visual_tokens_per_layer[2:] for s in shadow]
    assert record.kept_visual_tokens == [round(sum(d) / len(d)) for d in deep]
    assert any(k < s.kept_visual_tokens for k, s in zip(record.kept_visual_tokens, shadow))
    assert variant.changes["budget"] == "specprune_compute_per_step"


# ------------------------------------------------------------------------------ goal progress
def test_an_episode_records_the_most_goal_parts_held_at_once() -> None:
    """A two-part goal: the object is grasped at tick 5, the first part holds on ticks
    10-19 and is knocked off again; the record keeps the best moment, not the last tick,
    and the summary counts the episode under one part held."""
    def progress(tick: int) -> GoalProgress:
        return GoalProgress(parts=2, held=int(10 <= tick < 20), grasped=5 <= tick < 9)

    env = ScriptedEnv(speed=0.0, progress=progress)
    _, run, record = _run(ScriptedPolicy(CHUNK, PruneConfig()), horizon=30, env=env)
    assert (record.goal_parts, record.most_parts_held, record.grasped) == (2, 1, True)
    assert config_summary(run)["goal_progress"] == {"episodes": 1, "grasped": 1,
                                                    "most_parts_held": [0, 1, 0]}


def test_an_environment_without_goal_progress_records_none() -> None:
    _, run, record = _run(ScriptedPolicy(CHUNK, PruneConfig()), horizon=16)
    assert (record.goal_parts, record.most_parts_held, record.grasped) == (None, None, None)
    assert config_summary(run)["goal_progress"] is None


def test_the_progress_summary_counts_only_the_episodes_that_tell() -> None:
    """A run resumed from a journal written before goal progress was kept: the old
    episodes (None) are left out of the counts, and ``episodes`` says so."""
    told = EpisodeRecord(seed=2)
    for held, grasped in ((0, True), (1, False)):
        told.note_progress(GoalProgress(parts=2, held=held, grasped=grasped))
    run = ConfigRun("unpruned", {}, episodes=[EpisodeRecord(seed=1), told])
    assert config_summary(run)["goal_progress"] == {"episodes": 1, "grasped": 1,
                                                    "most_parts_held": [0, 1, 0]}
