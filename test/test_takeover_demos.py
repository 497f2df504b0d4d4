"""Takeover demonstrations: a policy drives until a seeded switch tick, the expert finishes,
only the expert's part is recorded (real simulator; the shipped pick_color checkpoint as
the policy: a trained policy's motion, which the expert can take over from; the tiny
preset's random weights twist the hand past what LIBERO's expert corrects)."""
import json

import h5py
import numpy as np
import pytest

from specprune import load_policy
from specprune.model.folder_hash import checkpoint_hash
from specprune_ros.eval import takeover_demos
from specprune_ros.eval.episode_env import GoalProgress, SimArmEnv
from specprune_ros.eval.takeover_demos import PolicyStart, TakeoverRule
from specprune_ros.node.package_data import SHIPPED_CHECKPOINT as SHIPPED
from specprune_ros.sim.demos import NoiseConfig
from specprune_ros.sim.sim_arm import SimArm, SimArmConfig
from specprune.train.demo_dataset import read_demos
from specprune_ros.sim.libero_experts import expert_for
from specprune_ros.sim.tabletop_demos import EXPERT, expert_obs, record_episode
from specprune_ros.sim.tabletop_suites import TABLETOP_TASKS


def test_the_switch_tick_is_seeded_and_within_the_rule():
    rule = TakeoverRule(earliest=16, latest_share=0.5)
    ticks = [rule.switch_tick(seed, 300) for seed in range(200)]
    assert min(ticks) >= 16 and max(ticks) <= 150 and len(set(ticks)) > 50
    assert rule.switch_tick(7, 300) == rule.switch_tick(7, 300)
    with pytest.raises(ValueError, match="latest_share"):
        TakeoverRule(latest_share=0.0)


def test_the_expert_takes_over_where_the_policy_left_the_arm():
    """The policy drives 24 ticks (three chunks) and leaves the hand elsewhere; the
    expert's part starts there and is all that is recorded."""
    task = TABLETOP_TASKS["sim_goal_0"]
    policy = load_policy(SHIPPED, device="cpu", dtype="float32")
    with SimArm(SimArmConfig(task=task.name, horizon=task.horizon)) as arm:
        start = PolicyStart(policy, switch=24)
        seen = {}

        def spy(arm_, obs):
            seen["reset_eef"] = obs.eef_pos.copy()
            out, tick = start(arm_, obs)
            seen["switch_eef"], seen["tick"] = out.eef_pos.copy(), tick
            seen["switch_state"] = out.proprio_in_base()
            return out, tick

        episode = record_episode(arm, task, 70003, NoiseConfig(), frame_every=4, start=spy)
    assert seen["tick"] == 24
    assert np.linalg.norm(seen["switch_eef"] - seen["reset_eef"]) > 0.005  # the policy moved it
    assert episode is not None  # the expert finished the task from there
    # the demo's rows start at the takeover: frame ticks index them, the phase is the seed's
    ticks = episode["frame_ticks"]
    assert 0 <= ticks[0] < 4 and np.all(np.diff(ticks) == 4) and (24 + ticks[0]) % 4 == 70003 % 4
    assert ticks[-1] < len(episode["actions"])
    assert len(episode["actions"]) == len(episode["proprio"]) < task.horizon - 24 + 7
    # the first recorded state is the one the policy left
    np.testing.assert_allclose(episode["proprio"][0], seen["switch_state"], atol=1e-6)


def test_the_command_records_a_shard_that_names_the_policy(tmp_path):
    out = tmp_path / "takeover"
    assert takeover_demos.main(["--policy", SHIPPED, "--suite", "sim_goal", "--tasks", "1",
                                "--per-task", "1", "--shard-size", "1", "--seed", "70000",
                                "--earliest", "8", "--latest-share", "0.1",
                                "--out", str(out)]) == 0
    (shard,) = sorted(out.iterdir())
    assert shard.name == "sim_goal_task01_part00.hdf5"
    with h5py.File(shard, "r") as f:
        env_args = json.loads(f["data"].attrs["env_args"])
        (demo,) = list(f["data"])
        seed = int(f["data"][demo].attrs["seed"])
        first_tick = int(f["data"][demo]["obs/frame_ticks"][0])
    assert env_args["takeover"] == {"policy": SHIPPED, "checkpoint_hash": checkpoint_hash(SHIPPED),
                                    "earliest": 8, "latest_share": 0.1}
    assert env_args["task"] == "sim_goal_1" and seed >= 70000 + 10000
    switch = TakeoverRule(8, 0.1).switch_tick(seed, TABLETOP_TASKS["sim_goal_1"].horizon)
    assert first_tick < 4 and (switch + first_tick) % 4 == seed % 4
    # it reads back as training reads it (frame ticks within the demo's rows)
    demos = read_demos(str(shard), chunk=8, action_dim=7, proprio_dim=8, image_size=224)
    assert len(demos.names) == 1 and len(demos) > 0


def test_the_goal_progress_tells_a_grasp_and_a_placed_part():
    """What PolicyStart checks before a takeover: at the reset nothing holds and nothing is
    held; once the expert lifts the cube it is held."""
    task = TABLETOP_TASKS["sim_goal_0"]
    with SimArm(SimArmConfig(task=task.name, horizon=task.horizon)) as arm:
        obs = arm.reset(seed=70001)
        assert arm.goal_progress() == ([False], [False])
        expert = expert_for(arm.goal, EXPERT)
        held = False
        for _ in range(task.horizon):
            obs = arm.step(expert.act(expert_obs(obs)))
            if expert.phase.endswith("carry"):
                held = arm.goal_progress()[1] == [True]
                break
        assert held
    with SimArm(SimArmConfig(task="pick_color")) as arm:
        arm.reset(seed=1)
        with pytest.raises(ValueError, match="no goal parts"):
            arm.goal_progress()


def test_the_runner_frames_carry_the_goal_progress():
    """SimArmEnv's frames: nothing held at the reset of a two-part task, one part once the
    expert has placed the first object (hand clear again); none on pick_color."""
    task = TABLETOP_TASKS["sim_long_0"]
    with SimArm(SimArmConfig(task=task.name, horizon=task.horizon)) as arm:
        env = SimArmEnv(arm)
        assert env.reset(70005).progress == GoalProgress(parts=2, held=0, grasped=False)
        _start_by_expert_of([0])(arm, arm.observe())
        assert env.observe().progress == GoalProgress(parts=2, held=1, grasped=False)
    with SimArm(SimArmConfig(task="pick_color")) as arm:
        assert SimArmEnv(arm).reset(1).progress is None


def _start_by_expert_of(parts, seen=None):
    """A Start that lets LIBERO's expert do ``parts`` of the goal (indices), hand clear;
    ``seen`` gets each goal object's position in the base frame at the takeover."""
    def start(arm, obs):
        expert = expert_for([arm.goal[k] for k in parts], EXPERT)
        for tick in range(1, 400):
            obs = arm.step(expert.act(expert_obs(obs)), render=False)
            if expert.done:
                out = arm.observe()
                if seen is not None:
                    seen.update({obj: out.point_in_base(out.extras[f"{obj}_pos"])
                                 for _, obj, _ in arm.goal})
                return out, tick
        raise AssertionError(f"the expert did not finish parts {parts}")
    return start


def test_a_two_part_task_is_taken_over_at_the_part_left():
    """The first placement already holds at the takeover: the expert begins at the second
    part (it does not pick the placed object again), and every recorded row is labelled
    with that part; a later part done before an earlier one gives no demo."""
    task = TABLETOP_TASKS["sim_long_0"]
    with SimArm(SimArmConfig(task=task.name, horizon=task.horizon)) as arm:
        seen = {}
        episode = record_episode(arm, task, 70005, NoiseConfig(), frame_every=4,
                                 start=_start_by_expert_of([0], seen))
        (_, first_obj, _), (_, second_obj, target) = arm.goal
        assert episode is not None  # the success filter: both parts held at once
        assert arm.goal_progress()[0][0]  # the first placement was left where it was
        assert set(episode["part"].tolist()) == {1}
        assert episode["part_focus"] == [[first_obj, "basket"], [second_obj, target]]
        # the recorded positions are the second part's bodies (object first): at the
        # takeover, where the second object stood, not the placed first one
        np.testing.assert_allclose(episode["cube_pos"][0, 0], seen[second_obj], atol=1e-5)
        assert np.linalg.norm(episode["cube_pos"][0, 0] - seen[first_obj]) > 0.02
        skipped = record_episode(arm, task, 70006, NoiseConfig(), frame_every=4,
                                 start=_start_by_expert_of([1]))
        assert skipped is None
        assert arm.goal_progress()[0] == [False, True]
