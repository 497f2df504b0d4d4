"""The executor under a disturbed arm, a late tick and limits set to freeze it.

Like test_executor_safety: an ExecutorNode outside any ROS graph (``executor_helpers.Bare``,
no rclpy.init()) and, where motion matters, the kinematic ``ToyArm``. What each test pins
down was found wrong by a review (2026-12-06), with the figure the old code gave:

- a joint pushed away (a collision, a person) or one bad encoder sample stepped the joint
  target by up to ``max_joint_lead`` towards it and stored that step as the joint's velocity
  (10 rad/s against a 1 rad/s limit): the target ran on, away from the policy's target
  (-0.553 rad after a push to -0.3);
- one bad ``/ee_pose`` sample 0.3 m off stepped a pose target 0.25 m for a tick and left it
  5 cm away for good;
- an acceleration limit of 0 (``ros2 param set``) locked the current velocity: the policy
  could never slow the arm;
- a twist planned with the last tick interval ran 6.4 mm past the workspace box when the
  next tick came 100 ms late (``controller_lag_s`` 0);
- JointStates whose names did not match ``joint_names`` were skipped without a word.
"""
import numpy as np
import pytest
from sensor_msgs.msg import JointState

from executor_helpers import Bare, ToyArm, stamp
from specprune_ros.node import executor_parameters as xp
from specprune_ros.node.joint_limits import JointLimits
from specprune_ros.node.safety_envelope import Limits

DEFAULT = {s.name: s.default for s in xp.PARAMS}
ALOHA = dict(action_layout="aloha", output="joint_trajectory")
HOLD_STILL = [0.0, 0, 0, 0, 0, 0, 0.5]  # a Cartesian chunk row: no motion, gripper half


def joint_targets(bare: Bare, since: int = 0) -> np.ndarray:
    return np.array([m.points[-1].positions for m in bare.out.sent[since:]])


def pose_targets(bare: Bare, since: int = 0) -> np.ndarray:
    return np.array([[m.pose.position.x, m.pose.position.y, m.pose.position.z]
                     for m in bare.out.sent[since:]])


# ------------------------------------------------------------------ a disturbed arm
@pytest.mark.parametrize("push", ["held away", "one bad sample"])
def test_a_joint_pushed_away_does_not_drag_its_target(push):
    bare = Bare(**ALOHA)
    still = np.zeros(14)
    for _ in range(5):  # at rest at the policy's target
        bare.joints(still)
        bare.chunk(still)
        bare.tick()
    start = len(bare.out.sent)
    pushed = still.copy()
    pushed[0] = -0.3  # three times max_joint_lead (0.1) away
    for i in range(40):
        bare.joints(pushed if push == "held away" or i == 0 else still)
        bare.chunk(still)
        bare.tick()
        speed = np.abs(bare.node.core.joint_motion.velocity).max()
        assert speed <= DEFAULT["max_joint_speed"] + 1e-9, (i, speed)
    sent = joint_targets(bare, start)
    assert len(sent) == 40
    np.testing.assert_allclose(sent, 0.0, atol=1e-12)  # old: -0.2 at once, then further


def test_a_blocked_joint_does_not_wind_its_target_up():
    """The lead still binds the other way: a blocked joint's target stops max_joint_lead
    ahead of it."""
    bare = Bare(**ALOHA)
    blocked, wanted = np.zeros(14), np.full(14, 1.0)
    for _ in range(50):  # 1 s at 1 rad/s would reach 1 rad
        bare.joints(blocked)
        bare.chunk(wanted)
        bare.tick()
    sent = joint_targets(bare)
    assert sent.max() <= DEFAULT["max_joint_lead"] + 1e-12
    assert sent[-1, 0] == pytest.approx(DEFAULT["max_joint_lead"])
    assert bare.node.core.counters["joint_lead"] > 0


@pytest.mark.parametrize("push", ["held away", "one bad sample"])
def test_a_pose_sample_far_off_does_not_step_the_pose_target(push):
    bare = Bare(output="pose")
    for _ in range(5):
        bare.pose(x=0.5)
        bare.chunk(HOLD_STILL)
        bare.tick()
    start = len(bare.out.sent)
    for i in range(20):
        bare.pose(x=0.2 if push == "held away" or i == 0 else 0.5)  # 0.3 m off
        bare.chunk(HOLD_STILL)
        bare.tick()
    sent = pose_targets(bare, start)
    assert len(sent) == 20
    np.testing.assert_allclose(sent[:, 0], 0.5, atol=1e-12)  # old: 0.25, then 0.45 for good


def test_a_blocked_arm_does_not_wind_the_pose_target_up():
    bare = Bare(output="pose")
    for _ in range(50):  # asks for 0.25 m/s along +x for 1 s; the arm stays at x = 0.5
        bare.pose(x=0.5)
        bare.chunk([1.0, 0, 0, 0, 0, 0, 0.5])
        bare.tick()
    sent = pose_targets(bare)
    assert sent[:, 0].max() <= 0.5 + DEFAULT["max_pose_lead_m"] + 1e-12
    assert sent[-1, 0] == pytest.approx(0.5 + DEFAULT["max_pose_lead_m"])
    assert bare.node.core.counters["pose_lead"] > 0


# ------------------------------------------------------------------ limits that would freeze
@pytest.mark.parametrize("name", ["max_linear_accel", "max_angular_accel", "max_joint_accel"])
def test_an_acceleration_limit_of_zero_is_refused_with_the_reason(name):
    problem = xp.check_values({name: 0.0}, DEFAULT)
    assert problem and "never be slowed" in problem, problem
    assert xp.BY_NAME[name].lo > 0.0  # the descriptor's range refuses it over ROS too
    with pytest.raises(ValueError, match="never be slowed"):
        if name == "max_joint_accel":
            JointLimits((-1.0,), (1.0,), max_joint_accel=0.0)
        else:
            Limits(**{name: 0.0})


def test_a_speed_limit_of_zero_stops_a_moving_arm():
    """What the refusal above points to: max_linear_speed 0 brings the twist to rest at
    the stop deceleration."""
    bare = Bare(output="twist")
    for _ in range(30):
        bare.pose()
        bare.chunk([1.0, 0, 0, 0, 0, 0, 0.5])
        bare.tick()
    assert bare.last_twist()[0] == pytest.approx(0.25)
    bare.set(max_linear_speed=0.0)
    speeds = []
    for _ in range(10):
        bare.pose()
        bare.chunk([1.0, 0, 0, 0, 0, 0, 0.5])
        bare.tick()
        speeds.append(bare.last_twist()[0])
    assert speeds[-1] == 0.0
    assert np.all(np.diff([0.25] + speeds) >= -DEFAULT["max_linear_stop_decel"] * 0.02 - 1e-9)


# ------------------------------------------------------------------ a late tick
def test_a_late_tick_does_not_carry_a_twist_past_the_box():
    """Towards the +x wall at 0.25 m/s, ticks every 20 ms; once the arm is within 1 cm of
    the wall, one tick comes 100 ms late (the tick clock's longest period). No controller
    lag configured: its extrapolation would hide part of the lateness."""
    wall = DEFAULT["workspace_max"][0]
    bare = Bare(output="twist", controller_lag_s=0.0)
    arm = ToyArm(position=np.array([wall - 0.3, 0.0, 0.2]))
    late_done, xs = False, []
    while bare.t < 1000.0 + 3.0:
        near = wall - arm.position[0] < 0.01
        gap = 0.1 if near and not late_done else 0.02
        late_done = late_done or near
        t0 = bare.t
        for i in range(int(round(gap / 0.001))):
            arm.step(t0 + i * 0.001, 0.001)
            xs.append(arm.position[0])
        bare.t = t0 + gap
        bare.pose(position=arm.position)
        bare.chunk([1.0, 0, 0, 0, 0, 0, 0.5])
        seen = len(bare.out.sent)
        bare.node._on_tick()
        for msg in bare.out.sent[seen:]:
            arm.command(bare.t, msg)
    assert late_done
    overshoot = max(0.0, max(xs) - wall)
    print(f"late tick near the wall: overshoot {overshoot * 1e3:.2f} mm, at rest "
          f"{(wall - xs[-1]) * 1e3:.1f} mm inside")
    assert overshoot <= 1e-4  # old: 6.4 mm
    assert xs[-1] > wall - 0.05  # it still goes up to the wall


# ------------------------------------------------------------------ joint names
def test_joint_states_without_the_executors_joints_are_named_in_the_hold():
    bare = Bare(**ALOHA)
    msg = JointState(name=[f"arm_{i}" for i in range(14)], position=[0.0] * 14)
    msg.header.stamp = stamp(bare.t)
    bare.node._on_joints(msg)
    bare.chunk(np.zeros(14))
    bare.tick()
    core = bare.node.core
    assert core.hold_reason == "stale_state"
    assert core.counters["joint_states_partial"] == 1
    assert "without joints ['left_waist', 'left_shoulder', 'left_elbow'] ..." in \
        core.hold_detail, core.hold_detail
    assert "arm_0" in core.hold_detail
    assert not bare.out.sent or all(
        np.allclose(m.points[-1].positions, 0.0) for m in bare.out.sent)  # no motion
