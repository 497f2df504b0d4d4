"""Behaviour of the ROS-free simulated arm (robosuite Lift, OSC delta control, 2 cameras)."""
import math
import threading
from typing import Iterator

import numpy as np
import pytest

from specprune_ros.sim.sim_arm import (JOINT_NAMES, SimArm, SimArmConfig, SimObservation,
                                       quat_to_axis_angle, validate_action)

SIZE = 96  # smaller than the default 224 to keep the tests fast; layout is size-independent
HOLD_OPEN = np.array([0, 0, 0, 0, 0, 0, -1.0])


@pytest.fixture(scope="module")
def arm() -> Iterator[SimArm]:
    sim = SimArm(SimArmConfig(camera_size=SIZE, horizon=200, seed=0))
    yield sim
    sim.close()


def run(arm: SimArm, action: np.ndarray, steps: int) -> SimObservation:
    obs = arm.last_observation
    for _ in range(steps):
        obs = arm.step(action)
    return obs


def red_mask(img: np.ndarray) -> np.ndarray:
    """Pixels of the red cube: red clearly above both other channels."""
    px = img.astype(int)
    return (px[..., 0] - np.maximum(px[..., 1], px[..., 2])) > 50


def test_moving_plus_x_moves_the_end_effector_along_plus_x(arm: SimArm) -> None:
    arm.reset(seed=1)
    start = run(arm, HOLD_OPEN, 5).eef_pos.copy()
    end = run(arm, np.array([1.0, 0, 0, 0, 0, 0, -1.0]), 10).eef_pos
    delta = end - start
    # OSC scales 1.0 to a 5 cm goal offset per tick; the arm lags it: ~0.11 m in 10 ticks
    assert 0.05 < delta[0] < 0.5, delta
    assert abs(delta[1]) < 0.2 * delta[0] and abs(delta[2]) < 0.2 * delta[0], delta


def test_zero_action_holds_position_at_rest(arm: SimArm) -> None:
    start = arm.reset(seed=2).eef_pos.copy()
    end = run(arm, HOLD_OPEN, 20).eef_pos
    assert np.linalg.norm(end - start) < 1e-3


def test_closing_the_gripper_closes_the_fingers(arm: SimArm) -> None:
    arm.reset(seed=3)
    opened = run(arm, HOLD_OPEN, 10)
    closed = run(arm, np.array([0, 0, 0, 0, 0, 0, 1.0]), 10)
    assert opened.gripper_qpos[0] > 0.03 and opened.gripper_qpos[1] < -0.03
    assert closed.gripper_qpos[0] < opened.gripper_qpos[0] - 0.02
    np.testing.assert_allclose(closed.joint_positions[7:], closed.gripper_qpos)


def test_observation_layout(arm: SimArm) -> None:
    obs = arm.reset(seed=4)
    assert obs.joint_names == JOINT_NAMES and len(JOINT_NAMES) == 9
    assert obs.joint_positions.shape == obs.joint_velocities.shape == (9,)
    assert obs.eef_pos.shape == (3,) and obs.eef_quat.shape == (4,)
    assert math.isclose(np.linalg.norm(obs.eef_quat), 1.0, rel_tol=1e-6)
    assert obs.step == 0 and not obs.success and obs.sim_time >= 0.0
    assert run(arm, HOLD_OPEN, 1).step == 1
    assert arm.goal == []  # pick_color has no BDDL-style goal (the suites' tasks do)


def test_proprio_libero_is_pos_axis_angle_gripper(arm: SimArm) -> None:
    obs = arm.reset(seed=5)
    proprio = obs.proprio_libero()
    assert proprio.shape == (8,) and np.all(np.isfinite(proprio))
    np.testing.assert_array_equal(proprio[:3], obs.eef_pos)
    np.testing.assert_array_equal(proprio[6:], obs.gripper_qpos)
    # the Panda hand points down at reset: a rotation of about pi about a horizontal axis
    assert abs(np.linalg.norm(proprio[3:6]) - math.pi) < 0.5


def test_axis_angle_of_known_rotations() -> None:
    half = math.sqrt(0.5)
    np.testing.assert_allclose(quat_to_axis_angle([0, 0, half, half]), [0, 0, math.pi / 2])
    np.testing.assert_allclose(quat_to_axis_angle([1, 0, 0, 0]), [math.pi, 0, 0])
    np.testing.assert_array_equal(quat_to_axis_angle([0, 0, 0, 1]), np.zeros(3))


def test_eef_pose_in_base_subtracts_the_base(arm: SimArm) -> None:
    obs = arm.reset(seed=6)
    pos, quat = obs.eef_pose_in_base()
    # robosuite mounts the Panda base unrotated at (-0.56, 0, 0.912) on Lift's table
    np.testing.assert_allclose(obs.base_quat, [0, 0, 0, 1], atol=1e-9)
    np.testing.assert_allclose(pos, obs.eef_pos - obs.base_pos, atol=1e-9)
    np.testing.assert_allclose(quat, obs.eef_quat, atol=1e-9)


def test_images_have_the_configured_size(arm: SimArm) -> None:
    obs = arm.reset(seed=7)
    assert set(obs.images) == {"agentview", "robot0_eye_in_hand"}
    for img in obs.images.values():
        assert img.shape == (SIZE, SIZE, 3) and img.dtype == np.uint8
        assert img.flags["C_CONTIGUOUS"]


def test_agentview_is_upright_table_in_the_lower_half(arm: SimArm) -> None:
    grey = arm.reset(seed=8).images["agentview"].mean(axis=2)
    # the white table fills the bottom of the third-person view; floor and robot the top
    assert grey[-SIZE // 4:].mean() > 220
    assert grey[-SIZE // 4:].mean() > grey[:SIZE // 4].mean() + 60


def test_wrist_view_is_upright_cube_where_the_camera_model_projects_it(arm: SimArm) -> None:
    obs = arm.reset(seed=9)
    mask = red_mask(obs.images["robot0_eye_in_hand"])
    assert mask.sum() > 20, "the red cube should be visible from the wrist camera at reset"
    rows, cols = np.nonzero(mask)
    row, col = arm.project("robot0_eye_in_hand", obs.extras["cube_pos"])
    assert abs(rows.mean() - row) < 0.08 * SIZE and abs(cols.mean() - col) < 0.08 * SIZE


def test_the_cube_is_red_as_the_instruction_says(arm: SimArm) -> None:
    assert arm.instruction == "pick up the red cube"
    assert red_mask(arm.reset(seed=10).images["agentview"]).sum() > 10


def test_same_seed_same_initial_state(arm: SimArm) -> None:
    first = arm.reset(seed=11)
    again = arm.reset(seed=11)
    other = arm.reset(seed=12)
    np.testing.assert_array_equal(first.extras["cube_pos"], again.extras["cube_pos"])
    np.testing.assert_array_equal(first.joint_positions, again.joint_positions)
    assert not np.array_equal(first.extras["cube_pos"], other.extras["cube_pos"])


def test_a_view_rendered_after_unrendered_ticks_shows_the_current_state(arm: SimArm) -> None:
    """Rendering only some ticks (a camera slower than control, sparse demo frames) gives
    the same frame as rendering every tick; through robosuite's camera observables the
    first frame after a pause came back black and later ones a tick old."""
    push = np.array([0.8, -0.5, 0.3, 0, 0, 0, -1.0])
    arm.reset(seed=4)
    every = [arm.step(push, render=True).images["agentview"] for _ in range(8)]
    arm.reset(seed=4)
    for tick in range(8):
        obs = arm.step(push, render=tick % 4 == 3)
        assert bool(obs.images) == (tick % 4 == 3)
        if obs.images:
            assert obs.images["agentview"].mean() > 50  # a scene, not an empty buffer
            np.testing.assert_array_equal(obs.images["agentview"], every[tick])
    np.testing.assert_array_equal(arm.observe().images["agentview"], every[-1])


def test_steps_from_another_thread_render_the_same_images(arm: SimArm) -> None:
    arm.reset(seed=14)
    in_main = arm.step(HOLD_OPEN).images
    arm.reset(seed=14)
    result = {}
    worker = threading.Thread(target=lambda: result.update(arm.step(HOLD_OPEN).images))
    worker.start()
    worker.join(timeout=30)
    for name, img in in_main.items():
        np.testing.assert_array_equal(result[name], img)


@pytest.mark.parametrize("bad", [np.zeros(6), np.zeros((1, 7)), np.array([np.nan] + [0] * 6),
                                 np.array([0] * 6 + [np.inf]), "forward"])
def test_bad_actions_raise(arm: SimArm, bad: object) -> None:
    arm.reset(seed=13)
    with pytest.raises(ValueError, match="action"):
        arm.step(bad)  # type: ignore[arg-type]


def test_out_of_range_actions_are_clipped() -> None:
    np.testing.assert_array_equal(validate_action([3, -3, 0.5, 0, 0, 0, 9]),
                                  [1, -1, 0.5, 0, 0, 0, 1])


def test_horizon_ends_the_episode() -> None:
    with SimArm(SimArmConfig(camera_size=32, horizon=2, cameras=("agentview",))) as short:
        short.reset()
        run(short, HOLD_OPEN, 2)
        assert short.done
        with pytest.raises(RuntimeError, match="horizon"):
            short.step(HOLD_OPEN)
        assert not short.reset().step


@pytest.mark.parametrize("field,value", [("task", "stack"), ("camera_size", 8),
                                         ("control_rate_hz", 0.0), ("control_rate_hz", 1e4),
                                         ("horizon", 0), ("seed", -1), ("cameras", ()),
                                         ("cameras", ("agentview", "agentview")),
                                         ("fast_render", "yes")])
def test_config_rejects_bad_values_naming_the_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=f"SimArmConfig.{field}="):
        SimArmConfig(**{field: value})  # type: ignore[arg-type]
