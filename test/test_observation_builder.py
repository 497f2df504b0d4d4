"""ObservationBuilder without ROS: consistency checks, proprio layouts, ee velocity."""
import math
from typing import List, Sequence

import numpy as np
import pytest

from specprune_ros.node.input_faults import Fault, FaultTracker, Limits
from specprune_ros.node.observation_builder import ObservationBuilder, StateLayout
from specprune_ros.node.quaternions import quat_to_axis_angle, rotation_vector

VIEWS = ("/camera/agentview/image_raw", "/camera/wrist/image_raw")
ARM = tuple(f"panda_joint{i}" for i in range(1, 8))
FINGERS = ("panda_finger_joint1", "panda_finger_joint2")
IDENTITY = (0.0, 0.0, 0.0, 1.0)
T0 = 1000.0


def image(size: int = 224, value: int = 100) -> np.ndarray:
    return np.full((size, size, 3), value, dtype=np.uint8)


def quat_axis(axis: Sequence[float], angle: float) -> np.ndarray:
    """(x, y, z, w) quaternion of a rotation by ``angle`` about the unit ``axis``."""
    axis = np.asarray(axis, dtype=float) / np.linalg.norm(axis)
    return np.append(axis * math.sin(angle / 2), math.cos(angle / 2))


def quat_mul(a: Sequence[float], b: Sequence[float]) -> np.ndarray:
    ax, ay, az, aw = a
    bx, by, bz, bw = b
    return np.array([aw * bx + ax * bw + ay * bz - az * by, aw * by - ax * bz + ay * bw + az * bx,
                     aw * bz + ax * by - ay * bx + az * bw, aw * bw - ax * bx - ay * by - az * bz])


def feed(builder: ObservationBuilder, t: float, fingers=(0.04, -0.04),
         position=(0.1, -0.2, 0.3), quat=IDENTITY) -> None:
    """Both views, joint state and one pose stamped ``t``."""
    for view in range(len(VIEWS)):
        builder.add_frame(view, image(), t, received=t)
    builder.set_joint_state(ARM + FINGERS, [0.1 * i for i in range(7)] + list(fingers), t)
    builder.add_pose(position, quat, t)


def state(builder: ObservationBuilder, t: float, position=(0.1, -0.2, 0.3)) -> None:
    """Joint state and pose stamped ``t`` (no frames)."""
    builder.set_joint_state(ARM + FINGERS, [0.1 * i for i in range(7)] + [0.04, -0.04], t)
    builder.add_pose(position, IDENTITY, t)


def ready_builder(**limits) -> ObservationBuilder:
    """A builder with two consecutive pose samples (so velocity exists) at T0 - 0.05, T0."""
    builder = ObservationBuilder(VIEWS, StateLayout(), Limits(**limits))
    feed(builder, T0 - 0.05)
    feed(builder, T0)
    return builder


def keys(faults: List[Fault]) -> List[str]:
    return [f.key for f in faults]


# ------------------------------------------------------------------ consistency
def test_consistent_inputs_give_an_observation_stamped_with_view_0() -> None:
    result = ready_builder().build(T0 + 0.01, "pick up the cube")
    assert result.faults == []
    obs = result.observation
    assert obs is not None and obs.stamp == T0 and obs.instruction == "pick up the cube"
    assert len(obs.images) == 2 and obs.ee_motion is not None


def test_frames_are_used_once_the_next_build_waits_for_new_ones() -> None:
    builder = ready_builder()
    assert builder.build(T0, "go").observation is not None
    again = builder.build(T0 + 0.01, "go")
    assert again.observation is None and again.faults == []
    builder.add_frame(0, image(), T0 + 0.02)
    state(builder, T0 + 0.02)
    assert builder.build(T0 + 0.03, "go").observation is None  # view 1 not renewed yet
    builder.add_frame(1, image(), T0 + 0.02)
    assert builder.build(T0 + 0.03, "go").observation is not None


def test_newest_frame_wins_older_ones_are_dropped() -> None:
    builder = ready_builder()
    builder.add_frame(0, image(value=1), T0 + 0.01)
    builder.add_frame(0, image(value=2), T0 + 0.02)
    builder.add_frame(1, image(value=3), T0 + 0.02)
    state(builder, T0 + 0.02)
    obs = builder.build(T0 + 0.03, "go").observation
    assert obs.images[0][0, 0, 0] == 2 and obs.stamp == T0 + 0.02


def test_stale_camera_is_reported_with_its_topic_and_age() -> None:
    builder = ready_builder(max_image_age_s=0.5)
    builder.add_frame(0, image(), T0 + 0.8)
    builder.set_joint_state(ARM + FINGERS, [0.0] * 9, T0 + 0.8)
    builder.add_pose((0.1, -0.2, 0.3), IDENTITY, T0 + 0.8)
    result = builder.build(T0 + 0.84, "go")
    assert result.observation is None
    assert keys(result.faults) == [f"camera_stale:{VIEWS[1]}"]
    assert result.faults[0].message == f"camera {VIEWS[1]} stale: 0.84 s > 0.5 s"


def test_missing_camera_is_reported() -> None:
    builder = ObservationBuilder(VIEWS)
    builder.add_frame(0, image(), T0)
    assert f"camera_missing:{VIEWS[1]}" in keys(builder.build(T0, "go").faults)


def test_views_out_of_sync_are_reported() -> None:
    builder = ready_builder(max_view_skew_s=0.05, max_image_age_s=1.0)
    assert builder.build(T0, "go").observation is not None  # the matched pair at T0
    builder.add_frame(0, image(), T0 + 0.2)
    builder.add_frame(1, image(), T0 + 0.1)
    result = builder.build(T0 + 0.2, "go")
    assert keys(result.faults) == ["cameras_out_of_sync"]
    assert "0.100 s behind" in result.faults[0].message
    assert VIEWS[1] in result.faults[0].message.split("behind")[0]


@pytest.mark.parametrize("shape,reason", [((100, 100, 3), "image is 100x100, expected 224x224"),
                                          ((224, 224), "must be (H, W, 3) uint8")])
def test_wrong_image_size_or_shape_is_rejected(shape, reason) -> None:
    builder = ready_builder()
    builder.add_frame(1, np.zeros(shape, dtype=np.uint8), T0)
    faults = builder.build(T0, "go").faults
    assert keys(faults) == [f"camera_bad:{VIEWS[1]}"] and reason in faults[0].message
    builder.add_frame(1, image(), T0 + 0.01)  # a good frame clears it
    assert builder.build(T0 + 0.01, "go").faults == []


def test_any_size_is_accepted_when_the_limit_is_zero() -> None:
    builder = ready_builder(image_width=0, image_height=0)
    builder.add_frame(0, image(size=300), T0 + 0.01)
    builder.add_frame(1, image(size=64), T0 + 0.01)
    state(builder, T0 + 0.01)
    assert builder.build(T0 + 0.01, "go").observation is not None


def test_rejected_frame_reason_is_reported_until_a_good_frame() -> None:
    builder = ready_builder()
    builder.reject_frame(0, "unsupported image encoding '32FC1'")
    faults = builder.build(T0, "go").faults
    assert faults[0].message == f"camera {VIEWS[0]}: unsupported image encoding '32FC1'"


def test_nan_joint_state_is_reported() -> None:
    builder = ready_builder()
    builder.set_joint_state(ARM + FINGERS, [0.0] * 7 + [math.nan, 0.04], T0)
    faults = builder.build(T0, "go").faults
    assert keys(faults) == ["joint_state_nonfinite"]
    assert "panda_finger_joint1" in faults[0].message


def test_nan_in_an_arm_joint_the_policy_does_not_read_is_a_sensor_fault() -> None:
    """Issue #18: LIBERO proprio reads only the fingers, yet a NaN panda_joint4 means the
    arm state (and the ee pose computed from it) cannot be trusted: no observation."""
    builder = ready_builder()
    positions = [0.1 * i for i in range(7)] + [0.04, -0.04]
    positions[3] = math.nan
    feed(builder, T0 + 0.05)
    builder.set_joint_state(ARM + FINGERS, positions, T0 + 0.05)
    result = builder.build(T0 + 0.05, "go")
    assert result.observation is None and keys(result.faults) == ["joint_state_nonfinite"]
    assert result.faults[0].message == ("joint state has non-finite positions: panda_joint4 "
                                        "(sensor fault)")
    feed(builder, T0 + 0.1)  # finite again: steps resume
    assert builder.build(T0 + 0.1, "go").observation is not None


def test_nan_arm_joint_at_the_image_stamp_is_refused_when_the_newest_is_finite() -> None:
    builder = ready_builder()
    positions = [0.1 * i for i in range(7)] + [0.04, -0.04]
    positions[3] = math.inf
    feed(builder, T0 + 0.05)
    builder.set_joint_state(ARM + FINGERS, positions, T0 + 0.05)  # the image instant
    state(builder, T0 + 0.1)  # the newest sample is finite
    result = builder.build(T0 + 0.1, "go")
    assert keys(result.faults) == ["joint_state_nonfinite"]
    assert "at the image stamp has non-finite positions: panda_joint4" in \
        result.faults[0].message


def test_nan_in_a_joint_outside_the_arm_is_ignored() -> None:
    """Another device on /joint_states (a velocity-only wheel, a head) is not the arm."""
    builder = ready_builder()
    for view in range(len(VIEWS)):
        builder.add_frame(view, image(), T0 + 0.05)
    builder.set_joint_state(ARM + FINGERS + ("head_pan",), [0.0] * 7 + [0.04, -0.04, math.nan],
                            T0 + 0.05)
    builder.add_pose((0.1, -0.2, 0.3), IDENTITY, T0 + 0.05)
    assert builder.build(T0 + 0.05, "go").observation is not None


def test_missing_and_stale_joint_state_are_reported() -> None:
    builder = ObservationBuilder(VIEWS)
    assert "joint_state_missing" in keys(builder.build(T0, "go").faults)
    builder = ObservationBuilder(VIEWS, StateLayout(), Limits(max_joint_state_age_s=0.2))
    builder.set_joint_state(ARM, [0.0] * 7, T0)
    assert "joint_state_incomplete" in keys(builder.build(T0, "go").faults)
    builder = ready_builder(max_joint_state_age_s=0.2)
    builder.set_joint_state(ARM + FINGERS, [0.0] * 9, T0 - 0.3)
    assert keys(builder.build(T0, "go").faults) == ["joint_state_stale"]


def test_arm_and_gripper_published_apart_on_one_topic_make_one_state() -> None:
    """Two JointState publishers on /joint_states (robot_state_publisher allows it): each
    message replaced the whole state, the faults flipped between incomplete and non-finite
    on every message and no observation was ever built."""
    builder = ObservationBuilder(VIEWS, StateLayout(), Limits(max_joint_state_age_s=0.2))
    got = []
    for i in range(6):
        t = T0 + 0.05 * i
        builder.set_joint_state(ARM, [0.1 * j for j in range(7)], t)
        builder.set_joint_state(FINGERS, [0.03, -0.03], t + 0.01)
        builder.add_pose((0.1, -0.2, 0.3), IDENTITY, t + 0.01)
        for view in range(len(VIEWS)):
            builder.add_frame(view, image(), t + 0.005, received=t + 0.005)
        result = builder.build(t + 0.01, "go")
        assert i == 0 or not result.faults, keys(result.faults)  # one pose: no velocity yet
        if result.observation is not None:
            got.append(result.observation.proprio)
    assert got, "no observation from the two publishers"
    np.testing.assert_allclose(got[-1][-2:], [0.03, -0.03])  # the gripper's own values
    # the gripper publisher dies: its joints go stale though the arm's keep coming
    for i in range(6, 12):
        builder.set_joint_state(ARM, [0.0] * 7, T0 + 0.05 * i)
    faults = builder.build(T0 + 0.55, "go").faults
    assert keys(faults) == ["joint_state_stale"]
    assert "panda_finger_joint1, panda_finger_joint2, published apart" in faults[0].message


def test_empty_instruction_is_a_fault() -> None:
    assert keys(ready_builder().build(T0, "  ").faults) == ["instruction_missing"]


def test_stale_pose_is_reported() -> None:
    builder = ready_builder(max_pose_age_s=0.5, max_image_age_s=5.0, max_joint_state_age_s=5.0)
    assert keys(builder.build(T0 + 0.6, "go").faults) == ["ee_pose_stale"]


# ------------------------------------------------------------------ proprio
def test_libero_proprio_is_position_axis_angle_and_fingers() -> None:
    builder = ObservationBuilder(VIEWS, StateLayout("libero"))
    quat = (0.0, 0.0, math.sin(math.pi / 4), math.cos(math.pi / 4))  # 90 deg about z
    feed(builder, T0 - 0.05, quat=quat)
    feed(builder, T0, fingers=(0.035, -0.034), quat=quat)
    proprio = builder.build(T0, "go").observation.proprio
    np.testing.assert_allclose(proprio, [0.1, -0.2, 0.3, 0.0, 0.0, math.pi / 2, 0.035, -0.034],
                               atol=1e-12)


def test_libero_axis_angle_keeps_libero_hemisphere_convention() -> None:
    # LIBERO's quat2axisangle does not flip w < 0: -q gives angle 2 pi - theta, axis -axis
    q = -quat_axis((0, 0, 1), math.pi / 2)
    np.testing.assert_allclose(quat_to_axis_angle(q), [0, 0, -1.5 * math.pi], atol=1e-12)
    np.testing.assert_allclose(quat_to_axis_angle((1.0, 0, 0, 0)), [math.pi, 0, 0], atol=1e-12)
    np.testing.assert_array_equal(quat_to_axis_angle(IDENTITY), [0, 0, 0])


def test_joints_proprio_follows_the_configured_names() -> None:
    layout = StateLayout("joints", joint_names=("panda_joint3", "panda_joint1"))
    builder = ObservationBuilder(VIEWS, layout, measure_motion=False)
    for view in range(2):
        builder.add_frame(view, image(), T0)
    builder.set_joint_state(ARM, [0.1 * i for i in range(7)], T0)
    obs = builder.build(T0, "go").observation
    np.testing.assert_allclose(obs.proprio, [0.2, 0.0])
    assert obs.ee_motion is None  # no pose needed in this layout without measured motion


def test_layout_validation() -> None:
    with pytest.raises(ValueError, match="layout must be one of"):
        StateLayout("cartesian")
    with pytest.raises(ValueError, match="2 gripper joint names"):
        StateLayout("libero", gripper_names=("a",))


# ------------------------------------------------------------------ ee velocity
def test_velocity_from_two_poses_includes_rotation_in_the_base_frame() -> None:
    builder = ObservationBuilder(VIEWS)
    q0 = quat_axis((0, 0, 1), math.radians(30))
    q1 = quat_mul(quat_axis((1, 0, 0), 0.05), q0)  # then 0.05 rad about the base x axis
    feed(builder, T0 - 0.1, position=(0.4, 0.0, 0.2), quat=q0)
    feed(builder, T0, position=(0.41, 0.0, 0.18), quat=q1)
    motion = builder.build(T0, "go").observation.ee_motion
    np.testing.assert_allclose(motion.linear, [0.1, 0.0, -0.2], atol=1e-9)
    np.testing.assert_allclose(motion.angular, [0.5, 0.0, 0.0], atol=1e-9)


def test_rotation_vector_takes_the_short_way() -> None:
    q = -quat_axis((0, 1, 0), 0.3)  # same rotation, other hemisphere
    np.testing.assert_allclose(rotation_vector(q), [0, 0.3, 0], atol=1e-12)


def test_first_pose_alone_gives_no_motion_and_says_why() -> None:
    builder = ObservationBuilder(VIEWS)
    feed(builder, T0)
    faults = builder.build(T0, "go").faults
    assert keys(faults) == ["ee_motion_missing"] and "two consecutive poses" in faults[0].message


def test_repeated_pose_stamps_keep_the_last_velocity() -> None:
    builder = ObservationBuilder(VIEWS)
    feed(builder, T0 - 0.1, position=(0.0, 0.0, 0.0))
    feed(builder, T0, position=(0.01, 0.0, 0.0))
    builder.add_pose((0.01, 0.0, 0.0), IDENTITY, T0)  # TF polled again: same transform
    np.testing.assert_allclose(builder.build(T0, "go").observation.ee_motion.linear,
                               [0.1, 0, 0], atol=1e-9)


def test_pose_jump_is_rejected_reported_once_then_motion_recovers() -> None:
    builder = ObservationBuilder(VIEWS, limits=Limits(max_ee_speed=2.0))
    feed(builder, T0 - 0.1, position=(0.4, 0.0, 0.2))
    feed(builder, T0, position=(1.4, 0.0, 0.2))  # 10 m/s
    faults = builder.build(T0, "go").faults
    assert "ee_jump" in keys(faults)
    jump = faults[keys(faults).index("ee_jump")].message
    assert "10.00 m/s" in jump and "max_ee_speed 2" in jump
    assert keys(builder.build(T0, "go").faults) == ["ee_jump"]  # until a consistent pair
    feed(builder, T0 + 0.05, position=(1.405, 0.0, 0.2))
    obs = builder.build(T0 + 0.05, "go").observation
    np.testing.assert_allclose(obs.ee_motion.linear, [0.1, 0, 0], atol=1e-9)


def test_a_jump_between_two_checks_is_still_reported_once() -> None:
    builder = ObservationBuilder(VIEWS, limits=Limits(max_ee_speed=2.0))
    feed(builder, T0 - 0.1, position=(0.4, 0.0, 0.2))
    feed(builder, T0 - 0.05, position=(1.4, 0.0, 0.2))  # jump...
    feed(builder, T0, position=(1.405, 0.0, 0.2))  # ...and recovered before any build
    assert keys(builder.build(T0, "go").faults) == ["ee_jump"]
    assert builder.build(T0, "go").observation is not None


def test_angular_jump_is_rejected() -> None:
    builder = ObservationBuilder(VIEWS, limits=Limits(max_ee_angular_speed=5.0))
    feed(builder, T0 - 0.05)
    feed(builder, T0, quat=quat_axis((0, 0, 1), 1.0))  # 20 rad/s
    assert "ee_jump" in keys(builder.build(T0, "go").faults)


def test_source_error_is_reported_until_the_next_pose() -> None:
    builder = ready_builder()
    builder.pose_unavailable("TF panda_link0 -> panda_hand unavailable: no transform")
    faults = builder.build(T0, "go").faults
    assert keys(faults) == ["ee_pose_error"] and "no transform" in faults[0].message
    feed(builder, T0 + 0.05)
    assert builder.build(T0 + 0.05, "go").faults == []


def test_non_finite_pose_is_rejected() -> None:
    builder = ready_builder()
    builder.add_pose((math.nan, 0.0, 0.0), IDENTITY, T0 + 0.01)
    assert keys(builder.build(T0, "go").faults) == ["ee_pose_error"]


def test_pose_in_another_frame_is_refused_and_never_becomes_the_proprio() -> None:
    """Issue #18: a pose stamped in 'world_elsewhere' was used as proprio."""
    builder = ObservationBuilder(VIEWS, base_frame="panda_link0")
    feed(builder, T0 - 0.05)
    feed(builder, T0)
    assert builder.build(T0, "go").observation is not None
    for view in range(len(VIEWS)):
        builder.add_frame(view, image(), T0 + 0.05)
    builder.set_joint_state(ARM + FINGERS, [0.0] * 7 + [0.04, -0.04], T0 + 0.05)
    builder.add_pose((0.9, 0.9, 0.9), IDENTITY, T0 + 0.05, frame_id="world_elsewhere")
    result = builder.build(T0 + 0.05, "go")
    assert result.observation is None and keys(result.faults) == ["ee_pose_error"]
    assert result.faults[0].message == ("ee pose rejected: frame_id 'world_elsewhere' is not "
                                        "base_frame 'panda_link0'")
    builder.add_pose((0.1, -0.2, 0.3), IDENTITY, T0 + 0.05, frame_id="panda_link0")
    obs = builder.build(T0 + 0.05, "go").observation
    assert obs is not None  # resumes with the next pose in base_frame...
    np.testing.assert_allclose(obs.proprio[:3], [0.1, -0.2, 0.3])  # ...never the other one
    np.testing.assert_allclose(obs.ee_motion.linear, [0.0, 0.0, 0.0], atol=1e-9)


def test_pose_frame_is_not_checked_for_tf_or_without_a_base_frame() -> None:
    tf_fed = ObservationBuilder(VIEWS, base_frame="panda_link0")
    tf_fed.add_pose((0.1, -0.2, 0.3), IDENTITY, T0)  # no frame: the TF lookup's own
    unchecked = ObservationBuilder(VIEWS)  # no base_frame: any frame
    unchecked.add_pose((0.1, -0.2, 0.3), IDENTITY, T0, frame_id="world_elsewhere")
    for builder in (tf_fed, unchecked):
        faults = keys(builder.build(T0, "go").faults)
        assert "ee_motion_missing" in faults and "ee_pose_error" not in faults  # pose taken


def test_policy_motion_source_passes_no_motion_but_needs_the_pose_for_libero() -> None:
    builder = ObservationBuilder(VIEWS, measure_motion=False)
    for view in range(2):
        builder.add_frame(view, image(), T0)
    builder.set_joint_state(ARM + FINGERS, [0.0] * 9, T0)
    assert keys(builder.build(T0, "go").faults) == ["ee_pose_missing"]
    builder.add_pose((0.1, 0.2, 0.3), IDENTITY, T0)
    obs = builder.build(T0, "go").observation
    assert obs is not None and obs.ee_motion is None


# ------------------------------------------------------------------ log once
def test_fault_tracker_reports_each_fault_once_until_it_clears() -> None:
    tracker = FaultTracker()
    stale1, stale2 = Fault("stale", "0.6 s"), Fault("stale", "0.7 s")
    nan = Fault("nan", "joint NaN")
    assert tracker.update([stale1]) == ([stale1], [])
    assert tracker.update([stale2, nan]) == ([nan], [])  # same key: no new report
    assert tracker.update([nan]) == ([], [stale2])
    assert tracker.update([]) == ([], [nan])
    assert tracker.update([stale1]) == ([stale1], [])  # recurred: reported again


@pytest.mark.parametrize("told", [True, False])
def test_a_backward_time_jump_forgets_the_old_timeline(told) -> None:
    """After the clock steps back 0.3 s (less than any age limit) the policy node's jump
    callback calls time_jumped: no sample of the old timeline is paired or blended."""
    builder = ready_builder()  # T0 - 0.05 and T0, the arm at x = 0.1
    if told:
        builder.time_jumped()
    for t in (T0 - 0.35, T0 - 0.3):
        feed(builder, t, position=(0.2, -0.2, 0.3))
    result = builder.build(T0 - 0.29, "pick up the cube")
    if not told:  # what the node would build without the callback: the old timeline's frame
        assert result.observation is None or result.observation.stamp == T0
        return
    assert result.faults == []
    assert result.observation.stamp == T0 - 0.3
    assert result.observation.proprio[0] == pytest.approx(0.2)
