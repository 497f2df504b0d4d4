"""The executor's ROS-free logic with known numbers: chunk timing and skipping, the three
combination rules, the safety envelope, pose-target integration, the parameter table, and
the node's tick logic on an ExecutorNode instance that never joins a ROS graph (its
publishers recorded, its clock set by the test). No rclpy.init() anywhere here."""
import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from diagnostic_msgs.msg import DiagnosticStatus
from geometry_msgs.msg import PoseStamped
from rclpy.lifecycle import LifecycleState, TransitionCallbackReturn
from std_msgs.msg import Bool
from std_srvs.srv import Trigger

from executor_helpers import Bare
from specprune_ros.node import executor_parameters as xp
from specprune_ros.node.chunk_timing import ChunkCombiner, parse_chunk
from specprune_ros.node.quaternions import (quat_multiply, quat_to_rotvec, rotation_between,
                                            rotvec_to_quat)
from specprune_ros.node.safety_envelope import Envelope, Limits, PoseIntegrator, ramp_factor

NAMES = ("x", "y", "z", "roll", "pitch", "yaw", "gripper")
PERIOD = 0.05
T0 = 1000.0  # stamps and sample times below are relative to it
CONFIG = Path(__file__).resolve().parents[1] / "config" / "executor.yaml"


def chunk(stamp: float, values, seq: int = 0, points: int = 8):
    """A chunk whose point i holds values[i] (a number: every dimension equal)."""
    if np.isscalar(values):
        values = [values] * points
    rows = [[float(v)] * 7 for v in values]
    times = [(i + 1) * PERIOD for i in range(len(rows))]
    return parse_chunk(NAMES, rows, times, NAMES, T0 + stamp, received=T0 + stamp, seq=seq)


# ------------------------------------------------------------------------------ timing
def test_point_due_is_the_one_whose_period_holds_now_and_passed_points_are_skipped():
    combiner = ChunkCombiner("latest")
    combiner.add(chunk(10.0, list(range(8))))
    sample = combiner.sample(T0 + 10.0 + 2.4 * PERIOD)  # 120 ms late: points 0, 1 passed
    assert sample.newest_index == 2 and sample.action[0] == 2.0
    assert sample.skipped == 2
    assert combiner.sample(T0 + 10.0 + 3.1 * PERIOD).skipped == 0  # skipping counted once
    assert combiner.sample(T0 + 10.0 + 3.2 * PERIOD).action[0] == 3.0


def test_a_chunk_is_not_replayed_late_nor_run_before_its_stamp():
    combiner = ChunkCombiner("latest")
    combiner.add(chunk(10.0, list(range(8))))
    assert combiner.sample(T0 + 9.99).action is None
    assert combiner.sample(T0 + 10.0 + 8 * PERIOD).action is None  # every point's time passed


def test_points_are_reordered_from_a_permutation_of_the_names():
    names = list(reversed(NAMES))
    c = parse_chunk(names, [[7, 6, 5, 4, 3, 2, 1]], [PERIOD], NAMES, 1.0, 1.0)
    np.testing.assert_array_equal(c.actions[0], [1, 2, 3, 4, 5, 6, 7])


@pytest.mark.parametrize("names,rows,times,stamp,reason", [
    (NAMES[:-1], [[0] * 6], [0.05], 1.0, "permutation"),
    (NAMES[:-1] + ("x",), [[0] * 7], [0.05], 1.0, "permutation"),
    (NAMES, [], [], 1.0, "1 to"),
    (NAMES, [[0] * 7, [0] * 6], [0.05, 0.1], 1.0, r"points \[1\]"),
    (NAMES, [[0] * 6 + [math.nan]], [0.05], 1.0, "non-finite"),
    (NAMES, [[math.inf] + [0] * 6], [0.05], 1.0, "non-finite"),
    (NAMES, [[0] * 7, [0] * 7], [0.1, 0.1], 1.0, "strictly increasing"),
    (NAMES, [[0] * 7], [0.0], 1.0, "positive"),
    (NAMES, [[0] * 7], [math.nan], 1.0, "finite time"),
    (NAMES, [[0] * 7], [0.05], 0.0, "no header stamp"),
])
def test_malformed_chunks_are_refused_with_the_reason(names, rows, times, stamp, reason):
    with pytest.raises(ValueError, match=reason):
        parse_chunk(names, rows, times, NAMES, stamp, received=1.0)


# ------------------------------------------------------------------------------ rules
def test_latest_takes_the_newest_covering_chunk():
    combiner = ChunkCombiner("latest")
    combiner.add(chunk(0.0, 1.0, seq=1))
    combiner.add(chunk(0.1, 3.0, seq=2))
    assert combiner.sample(T0 + 0.05).action[0] == 1.0  # only the first covers 0.05
    assert combiner.sample(T0 + 0.12).action[0] == 3.0


def test_ensemble_weights_exp_minus_k_j_with_the_oldest_first():
    combiner = ChunkCombiner("ensemble", ensemble_k=math.log(2.0))  # weights 1, 1/2, 1/4
    combiner.add(chunk(0.0, 1.0, seq=1))
    combiner.add(chunk(0.1, 3.0, seq=2))
    combiner.add(chunk(0.2, 7.0, seq=3))
    assert combiner.sample(T0 + 0.05).action[0] == pytest.approx(1.0)
    assert combiner.sample(T0 + 0.12).action[0] == pytest.approx((1 + 3 * 0.5) / 1.5)
    assert combiner.sample(T0 + 0.22).action[0] == pytest.approx((1 + 1.5 + 7 * 0.25) / 1.75)
    assert combiner.sample(T0 + 0.42).action[0] == pytest.approx((3 + 7 * 0.5) / 1.5)  # 1st ended


def test_ensemble_with_k_0_is_the_plain_mean():
    combiner = ChunkCombiner("ensemble", ensemble_k=0.0)
    combiner.add(chunk(0.0, 1.0, seq=1))
    combiner.add(chunk(0.1, 4.0, seq=2))
    assert combiner.sample(T0 + 0.15).action[0] == pytest.approx(2.5)


def test_crossfade_blends_into_a_new_chunk_over_its_first_k_points():
    combiner = ChunkCombiner("crossfade", crossfade_points=2)
    combiner.add(chunk(0.0, 0.0, seq=1, points=20))
    assert combiner.sample(T0 + 0.05).action[0] == 0.0
    combiner.add(chunk(0.1, 1.0, seq=2))
    got = [combiner.sample(T0 + 0.1 + i * PERIOD + 0.001).action[0] for i in range(4)]
    np.testing.assert_allclose(got, [1 / 3, 2 / 3, 1.0, 1.0], atol=0.03)


def test_crossfade_from_the_last_action_when_the_old_chunk_has_ended():
    combiner = ChunkCombiner("crossfade", crossfade_points=1)
    combiner.add(chunk(0.0, 0.4, seq=1, points=2))
    assert combiner.sample(T0 + 0.07).action[0] == pytest.approx(0.4)
    combiner.add(chunk(0.1, 1.0, seq=2))  # the first one ends at 0.1
    assert combiner.sample(T0 + 0.1).action[0] == pytest.approx(0.4 + 0.5 * 0.6)
    assert combiner.sample(T0 + 0.15).action[0] == pytest.approx(1.0)


def test_crossfade_after_a_hold_does_not_blend_in_the_action_from_before_it():
    combiner = ChunkCombiner("crossfade", crossfade_points=2)
    combiner.add(chunk(0.0, 0.9, seq=1, points=2))
    assert combiner.sample(T0 + 0.07).action[0] == pytest.approx(0.9)
    assert combiner.sample(T0 + 0.2).action is None  # a gap: the executor holds
    combiner.forget_last()
    combiner.add(chunk(0.3, 0.1, seq=2))
    assert combiner.sample(T0 + 0.3).action[0] == pytest.approx(0.1)


def test_crossfade_0_and_a_first_chunk_are_plain_latest():
    combiner = ChunkCombiner("crossfade", crossfade_points=0)
    combiner.add(chunk(0.0, 0.0, seq=1))
    combiner.add(chunk(0.1, 1.0, seq=2))
    assert combiner.sample(T0 + 0.1).action[0] == 1.0
    fresh = ChunkCombiner("crossfade", crossfade_points=3)
    fresh.add(chunk(0.0, 0.7))
    assert fresh.sample(T0 + 0.0).action[0] == pytest.approx(0.7)


def test_unknown_rule_is_refused():
    with pytest.raises(ValueError, match="rule"):
        ChunkCombiner("median")


# ------------------------------------------------------------------------------ envelope
LIMITS = Limits(workspace_min=(0.0, -1.0, -1.0), workspace_max=(1.0, 1.0, 1.0),
                max_linear_speed=0.5, max_angular_speed=1.0, max_linear_accel=100.0,
                max_angular_accel=1000.0, max_linear_stop_decel=100.0,
                max_angular_stop_decel=1000.0, ramp_in_s=0.0)
INSIDE = np.array([0.5, 0.0, 0.0])
DT = 0.02


def test_speed_clamp_keeps_the_direction():
    out = Envelope(LIMITS).limit([3.0, 4.0, 0.0], [0.0, 0.0, 2.0], INSIDE, DT, 10.0)
    np.testing.assert_allclose(out.linear, [0.3, 0.4, 0.0])
    np.testing.assert_allclose(out.angular, [0.0, 0.0, 1.0])
    assert out.interventions == ["linear_speed", "angular_speed"]


def test_acceleration_clamp_limits_the_change_per_tick():
    limits = Limits(**{**LIMITS.__dict__, "max_linear_accel": 1.0})
    env = Envelope(limits)
    first = env.limit([0.5, 0, 0], [0, 0, 0], INSIDE, DT, 10.0)
    np.testing.assert_allclose(first.linear, [0.02, 0, 0])  # 1 m/s^2 * 20 ms
    second = env.limit([0.5, 0, 0], [0, 0, 0], INSIDE, DT, 10.0)
    np.testing.assert_allclose(second.linear, [0.04, 0, 0])
    assert second.interventions == ["linear_accel"]
    env.stop()
    np.testing.assert_allclose(env.limit([0.5, 0, 0], [0, 0, 0], INSIDE, DT, 10.).linear,
                               [0.02, 0, 0])


def test_ramp_in_scales_the_speed_limits_after_activation():
    limits = Limits(**{**LIMITS.__dict__, "ramp_in_s": 2.0})
    out = Envelope(limits).limit([0.5, 0, 0], [0, 0, 0], INSIDE, DT, 0.5)
    np.testing.assert_allclose(out.linear, [0.125, 0, 0])  # a quarter of the way in
    assert out.interventions == ["ramp_in"]
    assert Envelope(limits).limit([0.5, 0, 0], [0, 0, 0], INSIDE, DT, 2.5).interventions == []


def test_workspace_allows_only_a_speed_that_stops_inside_the_box():
    env = Envelope(LIMITS)
    near = np.array([0.995, 0.0, 0.0])
    out = env.limit([0.4, 0.1, 0], [0, 0, 0], near, DT, 10.0)
    # 5 mm left: v DT + v^2 / (2 * 100 m/s^2) = 5 mm
    v = 100.0 * (math.sqrt(DT ** 2 + 2 * 0.005 / 100.0) - DT)
    np.testing.assert_allclose(out.linear, [v, 0.1, 0])
    assert v * DT + v ** 2 / 200.0 == pytest.approx(0.005)
    assert out.interventions == ["workspace"]
    outside = np.array([1.1, 0.0, 0.0])
    assert env.limit([0.3, 0, 0], [0, 0, 0], outside, DT, 10.0).linear[0] == 0.0
    back = Envelope(LIMITS).limit([-0.3, 0, 0], [0, 0, 0], outside, DT, 10.0)
    assert back.linear[0] == pytest.approx(-0.3) and back.interventions == []


def test_limits_refuse_an_inverted_box_and_negative_limits():
    with pytest.raises(ValueError, match="below"):
        Limits(workspace_min=(0, 0, 1), workspace_max=(1, 1, 0.5))
    with pytest.raises(ValueError, match="max_linear_speed"):
        Limits(max_linear_speed=-1.0)


# ------------------------------------------------------------------------------ pose targets
def test_rotation_vectors_round_trip():
    r = np.array([0.1, -0.4, 0.25])
    np.testing.assert_allclose(quat_to_rotvec(rotvec_to_quat(r)), r, atol=1e-12)
    q0, q1 = rotvec_to_quat([0.0, 0.0, 1.0]), rotvec_to_quat(r)
    moved = quat_multiply(rotvec_to_quat(rotation_between(q0, q1)), q0)
    np.testing.assert_allclose(moved * np.sign(moved[3]), q1 * np.sign(q1[3]), atol=1e-12)
    np.testing.assert_allclose(rotation_between(q0, q0), np.zeros(3), atol=1e-12)


def test_pose_target_integrates_from_the_measured_pose_and_restarts_after_a_reset():
    limits = Limits(**{**LIMITS.__dict__, "max_pose_lead_m": 1.0})
    integ = PoseIntegrator()
    identity = np.array([0.0, 0.0, 0.0, 1.0])
    p, q, notes = integ.step([0.1, 0, 0], [0, 0, 0.5], DT, INSIDE, identity, limits)
    np.testing.assert_allclose(p, INSIDE + [0.002, 0, 0])
    np.testing.assert_allclose(quat_to_rotvec(q), [0, 0, 0.01], atol=1e-12)
    p, q, notes = integ.step([0.1, 0, 0], [0, 0, 0.5], DT, INSIDE, identity, limits)
    np.testing.assert_allclose(p, INSIDE + [0.004, 0, 0])  # from the last target
    assert notes == []
    hp, _ = integ.coast(np.zeros(3), np.zeros(3), DT, limits)  # a hold: latched
    np.testing.assert_allclose(hp, INSIDE + [0.004, 0, 0])
    integ.reset()
    p, _, _ = integ.step([0.1, 0, 0], [0, 0, 0], DT, INSIDE, identity, limits)
    np.testing.assert_allclose(p, INSIDE + [0.002, 0, 0])


def test_pose_target_stays_within_the_lead_and_the_box():
    limits = Limits(**{**LIMITS.__dict__, "max_pose_lead_m": 0.005})
    integ = PoseIntegrator()
    identity = np.array([0.0, 0.0, 0.0, 1.0])
    for _ in range(10):  # the arm does not follow: the target may not run away
        p, _, notes = integ.step([0.5, 0, 0], [0, 0, 0], DT, INSIDE, identity, limits)
    np.testing.assert_allclose(p, INSIDE + [0.005, 0, 0])
    assert "pose_lead" in notes
    near = np.array([0.999, 0.0, 0.0])
    p, _, notes = PoseIntegrator().step([0.5, 0, 0], [0, 0, 0], DT, near, identity, LIMITS)
    assert p[0] == pytest.approx(1.0) and notes == ["workspace"]


# ------------------------------------------------------------------------------ parameters
def test_yaml_is_generated_from_the_table():
    assert CONFIG.read_text() == xp.render_yaml(), (
        "run python -m specprune_ros.node.executor_parameters --write config/executor.yaml")
    values = yaml.safe_load(CONFIG.read_text())[xp.NODE_NAME]["ros__parameters"]
    assert set(values) == {spec.name for spec in xp.PARAMS}
    for spec in xp.PARAMS:
        assert values[spec.name] == spec.default and spec.description, spec.name


def test_every_limit_is_a_live_parameter_with_a_range():
    for name in xp.LIMIT_FIELDS + xp.JOINT_LIMIT_FIELDS:
        spec = xp.BY_NAME[name]
        assert not spec.read_only, name
        assert isinstance(spec.default, list) or (spec.lo is not None and spec.hi is not None)
    assert xp.limits_from({s.name: s.default for s in xp.PARAMS}) == Limits()


def test_integers_are_taken_as_doubles():
    assert xp.BY_NAME["max_linear_speed"].coerce(1) == 1.0
    assert isinstance(xp.BY_NAME["max_linear_speed"].coerce(1), float)
    assert xp.BY_NAME["workspace_min"].coerce([0, -1, 0]) == [0.0, -1.0, 0.0]
    assert xp.BY_NAME["crossfade_points"].coerce(3) == 3
    assert xp.BY_NAME["dry_run"].coerce(True) is True


def test_live_checks_refuse_a_bad_rule_and_an_inverted_box():
    current = {s.name: s.default for s in xp.PARAMS}
    assert "rule must be one of" in xp.check_values({"rule": "median"}, current)
    assert "below" in xp.check_values({"workspace_max": [0.1, 0.1, 0.1]}, current)
    assert xp.check_values({"workspace_max": [1.0, 1.0, 1.0]}, current) is None


def test_joint_trajectory_is_refused_for_a_cartesian_layout_with_the_reason():
    values = {s.name: s.default for s in xp.PARAMS}
    values["output"] = "joint_trajectory"
    problem = xp.structure_problem(values)
    assert "Cartesian" in problem and "no inverse kinematics" in problem
    values["action_layout"] = "aloha"
    assert xp.structure_problem(values) is None
    values["output"] = "twist"
    assert "joint positions" in xp.structure_problem(values)


def test_sim_overrides_are_declared_parameters_within_their_ranges():
    path = CONFIG.parent / "executor_sim.yaml"
    values = yaml.safe_load(path.read_text())[xp.NODE_NAME]["ros__parameters"]
    for name, value in values.items():
        spec = xp.BY_NAME[name]
        assert type(value) is type(spec.default) and not spec.read_only, name
        assert spec.lo is None or spec.lo <= value <= spec.hi, name
    assert xp.check_values(values, {s.name: s.default for s in xp.PARAMS}) is None


# ------------------------------------------------------------------------------ the node's ticks
def test_dry_run_switched_on_while_moving_sends_one_hold_directly():
    bare = Bare(output="twist")
    bare.pose()
    bare.chunk([0.1, 0, 0, 0, 0, 0, -1.0])
    bare.tick()
    assert bare.last_twist()[0] > 0.0  # moving
    sent = len(bare.out.sent)
    bare.set(dry_run=True)
    assert len(bare.out.sent) == sent + 1, "the controller keeps the last moving twist"
    np.testing.assert_array_equal(bare.last_twist(), np.zeros(3))
    bare.pose()
    bare.tick()  # dry run from here on: nothing more reaches the controller
    assert len(bare.out.sent) == sent + 1 and bare.node.core.counters["dry_run_commands"] == 1


def test_dry_run_on_while_moving_holds_where_the_target_comes_to_rest():
    """The last command before nothing: the target where the motion stops at the stop
    deceleration (an impedance controller then brakes the arm to it)."""
    pose = Bare(output="pose")
    pose.pose(x=0.6)
    pose.chunk([0.1, 0, 0, 0, 0, 0, -1.0])
    pose.tick()
    moving = pose.out.sent[-1].pose.position.x
    v = pose.node.core.motion.envelope.linear[0]
    assert moving > 0.6 and v > 0.0
    pose.set(dry_run=True)
    decel = pose.node.core.values["max_linear_stop_decel"]
    assert pose.out.sent[-1].pose.position.x == pytest.approx(moving + v * v / (2 * decel))
    idle = Bare(output="twist", dry_run=False)
    idle.node.core.active = False  # inactive: it commands nothing, not even this hold
    idle.set(dry_run=True)
    assert idle.out.sent == []


def test_dry_run_switched_off_starts_from_rest_and_ramps_in_again():
    """In dry run the envelope follows commands that are never sent; the arm is at rest
    when dry_run goes off, so the first real twist is limited from zero."""
    accel, dt, ramp_in_s = 1.0, 0.02, 0.5
    bare = Bare(output="twist", dry_run=True, max_linear_accel=accel)
    for _ in range(30):  # 0.6 s of a 0.2 m/s chunk: the unsent command reaches 0.2 m/s
        bare.pose()
        bare.chunk([0.2, 0, 0, 0, 0, 0, -1.0])
        bare.tick(dt)
    assert bare.out.sent == [] and bare.node.core.motion.envelope.linear[0] == pytest.approx(0.2)
    bare.set(ramp_in_s=ramp_in_s)
    bare.set(dry_run=False)
    speeds = []
    for _ in range(3):
        bare.pose()
        bare.chunk([0.2, 0, 0, 0, 0, 0, -1.0])
        bare.tick(dt)
        speeds.append(bare.last_twist()[0])
    # from rest: ramp-in (one tick, 0.02 s of 0.5 s) and acceleration (accel * dt per tick)
    # bind; the ramp cap is below the acceleration bound, so only a restarted ramp meets it
    ramp_cap = ramp_factor(ramp_in_s, dt) * bare.node.core.values["max_linear_speed"]
    assert ramp_cap < accel * dt
    assert 0.0 < speeds[0] <= ramp_cap + 1e-9, speeds
    assert all(b - a <= accel * dt + 1e-9 for a, b in zip([0.0] + speeds, speeds)), speeds


def test_a_non_finite_joint_state_drops_the_last_good_one():
    bare = Bare(action_layout="aloha", output="joint_trajectory")
    bare.joints(np.zeros(14))
    bare.chunk(np.full(14, 0.01))
    bare.tick()
    assert bare.node.core.hold_reason is None and bare.out.sent  # moving on the good state
    bare.joints([math.nan] + [0.0] * 13)
    bare.tick()
    assert bare.node.core.hold_reason == "stale_state"
    assert bare.node.core.hold_detail == "joint state not finite"
    assert bare.node.core.counters["bad_state"] == 1
    bare.joints(np.zeros(14))
    bare.tick()
    assert bare.node.core.hold_reason is None


@pytest.mark.parametrize("cartesian", [True, False])
def test_a_state_stamped_in_the_future_is_stale(cartesian):
    bare = Bare() if cartesian else Bare(action_layout="aloha", output="joint_trajectory")
    limit = bare.node.core.values["max_future_stamp_s"]  # as for chunks
    ahead = bare.t + 0.02 + 2 * limit  # the tick below runs 0.02 s later
    if cartesian:
        bare.pose(stamp_s=ahead)
        bare.chunk([0.1, 0, 0, 0, 0, 0, -1.0])
    else:
        bare.joints(np.zeros(14), stamp_s=ahead)
        bare.chunk(np.full(14, 0.01))
    bare.tick()
    assert bare.node.core.hold_reason == "stale_state"
    assert "stamped in the future" in bare.node.core.hold_detail
    if cartesian:  # a little ahead (clock jitter within the limit) still runs
        bare.pose(stamp_s=bare.t + 0.02 + 0.5 * limit)
        bare.tick()
        assert bare.node.core.hold_reason is None


def test_no_motion_before_the_first_false_on_the_estop_topic():
    """A robot's executor (require_estop_signal, true in config/executor.yaml) holds until
    it has heard the e-stop say false: one raised before it subscribed is not missed."""
    bare = Bare(require_estop_signal=True, ramp_in_s=1.0)
    bare.pose()
    bare.chunk([0.1, 0, 0, 0, 0, 0, -1.0], points=40)
    bare.tick()
    assert bare.node.core.hold_reason == "estop"
    assert bare.node.core.hold_detail == "no e-stop signal received yet"
    np.testing.assert_array_equal(bare.last_twist(), np.zeros(3))
    assert bare.node.diagnostic_status().level == DiagnosticStatus.ERROR
    bare.node._on_estop(Bool(data=True))  # raised: latched as always
    bare.node._on_estop(Bool(data=False))
    bare.pose()
    bare.tick()
    assert bare.node.core.hold_reason == "estop" and "latched" in bare.node.core.hold_detail
    fresh = Bare(require_estop_signal=True, ramp_in_s=1.0)
    fresh.pose()
    fresh.chunk([0.1, 0, 0, 0, 0, 0, -1.0], points=40)
    for _ in range(15):  # 0.3 s without a signal: the ramp must not run meanwhile
        fresh.pose()
        fresh.tick()
    fresh.node._on_estop(Bool(data=False))
    fresh.pose()
    fresh.tick()
    assert fresh.node.core.hold_reason is None
    assert 0.0 < fresh.last_twist()[0] <= 0.25 * 0.02 + 1e-9  # ramping in from 0 again
    fresh.set(require_estop_signal=False)
    fresh.pose()
    fresh.tick()
    assert fresh.node.core.hold_reason is None and fresh.last_twist()[0] > 0.0


def test_the_robot_config_requires_the_estop_signal_and_the_simulator_does_not():
    assert xp.BY_NAME["require_estop_signal"].default is True
    assert yaml.safe_load(CONFIG.read_text())[xp.NODE_NAME]["ros__parameters"][
        "require_estop_signal"] is True
    sim = yaml.safe_load((CONFIG.parent / "executor_sim.yaml").read_text())
    assert sim[xp.NODE_NAME]["ros__parameters"]["require_estop_signal"] is False


def test_joint_speed_ramps_in_after_activation_like_the_cartesian_limits():
    bare = Bare(action_layout="aloha", output="joint_trajectory", ramp_in_s=1.0,
                max_joint_speed=0.5, max_joint_accel=1000.0)
    q = np.linspace(-0.3, 0.3, 14)
    bare.t += 0.23
    bare.joints(q)
    bare.chunk(q + 1.0)  # far: every joint limited
    bare.tick()  # 0.25 s after activation: a quarter of the speed
    step = np.array(bare.out.sent[-1].points[0].positions) - q
    np.testing.assert_allclose(step, 0.5 * 0.25 * bare.node.core.dt, atol=1e-12)
    assert bare.node.core.counters["ramp_in"] == 1 and bare.node.core.counters["joint_speed"] == 0
    for _ in range(50):  # 1 s more, the arm where it was commanded: ramped in
        bare.joints(bare.out.sent[-1].points[0].positions)
        bare.chunk(q + 2.0)
        bare.tick()
    steps = np.diff([m.points[0].positions for m in bare.out.sent[-2:]], axis=0)
    np.testing.assert_allclose(steps, 0.5 * bare.node.core.dt, atol=1e-12)  # the full limit
    assert bare.node.core.counters["joint_speed"] > 0


def test_a_hold_ends_the_crossfade_from_the_chunk_before_it():
    """A stale-state hold in the middle of a fade: afterwards the newest chunk runs alone,
    not blended with the chunk that ran before the hold."""
    bare = Bare(rule="crossfade", crossfade_points=20, max_linear_accel=1000.0,
                max_linear_speed=2.0)
    bare.pose()
    bare.chunk([0.5, 0, 0, 0, 0, 0, -1.0], points=40)
    bare.tick()
    bare.pose()
    bare.chunk([0.1, 0, 0, 0, 0, 0, -1.0], points=40)
    bare.tick()
    assert bare.last_twist()[0] == pytest.approx(0.5 - 0.4 / 21)  # fading 0.5 -> 0.1
    bare.t += 0.3  # no pose for 0.32 s: stale
    bare.tick()
    assert bare.node.core.hold_reason == "stale_state"
    bare.pose()
    bare.tick()
    assert bare.node.core.hold_reason is None
    assert bare.last_twist()[0] == pytest.approx(0.1)


def test_activation_before_the_first_clock_message_still_ramps_in():
    """use_sim_time: the node clock reads 0 until /clock arrives; the ramp starts at the
    first tick with a clock, not at time 0 (which would skip it)."""
    bare = Bare(ramp_in_s=1.0, max_linear_accel=1000.0)
    bare.t = 0.0
    bare.node._start_commanding(bare.t)  # activated before any /clock
    bare.t = 500.0  # the simulator's clock is well past 0 when it first ticks
    bare.pose()
    bare.chunk([0.2, 0, 0, 0, 0, 0, -1.0], points=40)
    bare.tick()  # the first tick with a clock: the ramp starts here
    np.testing.assert_array_equal(bare.last_twist(), np.zeros(3))
    assert bare.node.core.counters["ramp_in"] == 1
    for _ in range(20):
        bare.pose()
        bare.tick()
    assert bare.last_twist()[0] == pytest.approx(0.25 * 0.4)  # 40 % in after 0.4 s


def test_time_conversions_round_to_the_nanosecond_and_a_hold_is_one_period_ahead():
    from specprune_ros.node import tf_motion
    d = tf_motion.duration(2.9999999999)  # rounds to the nanosecond, carrying into sec
    assert (d.sec, d.nanosec) == (3, 0)
    assert tf_motion.stamp_seconds(tf_motion.duration(1.25)) == 1.25
    bare = Bare(action_layout="aloha", output="joint_trajectory", control_rate_hz=40.0)
    bare.joints(np.zeros(14))
    bare.tick()  # a hold: one point, one control period ahead
    bare.joints(np.zeros(14))
    bare.tick()
    for msg in bare.out.sent[-2:]:
        assert (msg.points[0].time_from_start.sec,
                msg.points[0].time_from_start.nanosec) == (0, 25_000_000)
        assert list(msg.joint_names) == list(bare.node.core.values["joint_names"])


def test_the_watchdog_holds_through_other_holds_until_a_new_chunk():
    """A stale pose while the watchdog holds, then a fresh pose: still the watchdog (no
    chunk for longer than chunk_timeout_s), at WARN, not an OK no_chunk."""
    bare = Bare(chunk_timeout_s=0.3)
    bare.pose()
    bare.chunk([0.1, 0, 0, 0, 0, 0, -1.0], points=40)  # 2 s of points: it does not run out
    for _ in range(20):  # 0.4 s without another chunk
        bare.pose()
        bare.tick()
    assert bare.node.core.hold_reason == "watchdog"
    bare.tick(0.3)  # no pose for 0.3 s: stale
    assert bare.node.core.hold_reason == "stale_state"
    bare.pose()
    bare.tick()
    assert bare.node.core.hold_reason == "watchdog", bare.node.core.hold_detail
    assert bare.node.core.hold_detail.startswith("no chunk for")
    assert bare.node.diagnostic_status().level == DiagnosticStatus.WARN
    bare.pose()
    bare.chunk([0.1, 0, 0, 0, 0, 0, -1.0])
    bare.tick()
    assert bare.node.core.hold_reason is None and bare.last_twist()[0] > 0.0


def test_a_pose_is_ignored_by_a_joint_space_layout():
    bare = Bare(action_layout="aloha", output="joint_trajectory")
    bare.joints(np.zeros(14))
    msg = PoseStamped()
    msg.header.frame_id = "elsewhere"
    bare.node._on_pose(msg)
    assert bare.node.core.counters["bad_state"] == 0 and bare.node.core.measured.problem == ""
    bare.tick()
    assert bare.node.core.hold_reason == "no_chunk"
    fresh = Bare(action_layout="aloha", output="joint_trajectory")
    fresh.tick()  # nothing received yet: the fallback text, once
    assert fresh.node.core.hold_detail == "no joint state received"


def test_after_reset_estop_a_chunk_stamped_before_the_latch_does_not_resume():
    """true -> false -> ~/reset_estop within a policy step: the chunk of an observation
    taken before the stop arrives afterwards (stamp 0.3 s old, inside max_chunk_age_s) and
    is refused; one stamped after the latch runs."""
    bare = Bare()
    bare.pose()
    bare.chunk([0.1, 0, 0, 0, 0, 0, -1.0], points=40)
    bare.tick()
    assert bare.last_twist()[0] > 0.0
    latch = bare.t
    bare.node._on_estop(Bool(data=True))
    bare.node._on_estop(Bool(data=False))
    for _ in range(10):
        bare.pose()
        bare.tick()
    assert bare.node._on_reset_estop(Trigger.Request(), Trigger.Response()).success
    bare.chunk([0.1, 0, 0, 0, 0, 0, -1.0], points=40, stamp_s=latch - 0.1)
    bare.pose()
    bare.tick()
    assert bare.node.core.counters["chunks_before_estop"] == 1
    assert bare.node.core.hold_reason == "no_chunk"
    np.testing.assert_array_equal(bare.last_twist(), np.zeros(3))
    bare.chunk([0.1, 0, 0, 0, 0, 0, -1.0], points=40, stamp_s=latch + 0.01)
    bare.pose()
    bare.tick()
    assert bare.node.core.hold_reason is None and bare.last_twist()[0] > 0.0


def test_a_failed_transition_stops_commanding_and_drops_the_timer():
    """rclpy's error processing calls on_error after a transition raised: the executor
    sends its last hold and no tick commands again (before, core.active stayed true)."""
    bare = Bare()
    bare.pose()
    bare.chunk([0.1, 0, 0, 0, 0, 0, -1.0], points=40)
    bare.tick()
    assert bare.last_twist()[0] > 0.0
    bare.node._timer = bare.node._jump_handle = None  # a bare node has no ROS entities
    bare.node._entities = []
    bare.node._await_delivery = lambda: None  # the recorder publishers acknowledge nothing
    assert bare.node.on_error(LifecycleState("activating", 13)) == TransitionCallbackReturn.SUCCESS
    assert not bare.node.core.active
    np.testing.assert_array_equal(bare.last_twist(), np.zeros(3))
    sent = len(bare.out.sent)
    bare.chunk([0.1, 0, 0, 0, 0, 0, -1.0], points=40)
    bare.pose()
    bare.tick()
    assert len(bare.out.sent) == sent
