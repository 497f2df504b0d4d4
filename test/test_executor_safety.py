"""The executor's safety guarantees on its own logic, driving a toy arm (issue #18).

Every test runs an ExecutorNode outside any ROS graph (``executor_helpers.Bare``, no
rclpy.init()) and, where motion matters, the kinematic ``ToyArm`` that executes what it
publishes: holds that command no gripper and hold a latched target, joint limits, a hard
workspace box under stale poses, controller lag and a slow /clock, holds that decelerate,
a lowered speed limit, time jumps, the e-stop heartbeat, out-of-range actions per
dimension.
"""
import math

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticStatus
from rclpy.parameter import Parameter
from std_msgs.msg import Bool, String

from executor_helpers import Bare, ToyArm, ToyLoop
from specprune_ros.node import executor_parameters as xp

MOVE_X = [1.0, 0, 0, 0, 0, 0, 0.5]  # asks for 1 m/s along +x (the limit is 0.25)
DEFAULT = {s.name: s.default for s in xp.PARAMS}


def twists(bare: Bare, since: int = 0) -> np.ndarray:
    return np.array([[m.twist.linear.x, m.twist.linear.y, m.twist.linear.z]
                     for m in bare.out.sent[since:]])


def targets(bare: Bare, since: int = 0) -> np.ndarray:
    return np.array([[m.pose.position.x, m.pose.position.y, m.pose.position.z]
                     for m in bare.out.sent[since:]])


def joint_commands(bare: Bare, since: int = 0) -> np.ndarray:
    return np.array([m.points[-1].positions for m in bare.out.sent[since:]])


def moving(bare: Bare, row=MOVE_X, ticks: int = 20) -> None:
    """``ticks`` ticks of a chunk of ``row`` (fresh pose each tick)."""
    bare.chunk(row, points=40)
    for _ in range(ticks):
        bare.pose()
        bare.tick()


# ------------------------------------------------------------------ 1. the gripper in holds
def test_a_fresh_executor_waiting_for_the_estop_signal_commands_no_gripper():
    """A restart while an object is held must not open the hand (-1.0 each hold tick)."""
    bare = Bare(require_estop_signal=True)
    for _ in range(10):
        bare.pose()
        bare.tick()
    assert bare.node.core.hold_reason == "estop" and bare.out.sent  # holds go out
    assert bare.gripper_values() == []


def _hold_by(bare: Bare, hold: str) -> int:
    """Make the executor hold for ``hold``; the gripper messages sent until it held."""
    if hold == "estop":
        bare.node._on_estop(Bool(data=True))
    elif hold == "dry_run":
        sent = len(bare.gripper.sent)
        bare.set(dry_run=True)
        return sent
    elif hold == "shutdown":
        sent = len(bare.gripper.sent)
        bare.node.stop()
        return sent
    for _ in range(40):  # until it holds: the watchdog (0.3 s), the 8-point chunk's end...
        if hold != "stale_state":
            bare.pose()
        sent = len(bare.gripper.sent)
        bare.tick()
        if bare.node.core.hold_reason == hold:
            return sent
    raise AssertionError(f"no {hold} hold")


@pytest.mark.parametrize("hold", ["estop", "watchdog", "stale_state", "no_chunk", "dry_run",
                                  "shutdown"])
@pytest.mark.parametrize("output", ["twist", "pose"])
def test_no_gripper_command_in_any_hold(hold, output):
    bare = Bare(output=output, chunk_timeout_s=0.3 if hold == "watchdog" else 2.0)
    bare.pose()
    bare.chunk([0.1, 0, 0, 0, 0, 0, 0.7], points=8 if hold == "no_chunk" else 40)
    bare.tick()
    assert bare.gripper_values() == [0.7]
    before = _hold_by(bare, hold)
    for _ in range(10):
        if hold != "stale_state":
            bare.pose()
        bare.tick()
    assert len(bare.gripper.sent) == before, "a hold commanded the gripper"
    assert set(bare.gripper_values()) == {0.7}


# ------------------------------------------------------------------ 2. latched hold targets
def _sagging_pose_rig(**overrides) -> ToyLoop:
    bare = Bare(output="pose", **overrides)
    arm = ToyArm(position=np.array([0.5, 0.0, 0.2]), offset=np.array([0.0, 0.0, -0.002]))
    return ToyLoop(bare, arm)


@pytest.mark.parametrize("hold", ["estop", "watchdog"])
def test_a_pose_hold_is_latched_and_does_not_creep_under_a_sagging_arm(hold):
    """The toy arm settles 2 mm below its target: re-reading the hold target from the
    measured pose every tick walked it down through the box floor."""
    loop = _sagging_pose_rig(chunk_timeout_s=0.3)
    loop.run(0.6, row=[0, 0, 0.1, 0, 0, 0, 0.5])  # up at 0.1 m/s
    if hold == "estop":
        loop.bare.node._on_estop(Bool(data=True))
    start = len(loop.bare.out.sent)
    loop.run(3.0)
    assert loop.bare.node.core.hold_reason == hold
    held = targets(loop.bare, start)[40:]  # holding and stopped by then
    np.testing.assert_allclose(held, np.repeat(held[:1], len(held), axis=0), atol=1e-12)
    z = loop.positions()[:, 2]
    assert z[-1] > held[0, 2] - 0.003, (z[-1], held[0])  # 2 mm sag, no creep


def test_a_joint_hold_is_latched_and_does_not_creep():
    bare = Bare(action_layout="aloha", output="joint_trajectory", max_joint_accel=100.0,
                max_joint_stop_decel=100.0)
    arm = ToyArm(position=np.zeros(3), joint_offset=-0.002)
    loop = ToyLoop(bare, arm, cartesian=False)
    loop.run(0.5, row=np.full(14, 0.3))
    bare.node._on_estop(Bool(data=True))
    start = len(bare.out.sent)
    loop.run(3.0)
    held = joint_commands(bare, start)[40:]
    np.testing.assert_allclose(held, np.repeat(held[:1], len(held), axis=0), atol=1e-12)
    assert arm.q.min() > held[0].min() - 0.003


UP = [0.0, 0.0, 1.0, 0, 0, 0, 0.5]  # asks for 1 m/s along +z
DOWN = [0.0, 0.0, -1.0, 0, 0, 0, 0.5]


def test_a_hold_outside_the_box_stays_where_the_arm_is_and_only_moves_back_in():
    """An arm above the box (moved by hand, a box changed live) is held where it is, as a
    unit quaternion: pulling the target 5 cm into the box in one tick would be a step.
    Upward commands do not move it; downward ones bring it in at the speed limit."""
    bare = Bare(output="pose")
    top = bare.node.core.values["workspace_max"][2]
    above = [0.5, 0.0, top + 0.05]
    bare.pose(position=above, quaternion=[0.0, 0.0, 0.0, 40.0])
    bare.tick()  # no chunk: a hold at the measured pose
    msg = bare.out.sent[-1].pose
    assert msg.position.z == pytest.approx(top + 0.05)
    o = msg.orientation
    assert math.sqrt(o.x ** 2 + o.y ** 2 + o.z ** 2 + o.w ** 2) == pytest.approx(1.0)
    start = len(bare.out.sent)
    bare.chunk(UP, points=40)
    for _ in range(10):
        bare.pose(position=above)
        bare.tick()
    assert targets(bare, start)[:, 2].max() <= top + 0.05 + 1e-12  # never further out
    start = len(bare.out.sent)
    bare.chunk(DOWN, points=40)
    for _ in range(10):
        bare.pose(position=above)
        bare.tick()
    z = np.concatenate([[top + 0.05], targets(bare, start)[:, 2]])
    assert z[-1] < top + 0.05 - 0.005  # it comes back
    assert np.abs(np.diff(z)).max() <= 0.25 * 0.02 + 1e-9  # at the speed limit


@pytest.mark.parametrize("hold", ["estop", "dry_run", "deactivate"])
def test_a_box_lowered_under_a_moving_pose_target_never_steps_it(hold):
    """The box closes in below a target moving up (0.5 -> ~0.55 m); then a hold (e-stop,
    dry_run switched on, deactivation's last command): the target decelerates where it
    is, it is not pulled 10-15 cm down to the new top in one tick."""
    bare = Bare(output="pose")
    bare.chunk(UP, points=40)
    for _ in range(20):
        bare.pose(position=[0.5, 0.0, 0.5])
        bare.tick()
    before = targets(bare)[-1, 2]
    assert before > 0.53
    bare.set(workspace_max=[0.85, 0.45, 0.4])
    bare.pose(position=[0.5, 0.0, 0.5])
    bare.tick()  # still moving: only motion back towards the box
    if hold == "estop":
        bare.node._on_estop(Bool(data=True))
        for _ in range(10):
            bare.pose(position=[0.5, 0.0, 0.5])
            bare.tick()
    elif hold == "dry_run":
        bare.set(dry_run=True)
    else:
        bare.node._publish(bare.node.core.final_hold("deactivated", bare.t))
    z = targets(bare)[:, 2]
    assert np.abs(np.diff(z)).max() <= 0.25 * 0.02 + 1e-9, np.diff(z)
    assert z[-1] > 0.5


def test_a_stale_state_hold_keeps_the_last_fresh_target():
    """A pose that arrives already stale (1 s old, elsewhere) is no target to hold at."""
    bare = Bare(output="pose")
    bare.pose(position=[0.5, 0.0, 0.2])
    bare.tick()
    bare.pose(stamp_s=bare.t - 1.0, position=[0.6, 0.1, 0.3])
    bare.tick()
    assert bare.node.core.hold_reason == "stale_state"
    np.testing.assert_allclose(targets(bare)[-1], [0.5, 0.0, 0.2])


# ------------------------------------------------------------------ 3. joint limits
ALOHA = dict(action_layout="aloha", output="joint_trajectory")


def test_a_joint_target_beyond_its_limit_is_never_commanded():
    """A 50 rad target was followed to 3 rad in 3 s and kept climbing."""
    upper = [1.0] * 14
    bare = Bare(**ALOHA, joint_position_max=upper, max_joint_speed=1.0,
                max_joint_accel=4.0, max_joint_stop_decel=8.0)
    arm = ToyArm(position=np.zeros(3), tau_s=0.02)
    loop = ToyLoop(bare, arm, cartesian=False)
    loop.run(4.0, row=np.full(14, 50.0))
    sent = joint_commands(bare)
    assert sent.max() <= 1.0 + 1e-12, sent.max()
    assert sent[-1].min() > 0.98  # it does get there
    speed = np.abs(np.diff(sent[:, 0])) / bare.node.core.dt
    assert speed.max() <= 1.0 + 1e-9
    accel = np.abs(np.diff(speed)) / bare.node.core.dt
    assert accel.max() <= 8.0 + 1e-6  # accelerates at 4, brakes before the limit at <= 8
    assert bare.node.core.counters["joint_position"] > 0


def test_a_joint_beyond_a_limit_raised_live_is_never_stepped_back():
    """joint_position_min raised to 0.5 with the joints at 0: the hold and the moves stay
    where the joints are, never a 0.5 rad step (25 rad/s in one tick); a command further
    out is not followed, one back in is, at the joint speed limit."""
    bare = Bare(**ALOHA, max_joint_accel=100.0, max_joint_stop_decel=100.0)
    bare.joints(np.zeros(14))
    bare.tick()  # a hold at the measured joints
    assert bare.node._validate_parameters(
        [Parameter("joint_position_min", value=[0.5] * 14)]).successful
    bare.set(joint_position_min=[0.5] * 14)
    for row in (np.full(14, -1.0), np.full(14, 1.0)):
        bare.chunk(row, points=40)
        for _ in range(10):
            bare.joints(np.zeros(14))
            bare.tick()
    sent = joint_commands(bare)
    assert np.abs(np.diff(sent, axis=0)).max() <= 1.0 * bare.node.core.dt + 1e-9
    assert sent.min() >= -1e-12  # the command further out was not followed
    assert sent[-1].min() > 0.05  # the one back in was


def _urdf(limit) -> str:
    joints = "".join(f'<joint name="{n}" type="revolute"><limit {limit(i)} effort="10"/>'
                     f'</joint>' for i, n in enumerate(DEFAULT["joint_names"]))
    return f'<?xml version="1.0"?><robot name="toy"><link name="base"/>{joints}</robot>'


@pytest.mark.parametrize("limit, reason", [
    ('lower="-1" upper="1" velocity="-0.5"', "is negative"),
    ('lower="1" upper="-1" velocity="0.5"', "is above"),
    ('lower="4" upper="5" velocity="0.5"', "leaves nothing of the parameters'"),
])
def test_a_robot_description_with_unusable_limits_is_refused_whole(limit, reason):
    """A negative velocity pinned a joint's speed at -0.5 rad/s whatever the policy asked;
    lower above upper, or a range outside the parameters', pinned it beyond a limit."""
    bare = Bare(**ALOHA)
    good = _urdf(lambda i: 'lower="-0.5" upper="0.5" velocity="0.4"')
    bare.node._on_robot_description(String(data=good))
    bad = _urdf(lambda i: limit if i == 3 else 'lower="-1" upper="1" velocity="1"')
    bare.node._on_robot_description(String(data=bad))
    values = {kv.key: kv.value for kv in bare.node.diagnostic_status().values}
    source = values["joint_limits"]
    assert source.startswith("parameters + an earlier robot_description (robot_description "
                             "refused: joint 'left_forearm_roll'"), source
    assert reason in source
    assert bare.node.diagnostic_status().level == DiagnosticStatus.WARN
    assert bare.node.core.joint_motion.bounds()[1][0] == 0.5  # the earlier URDF still holds


def test_a_live_joint_limit_that_leaves_the_urdf_no_range_is_rejected():
    bare = Bare(**ALOHA)
    urdf = _urdf(lambda i: 'lower="-0.5" upper="0.5" velocity="0.4"')
    bare.node._on_robot_description(String(data=urdf))
    result = bare.node._validate_parameters(
        [Parameter("joint_position_min", value=[0.6] * 14)])
    assert not result.successful
    assert "joint 'left_waist': the URDF's range [-0.5, 0.5] leaves nothing" in result.reason
    assert bare.node._validate_parameters(
        [Parameter("joint_position_min", value=[0.4] * 14)]).successful


def test_joint_limits_come_from_robot_description_when_it_is_published():
    names = list(DEFAULT["joint_names"])
    joints = "".join(
        f'<joint name="{n}" type="revolute"><limit lower="-0.5" upper="{0.2 + 0.01 * i}" '
        f'velocity="0.4" effort="10"/></joint>' for i, n in enumerate(names))
    urdf = f'<?xml version="1.0"?><robot name="toy"><link name="base"/>{joints}</robot>'
    bare = Bare(**ALOHA, max_joint_accel=100.0, max_joint_stop_decel=100.0)
    bare.node._on_robot_description(String(data=urdf))
    loop = ToyLoop(bare, ToyArm(position=np.zeros(3), tau_s=0.02), cartesian=False)
    loop.run(3.0, row=np.full(14, 5.0))
    sent = joint_commands(bare)
    np.testing.assert_array_less(sent.max(axis=0), 0.2 + 0.01 * np.arange(14) + 1e-12)
    assert (np.abs(np.diff(sent, axis=0)) / bare.node.core.dt).max() <= 0.4 + 1e-9


def test_a_bad_robot_description_is_reported_and_keeps_the_parameter_limits():
    bare = Bare(**ALOHA)
    bare.node._on_robot_description(String(data="<robot><joint"))
    values = {kv.key: kv.value for kv in bare.node.diagnostic_status().values}
    assert values["joint_limits"].startswith("parameters (robot_description refused:")
    assert bare.node.diagnostic_status().level == DiagnosticStatus.WARN


def test_joint_trajectory_starts_when_the_controller_reads_it():
    """joint_trajectory_controller takes a zero stamp as "start now": the whole
    time_from_start is the first segment (a stamp of the publishing time is shortened by
    the transport delay, or refused when it ends in the past)."""
    bare = Bare(**ALOHA)
    bare.joints(np.zeros(14))
    bare.chunk(np.full(14, 0.1))
    bare.tick()
    msg = bare.out.sent[-1]
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (0, 0)
    assert msg.points[0].time_from_start.nanosec == int(round(bare.node.core.dt * 1e9))


# ------------------------------------------------------------------ 4. a hard workspace box
BOX_CASES = {  # tick period, pose age, controller delay, first-order velocity lag
    "100ms_old_pose": (0.02, 0.10, 0.0, 0.0),
    "240ms_old_pose": (0.02, 0.24, 0.0, 0.0),
    "50ms_controller_lag": (0.02, 0.0, 0.05, 0.0),
    "50ms_first_order_lag": (0.02, 0.0, 0.0, 0.05),
    "20Hz_clock": (0.05, 0.0, 0.0, 0.0),
    "20Hz_clock_one_tick_old_pose": (0.05, 0.05, 0.0, 0.0),
}


@pytest.mark.parametrize("speed", [0.25, 1.0])
@pytest.mark.parametrize("case", list(BOX_CASES))
def test_the_workspace_box_is_hard(case, speed):
    """Driven into the +x wall at the speed limit (the robot config's 0.25 m/s, and 1 m/s):
    at most 5 mm past it."""
    tick, age, lag, tau = BOX_CASES[case]
    wall = DEFAULT["workspace_max"][0]
    bare = Bare(output="twist", max_linear_speed=speed)
    arm = ToyArm(position=np.array([wall - 0.5, 0.0, 0.2]), lag_s=lag, velocity_tau_s=tau)
    loop = ToyLoop(bare, arm, tick_s=tick, state_age_s=age)
    loop.run(2.5, row=MOVE_X)
    x = loop.positions()[:, 0]
    overshoot = max(0.0, x.max() - wall)
    print(f"{case} at {speed:g} m/s: overshoot {overshoot * 1e3:.1f} mm, at rest "
          f"{(wall - x[-1]) * 1e3:.1f} mm inside")
    assert overshoot <= 0.005
    assert x[-1] > wall - 0.05  # it does go up to the wall


# ------------------------------------------------------------------ 5. holds decelerate
@pytest.mark.parametrize("hold", ["no_chunk", "watchdog", "stale_state", "estop"])
def test_a_hold_decelerates_within_the_stop_deceleration(hold):
    bare = Bare(output="twist", chunk_timeout_s=0.3 if hold == "watchdog" else 2.0)
    decel = bare.node.core.values.get("max_linear_stop_decel", 5.0)  # (its default)
    bare.pose()
    bare.chunk(MOVE_X, points=8 if hold == "no_chunk" else 40)
    for _ in range(12):
        bare.pose()
        bare.tick()
    start = len(bare.out.sent) - 1
    assert bare.last_twist()[0] == pytest.approx(0.25)
    if hold == "estop":
        bare.node._on_estop(Bool(data=True))
    for _ in range(25):
        if hold != "stale_state":
            bare.pose()
        bare.tick()
    assert bare.node.core.hold_reason == hold
    speeds = twists(bare, start)[:, 0]
    steps = -np.diff(speeds)
    assert steps.max() <= decel * bare.node.core.dt + 1e-9, speeds[:8]
    assert speeds[-1] == 0.0


def test_the_stop_deceleration_is_a_live_parameter_never_gentler_than_the_acceleration():
    spec = xp.BY_NAME["max_linear_stop_decel"]
    assert not spec.read_only and spec.lo > 0.0
    assert xp.check_values({"max_linear_stop_decel": 0.0}, DEFAULT)  # a hold has to stop
    bare = Bare(output="twist", max_linear_accel=20.0, max_linear_stop_decel=1.0)
    moving(bare)
    bare.node._on_estop(Bool(data=True))
    bare.tick()  # from 0.25 m/s: stops at 20, not at 1 m/s^2
    assert bare.last_twist()[0] == 0.0


def test_the_last_hold_at_shutdown_is_zero_at_once():
    bare = Bare(output="twist")
    moving(bare)
    bare.node.stop()
    np.testing.assert_array_equal(bare.last_twist(), np.zeros(3))


# ------------------------------------------------------------------ 6. a lowered speed limit
def test_a_lowered_speed_limit_is_reached_at_the_stop_deceleration():
    """0.25 m/s, then max_linear_speed 0.05 live: 0.21, 0.17, 0.13, ... was the normal
    acceleration limit; the speed limit is a safety limit, reached at the stop one."""
    bare = Bare(output="twist")
    moving(bare)
    assert bare.last_twist()[0] == pytest.approx(0.25)
    bare.set(max_linear_speed=0.05)
    start = len(bare.out.sent)
    moving(bare, ticks=5)
    speeds = twists(bare, start)[:, 0]
    step = bare.node.core.values.get("max_linear_stop_decel", 5.0) * bare.node.core.dt
    np.testing.assert_allclose(speeds, [max(0.05, 0.25 - step * (i + 1)) for i in range(5)])
    fast = Bare(output="twist", max_linear_stop_decel=1000.0)
    moving(fast)
    fast.set(max_linear_speed=0.05)
    moving(fast, ticks=1)
    assert fast.last_twist()[0] == pytest.approx(0.05)  # a stop deceleration that allows it


# ------------------------------------------------------------------ 7. time
def test_a_chunk_stamped_in_the_future_is_refused_as_a_state_would_be():
    bare = Bare()
    limit = bare.node.core.values.get("max_future_stamp_s", 0.1)
    bare.chunk([0.1] * 7, stamp_s=bare.t + limit + 0.2)
    assert bare.node.core.counters["chunks_refused"] == 1
    assert "future" in bare.node.core.last_refusal
    bare.chunk([0.1] * 7, stamp_s=bare.t + 0.5 * limit)
    assert bare.node.core.counters["chunks_refused"] == 1


def test_a_backward_clock_step_is_a_reset():
    """0.3 s back: the executed points must not replay, the watchdog must not wait 0.3 s
    longer; the executor holds, drops its chunks and state, and ramps in again."""
    bare = Bare(output="twist", ramp_in_s=0.5)
    moving(bare, ticks=20)
    assert bare.last_twist()[0] > 0.15
    bare.t -= 0.3
    start = len(bare.out.sent)
    bare.pose()  # a pose on the new timeline
    bare.tick()
    assert bare.node.core.hold_reason == "clock_jump"
    assert bare.node.core.counters["clock_jumps"] == 1
    assert bare.node.core.combiner.sample(bare.t).action is None  # chunks dropped
    for _ in range(10):
        bare.pose()
        bare.tick()
    assert twists(bare, start)[-1, 0] == 0.0  # no chunk since: stopped
    bare.pose()
    moving(bare, ticks=1)  # a new chunk ramps in from the jump
    assert 0.0 < bare.last_twist()[0] <= 0.25 * 0.24 / 0.5 + 1e-9


@pytest.mark.parametrize("output", ["pose", "joint_trajectory"])
def test_a_simulator_reset_does_not_drag_the_arm_back_to_the_old_target(output):
    """The clock goes back 5 s and the reset arm reads elsewhere: the hold latches at the
    new state, not at the target of the old timeline (0.36 m / 0.8 rad away)."""
    joint = output == "joint_trajectory"
    bare = Bare(**ALOHA) if joint else Bare(output="pose")
    old, new = [0.5, 0.0, 0.4], [0.3, 0.2, 0.1]
    for _ in range(5):
        if joint:
            bare.joints(np.full(14, 0.4))
        else:
            bare.pose(position=old)
        bare.tick()
    bare.t -= 5.0
    for _ in range(3):
        if joint:
            bare.joints(np.full(14, -0.4))
        else:
            bare.pose(position=new)
        bare.tick()
    assert bare.node.core.counters["clock_jumps"] == 1
    if joint:
        np.testing.assert_allclose(joint_commands(bare)[-1], -0.4, atol=1e-9)
    else:
        np.testing.assert_allclose(targets(bare)[-1], new, atol=1e-9)


def test_a_clock_reset_to_a_small_value_does_not_freeze_the_ramp():
    bare = Bare(output="twist", ramp_in_s=1.0)
    moving(bare, ticks=10)
    bare.t = 5.0  # /clock restarted (a simulator reset)
    for _ in range(3):
        bare.pose()
        bare.tick()
    for _ in range(6):  # 1.2 s after the reset: ramped in
        moving(bare, ticks=10)
    assert bare.last_twist()[0] == pytest.approx(0.25)


def test_state_from_before_a_backward_step_is_dropped():
    bare = Bare(output="twist")
    moving(bare, ticks=10)
    bare.t -= 0.3
    bare.node.core.time_jumped(bare.t, "test")  # what the rclpy jump callback calls
    assert bare.node.core.measured.latest is None and bare.node.core.motion.history.empty


# ------------------------------------------------------------------ 8. e-stop heartbeat
def test_estop_heartbeat_holds_when_no_false_arrived_within_the_timeout():
    bare = Bare(output="twist", estop_heartbeat_timeout_s=0.2)
    bare.node._on_estop(Bool(data=False))
    moving(bare, ticks=5)  # 0.1 s: alive
    assert bare.node.core.hold_reason is None
    moving(bare, ticks=10)  # 0.3 s since the last false: a dead e-stop publisher
    assert bare.node.core.hold_reason == "estop"
    assert "heartbeat" in bare.node.core.hold_detail
    for _ in range(10):
        bare.node._on_estop(Bool(data=False))
        moving(bare, ticks=1)
    assert bare.node.core.hold_reason is None and bare.last_twist()[0] > 0.0


def test_estop_heartbeat_is_off_by_default():
    assert DEFAULT["estop_heartbeat_timeout_s"] == 0.0
    bare = Bare(output="twist")
    bare.node._on_estop(Bool(data=False))
    moving(bare, ticks=20)
    assert bare.node.core.hold_reason is None


# ------------------------------------------------------------------ out-of-range actions
def test_out_of_range_actions_are_reported_per_dimension_with_the_largest_excess():
    bare = Bare(output="twist")
    moving(bare, row=[1.01, 0, 0, 0, 0, 0, 0.5], ticks=2)
    moving(bare, row=[0, 0, 10.0, 0, 0, 0, -3.0], ticks=1)
    values = {kv.key: kv.value for kv in bare.node.diagnostic_status().values}
    assert values["count_action_out_of_range"] == "3"
    assert values["out_of_range_x"] == "2" and values["out_of_range_z"] == "1"
    assert float(values["max_excess_x"]) == pytest.approx(0.01)
    assert float(values["max_excess_z"]) == pytest.approx(9.0)
    assert float(values["max_excess_gripper"]) == pytest.approx(2.0)
    assert "out_of_range_y" not in values


# ------------------------------------------------------------------ the pieces, known answers
def test_command_history_integrates_the_velocity_in_force():
    from specprune_ros.node.safety_envelope import CommandHistory
    history = CommandHistory()
    history.add(10.0, np.array([0.1, 0.0, 0.0]))
    history.add(11.0, np.array([0.2, 0.0, 0.0]))
    np.testing.assert_allclose(history.displacement(10.5, 11.5), [0.1 * 0.5 + 0.2 * 0.5, 0, 0])
    np.testing.assert_allclose(history.displacement(9.0, 10.0), np.zeros(3))  # before any


def test_stopping_speed_stops_within_the_distance():
    from specprune_ros.node.safety_envelope import stopping_speed
    v = float(stopping_speed(np.array([0.02]), 2.0, 0.05)[0])
    assert v * 0.05 + v * v / 4.0 == pytest.approx(0.02)
    assert float(stopping_speed(np.array([-0.01]), 2.0, 0.05)[0]) == 0.0  # past it: none
    assert float(stopping_speed(np.array([0.02]), 0.0, 0.05)[0]) == pytest.approx(0.4)


def test_tick_clock_measures_the_period_and_sees_the_clock_go_back():
    from specprune_ros.node.tick_clock import TickClock
    clock = TickClock(0.02)
    assert clock.tick(100.0) == (0.02, False)
    assert clock.tick(100.05) == (pytest.approx(0.05), False)  # a 20 Hz /clock
    assert clock.tick(100.06) == (0.02, False)  # never below the nominal period
    assert clock.tick(101.0) == (0.1, False)  # a stall counts as at most 0.1 s
    assert clock.tick(100.7) == (0.02, True)


def test_urdf_limits_of_the_robots_own_joints():
    from specprune_ros.node.joint_limits import parse_urdf_limits
    urdf = """<robot name="r"><link name="a"/>
      <joint name="j1" type="revolute"><limit lower="-1" upper="2" velocity="3" effort="1"/>
      </joint>
      <joint name="j2" type="continuous"><limit velocity="4" effort="1"/></joint>
      <joint name="j3" type="fixed"/>
      <transmission name="t"><joint name="j1"><hardwareInterface>x</hardwareInterface>
      </joint></transmission></robot>"""
    limits = parse_urdf_limits(urdf)
    assert set(limits) == {"j1", "j2"}
    assert (limits["j1"].lower, limits["j1"].upper, limits["j1"].velocity) == (-1, 2, 3)
    assert (limits["j2"].lower, limits["j2"].upper, limits["j2"].velocity) == (None, None, 4)
    for bad, reason in (("<robot><joint", "not XML"), ("<model/>", "not <robot>"),
                        ('<robot><joint name="j" type="revolute"><limit lower="x"/>'
                         '</joint></robot>', "not a number")):
        with pytest.raises(ValueError, match=reason):
            parse_urdf_limits(bad)


def test_joint_limits_must_fit_the_joint_names():
    problem = xp.check_values({"joint_position_min": [0.0, 0.0]}, DEFAULT)
    assert problem and "one finite value per joint" in problem
    inverted = xp.check_values({"joint_position_max": [-4.0] * 14}, DEFAULT)
    assert inverted and "below joint_position_max" in inverted


# ------------------------------------------------------------------ 8. the orientation cone
def _deviation(q) -> float:
    from specprune_ros.node.quaternions import rotation_between
    return float(np.linalg.norm(rotation_between(np.array([1.0, 0.0, 0.0, 0.0]), q)))


def _turning(bare: Bare, row, q, ticks: int, follow_target: bool) -> list:
    """``ticks`` ticks of a chunk of ``row`` on an arm whose orientation follows the
    twist (or sits at the pose target); the deviation from the reference after each."""
    from specprune_ros.node.quaternions import quat_multiply, rotvec_to_quat
    bare.chunk(row, points=60)
    seen = []
    for _ in range(ticks):
        bare.pose(position=[0.5, 0.0, 0.3], quaternion=q)
        bare.tick()
        msg = bare.out.sent[-1]
        if follow_target:
            o = msg.pose.orientation
            q = np.array([o.x, o.y, o.z, o.w])
        else:
            a = msg.twist.angular
            q = quat_multiply(rotvec_to_quat(np.array([a.x, a.y, a.z]) * 0.02), q)
        seen.append(_deviation(q))
    return seen, q


@pytest.mark.parametrize("output", ["twist", "pose"])
def test_the_orientation_cone_holds_and_lets_the_tool_turn_back(output):
    """Asked to roll at full speed, the tool stops at max_orientation_deviation_rad from the
    reference (braked, not clipped at the wall); asked to roll back, it does."""
    bare = Bare(output=output, max_orientation_deviation_rad=0.3, max_pose_lead_rad=0.5)
    roll = [0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.5]
    seen, q = _turning(bare, roll, np.array([1.0, 0.0, 0.0, 0.0]), 60, output == "pose")
    assert max(seen) <= 0.3 + 1e-6, max(seen)
    assert seen[-1] > 0.25  # it does get near the edge
    assert bare.node.core.counters["orientation"] > 0
    back, _ = _turning(bare, [0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.5], q, 10, output == "pose")
    assert back[-1] < seen[-1] - 0.05


def test_a_tool_outside_the_cone_is_not_turned_in_at_once():
    """A tool 0.5 rad off the reference with a 0.3 rad cone (the cone narrowed live): the
    hold stays at the measured orientation, a roll further out is not followed."""
    from specprune_ros.node.quaternions import quat_multiply, rotvec_to_quat
    bare = Bare(output="pose", max_orientation_deviation_rad=0.3)
    off = quat_multiply(rotvec_to_quat(np.array([0.5, 0.0, 0.0])), np.array([1.0, 0, 0, 0]))
    bare.pose(position=[0.5, 0.0, 0.3], quaternion=off)
    bare.tick()
    o = bare.out.sent[-1].pose.orientation
    assert _deviation(np.array([o.x, o.y, o.z, o.w])) == pytest.approx(0.5)
    out = [0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.5]
    seen, _ = _turning(bare, out, off, 10, True)
    assert max(seen) <= 0.5 + 1e-9


def test_orientation_cone_parameters_are_checked():
    bad = xp.check_values({"orientation_reference": [0.0, 0.0, 0.0, 0.0]}, DEFAULT)
    assert bad and "quaternion x y z w of length ~1" in bad
    assert "max_orientation_deviation_rad" in xp.check_values(
        {"max_orientation_deviation_rad": 4.0}, DEFAULT)
    assert xp.check_values({"max_orientation_deviation_rad": 0.5}, DEFAULT) is None


def test_circling_the_reference_does_not_drift_out_of_the_cone():
    """Turning across the deviation (round the reference) adds to the angle at second
    order: capped along the deviation alone, 0.29 rad crept to 0.8 rad in 30 s."""
    from specprune_ros.node.quaternions import quat_multiply, rotvec_to_quat
    from specprune_ros.node.safety_envelope import Envelope, Limits
    limits = Limits(max_orientation_deviation_rad=0.3, max_angular_speed=1.0, ramp_in_s=0.0)
    env = Envelope(limits)
    q = quat_multiply(rotvec_to_quat(np.array([0.29, 0.0, 0.0])), np.array([1.0, 0, 0, 0]))
    seen = []
    for _ in range(1500):
        n = limits.deviation(q)
        across = np.cross(n / np.linalg.norm(n), [0.0, 0.0, 1.0])
        w = env.limit(np.zeros(3), across / np.linalg.norm(across), None, 0.02, 10.0,
                      orientation=q).angular
        q = quat_multiply(rotvec_to_quat(w * 0.02), q)
        seen.append(_deviation(q))
    assert max(seen) <= 0.3 + 1e-6, max(seen)
    assert np.linalg.norm(limits.deviation(q) / seen[-1] - [1.0, 0, 0]) > 0.5  # it circled


def test_a_joint_stop_goes_on_while_no_state_arrives():
    """Joints moving at 1 rad/s, the clock steps back, 0.2 s without a fresh state: the
    stop (0.1 s at 10 rad/s^2) is over, the hold latches at the new state and stays."""
    from specprune_ros.node.joint_limits import JointLimits, JointMotion
    motion = JointMotion(("a", "b"), JointLimits((-3.0, -3.0), (3.0, 3.0)))
    motion.target, motion.velocity = np.array([0.5, 0.5]), np.array([1.0, -1.0])
    motion.forget_target()
    for _ in range(10):
        assert motion.hold(None, 0.02) is None
    np.testing.assert_array_equal(motion.hold(np.zeros(2), 0.02), np.zeros(2))
