"""The LIBERO-shaped suites on our simulator (real MuJoCo): success means placed and let go,
"left" is what the front camera shows on its left, every task's scripted expert succeeds
on a development seed, and a recorded demo reads back as training data with its labels."""
import os

import numpy as np
import pytest

from specprune.train.demo_dataset import read_demos
from specprune_ros.eval.episode_env import default_horizon
from specprune_ros.sim.demos import DemoWriter, NoiseConfig
from specprune_ros.sim.libero_experts import LiberoExpertConfig, expert_for
from specprune_ros.sim.sim_arm import SimArm, SimArmConfig
from specprune_ros.sim.tabletop_demos import EXPERT, expert_obs, object_box, record_episode
from specprune_ros.sim.tabletop_scene import PLATE_SIZE
from specprune_ros.sim.tabletop_suites import SUITES, TABLETOP_TASKS, suite_tasks
from specprune_ros.sim.task_wiring import task_wiring

#: SPECPRUNE_LIBERO_FULL=1: three development seeds per task instead of one
SEEDS = (20000, 20001, 20002) if os.environ.get("SPECPRUNE_LIBERO_FULL") == "1" else (20000,)


def _teleport(arm: SimArm, name: str, pos: np.ndarray) -> None:
    env = arm._env
    joint = env.items[name].joints[0]
    env.sim.data.set_joint_qpos(joint, np.concatenate([pos, [1.0, 0.0, 0.0, 0.0]]))
    env.sim.data.set_joint_qvel(joint, np.zeros(6))
    env.sim.forward()


@pytest.fixture(scope="module")
def goal_arm():
    with SimArm(SimArmConfig(task="sim_goal_0", horizon=300)) as sim:
        yield sim


def test_on_and_in_hold_when_the_object_rests_there_let_go(goal_arm):
    obs = goal_arm.reset(seed=5)
    assert not obs.success and goal_arm.instruction == "put the red cube on the plate"
    env = goal_arm._env
    plate, basket = obs.extras["plate_pos"], obs.extras["basket_pos"]
    idle = np.array([0, 0, 0, 0, 0, 0, -1.0])
    _teleport(goal_arm, "red_cube", plate + [0.02, 0.0, 0.03])  # dropped onto the plate
    for _ in range(15):
        obs = goal_arm.step(idle, render=False)
    assert obs.success and env.part_holds("on", "red_cube", "plate")
    assert not env.part_holds("in", "red_cube", "basket")
    _teleport(goal_arm, "red_cube", plate + [PLATE_SIZE[0] + 0.04, 0.0, 0.03])  # beside it
    for _ in range(15):
        obs = goal_arm.step(idle, render=False)
    assert not obs.success
    _teleport(goal_arm, "red_cube", basket + [0.0, 0.0, 0.03])
    for _ in range(15):
        obs = goal_arm.step(idle, render=False)
    assert env.part_holds("in", "red_cube", "basket") and not obs.success


def _red(pixel: np.ndarray) -> bool:
    r, g, b = (int(v) for v in pixel)
    return r > 80 and r > 3 * g and r > 3 * b  # lit or shaded


def test_left_is_the_front_cameras_left():
    with SimArm(SimArmConfig(task="sim_spatial_2")) as arm:
        for seed in range(4):
            obs = arm.reset(seed=seed)
            (_, left, _), = arm.goal
            right = ({"red_cube_1", "red_cube_2"} - {left}).pop()
            at = {n: arm.project("agentview", obs.extras[f"{n}_pos"]) for n in (left, right)}
            assert at[left][1] < at[right][1], (seed, at)
            for row, col in at.values():  # the projection lands on red pixels of the render
                assert _red(obs.images["agentview"][int(row), int(col)]), (seed, row, col)
            assert np.allclose(obs.extras["target_pos"], obs.extras[f"{left}_pos"])


@pytest.mark.parametrize("name", [n for n in sorted(TABLETOP_TASKS) if n.endswith("_0")])
def test_every_object_stands_whole_in_the_front_view(name):
    task = TABLETOP_TASKS[name]
    with SimArm(SimArmConfig(task=name)) as arm:
        for seed in range(10):
            obs = arm.reset(seed=seed)
            for obj in task.objects:
                box = object_box(arm, "agentview", obs.extras[f"{obj.name}_pos"], obj.kind)
                assert np.all((box >= 0.0) & (box <= 1.0)), (seed, obj.name, box)


@pytest.mark.parametrize("name", sorted(TABLETOP_TASKS))
def test_every_tasks_expert_succeeds_within_the_suites_limit(name):
    task = TABLETOP_TASKS[name]
    assert default_horizon(name) == task.horizon == task_wiring(name).horizon
    with SimArm(SimArmConfig(task=name, horizon=task.horizon)) as arm:
        for seed in SEEDS:
            obs = arm.reset(seed=seed)
            expert = expert_for(arm.goal, EXPERT)
            for tick in range(task.horizon):
                obs = arm.step(expert.act(expert_obs(obs)), render=False)
                if obs.success:
                    break
            assert obs.success, (name, seed, expert.phase_log)
            # held over (or onto) its target the object does not count: the last part's
            # first success comes once the hand opens (release) or after
            last = expert.phase.split(":")[-1]
            assert last in ("release", "retreat"), (name, seed, expert.phase_log)


def test_a_two_part_demo_is_labelled_part_by_part_and_reads_back(tmp_path):
    task = TABLETOP_TASKS["sim_long_1"]
    with SimArm(SimArmConfig(task=task.name, horizon=task.horizon)) as arm:
        episode = record_episode(arm, task, 20004, NoiseConfig(), frame_every=4)
        assert episode is not None
        assert episode["part_focus"] == [["red_cube", "plate"], ["blue_cube", "basket"]]
        assert arm.goal == [["on", "red_cube", "plate"], ["in", "blue_cube", "basket"]]
        part = episode["part"]
        assert part[0] == 0 and part[-1] == 1 and np.all(np.diff(part) >= 0)
        ticks = episode["frame_ticks"]
        assert np.all(np.diff(ticks) == 4) and ticks[0] == 20004 % 4 == 0
        boxes = episode["object_boxes"]
        assert boxes.shape == (len(ticks), 2, 2, 4)
        # the first frame's red cube box holds its centre as the camera projects it
        obs = arm.reset(seed=20004)
        row, col = arm.project("agentview", obs.extras["red_cube_pos"])
        x0, y0, x1, y1 = boxes[0, 0, 0] * arm.config.camera_size
        assert x0 < col < x1 and y0 < row < y1
        np.testing.assert_array_equal(episode["images"]["agentview"][0], obs.images["agentview"])
    path = str(tmp_path / "long.hdf5")
    writer = DemoWriter(path, {"task": task.name})
    writer.add(episode)
    writer.close()
    demos = read_demos(path, chunk=8, action_dim=7, proprio_dim=8, image_size=224)
    assert demos.object_boxes is not None and demos.object_boxes.shape[0] == len(ticks)
    assert demos.instructions == [task.instruction]


def test_the_experts_speed_cap_is_validated_and_caps_every_move():
    with pytest.raises(ValueError, match="max_action"):
        LiberoExpertConfig(max_action=0.0)
    with pytest.raises(ValueError, match="max_action"):
        LiberoExpertConfig(max_action=1.5)
    assert EXPERT.max_action == 0.4
    expert = expert_for([["on", "red_cube", "plate"]], EXPERT)
    far = {"robot0_eef_pos": np.array([0.0, 0.0, 1.2]),
           "robot0_eef_quat": np.array([0, 0, 0, 1.0]),
           "red_cube_pos": np.array([0.1, -0.2, 0.82]), "plate_pos": np.array([0.0, 0.1, 0.81])}
    action = expert.act(far)
    assert np.max(np.abs(action[:3])) == pytest.approx(0.4)


def test_frames_kept_every_4th_tick_are_the_every_tick_recordings_and_boxes_hold_the_object():
    task = TABLETOP_TASKS["sim_goal_2"]  # the green cylinder onto the plate
    with SimArm(SimArmConfig(task=task.name, horizon=task.horizon)) as arm:
        sparse = record_episode(arm, task, 20005, NoiseConfig(), frame_every=4)
        dense = record_episode(arm, task, 20005, NoiseConfig(), frame_every=1)
    assert sparse is not None and dense is not None
    ticks = sparse["frame_ticks"]
    assert ticks[0] == 20005 % 4 == 1 and np.all(np.diff(ticks) == 4)
    np.testing.assert_array_equal(sparse["actions"], dense["actions"])
    for view in ("agentview", "robot0_eye_in_hand"):
        np.testing.assert_array_equal(sparse["images"][view], dense["images"][view][ticks])
    np.testing.assert_allclose(sparse["object_boxes"], dense["object_boxes"][ticks])
    image, (x0, y0, x1, y1) = sparse["images"]["agentview"][0], sparse["object_boxes"][0, 0, 0]
    r, g, b = (image[..., i].astype(int) for i in range(3))
    rows, cols = np.nonzero((g > 100) & (r < 80) & (b < 80))  # the green cylinder's pixels
    size = image.shape[0]
    assert len(rows) > 20
    assert x0 * size <= cols.mean() <= x1 * size and y0 * size <= rows.mean() <= y1 * size


@pytest.mark.parametrize("suite", SUITES)
def test_the_tasks_of_a_suite_share_their_scene_on_a_seed(suite):
    """What --shared-scenes relies on: one seed, one scene, whichever object the
    instruction names (a suite's tasks differ only in their instruction and goal)."""
    tasks = suite_tasks(suite)
    objects = [o.name for o in tasks[0].objects]
    scenes = []
    for task in tasks:
        assert [o.name for o in task.objects] == objects
        with SimArm(SimArmConfig(task=task.name, horizon=task.horizon)) as arm:
            extras = arm.reset(seed=80000).extras
            scenes.append(np.array([extras[f"{name}_pos"] for name in objects]))
    for scene in scenes[1:]:
        np.testing.assert_allclose(scene, scenes[0], atol=1e-9)
