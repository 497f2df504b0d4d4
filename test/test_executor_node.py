"""The chunk executor across real process boundaries.

TestTwist / TestPose: the simulated arm bridge (command_input twist / pose) and the executor
(output twist / pose) as two processes, TestPose on the bridge's /clock (use_sim_time);
this process plays the policy (publishes chunks stamped with its clock, or stops
publishing them as a dead policy node would) and asserts on what crosses the wire: the
executor's commands, /diagnostics and the arm's /ee_pose.
TestLifecycle: the executor alone, without autostart, driven through its lifecycle services
with a pose fed by this process. Each class has its own processes and ROS domain.
"""
import math
import re
import signal
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import pytest
from rclpy.parameter import Parameter
from rclpy.time import Time

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # lark, pulled in by the msg packages
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
    from geometry_msgs.msg import PoseStamped, TwistStamped
    from lifecycle_msgs.msg import Transition
    from lifecycle_msgs.srv import ChangeState, GetState
    from rosgraph_msgs.msg import Clock
    from std_msgs.msg import Bool, Float64
    from std_srvs.srv import Trigger
    from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from ros_helpers import NodeProcess, Probe, domain_id, probe_fixture
from specprune_ros.node.executor_node import DIAG_NAME
from specprune_ros.node.safety_envelope import Limits

pytestmark = pytest.mark.filterwarnings("ignore:module 'sre_:DeprecationWarning")
NODE = "specprune_executor"
NAMES = ["x", "y", "z", "roll", "pitch", "yaw", "gripper"]
START_TIMEOUT_S = 90.0
CHUNK_TIMEOUT_S = 0.3
RATE_HZ = 50.0
SPEED = 0.3  # max_linear_speed in these tests, m/s
EXECUTOR_ARGS = ("autostart:=true", f"chunk_timeout_s:={CHUNK_TIMEOUT_S}",
                 f"max_linear_speed:={SPEED}", "max_angular_speed:=3.0",
                 "max_linear_accel:=20.0", "max_angular_accel:=200.0", "ramp_in_s:=0.2")


def executor_process(tmp: Path, domain: int, *overrides: str) -> NodeProcess:
    """config/executor.yaml without the wait for an e-stop signal (nothing publishes it
    here unless a test does), then ``overrides``."""
    args = ["--ros-args", "--params-file", "config/executor.yaml"]
    for item in ("require_estop_signal:=false",) + overrides:
        args += ["-p", item]
    return NodeProcess("specprune_ros.node.executor_node", args, tmp, domain, "executor")


def bridge_process(tmp: Path, domain: int, command_input: str, clock: bool) -> NodeProcess:
    return NodeProcess("specprune_ros.sim.sim_bridge_node",
                       ["--ros-args", "--params-file", "config/sim_arm.yaml",
                        "-p", f"command_input:={command_input}",
                        "-p", f"publish_clock:={str(clock).lower()}"], tmp, domain, "sim")


@dataclass
class Wire:
    """What the probe saw (with this process's monotonic arrival times)."""

    twists: List[Tuple[float, np.ndarray]] = field(default_factory=list)
    targets: List[Tuple[float, np.ndarray]] = field(default_factory=list)
    poses: List[Tuple[float, np.ndarray]] = field(default_factory=list)
    gripper: List[float] = field(default_factory=list)
    diags: List[Dict[str, Any]] = field(default_factory=list)

    def on_twist(self, msg: TwistStamped) -> None:
        t = msg.twist
        self.twists.append((time.monotonic(), np.array([t.linear.x, t.linear.y, t.linear.z,
                                                        t.angular.x, t.angular.y,
                                                        t.angular.z])))

    def on_target(self, msg: PoseStamped) -> None:
        self.targets.append((time.monotonic(), _position(msg)))

    def on_pose(self, msg: PoseStamped) -> None:
        self.poses.append((time.monotonic(), _position(msg)))

    def on_diag(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name == DIAG_NAME:
                values = {kv.key: kv.value for kv in status.values}
                self.diags.append(dict(values, level=status.level, message=status.message))

    def count(self, name: str) -> int:
        return int(self.diags[-1][f"count_{name}"]) if self.diags else 0


def _position(msg: PoseStamped) -> np.ndarray:
    p = msg.pose.position
    return np.array([p.x, p.y, p.z])


class ChunkSource:
    """Plays the policy: a chunk every ``period`` s while ``row`` is set (stamped now)."""

    def __init__(self, probe: Probe, period: float = 0.1) -> None:
        self.probe, self.period = probe, period
        self.pub = probe.node.create_publisher(JointTrajectory, "/specprune/action_chunk", 10)
        self.row: Optional[Sequence[float]] = None
        self.points = 8
        self.last_sent = -math.inf

    def __call__(self) -> None:
        if self.row is not None and time.monotonic() - self.last_sent >= self.period:
            self.send([self.row] * self.points)

    def send(self, rows: Sequence[Sequence[float]], names: Sequence[str] = NAMES,
             stamped: bool = True) -> None:
        msg = JointTrajectory(joint_names=list(names))
        if stamped:
            msg.header.stamp = self.probe.now().to_msg()
        msg.header.frame_id = "panda_link0"
        for i, row in enumerate(rows):
            t = (i + 1) / 20.0
            point = JointTrajectoryPoint(positions=[float(v) for v in row])
            point.time_from_start.sec, point.time_from_start.nanosec = int(t), int(t % 1 * 1e9)
            msg.points.append(point)
        self.pub.publish(msg)
        self.last_sent = time.monotonic()


@dataclass
class Rig:
    sim: Optional[NodeProcess]
    executor: NodeProcess
    probe: Probe
    wire: Wire
    source: ChunkSource

    def alive(self) -> bool:
        return self.executor.alive() and (self.sim is None or self.sim.alive())

    def logs(self) -> str:
        return self.executor.log() + ("" if self.sim is None else self.sim.log())

    def spin_until(self, done, timeout: float = 20.0, what: str = "") -> None:
        assert self.probe.spin_until(done, timeout, self.alive), \
            f"{what or 'condition'} not met in {timeout} s; diag {self.wire.diags[-1:]}\n" \
            f"{self.logs()}"

    def diag(self, predicate, timeout: float = 15.0) -> Dict[str, Any]:
        start = len(self.wire.diags)
        found: List[Dict[str, Any]] = []

        def done() -> bool:
            found.extend(d for d in self.wire.diags[start:] if predicate(d))
            return bool(found)
        self.spin_until(done, timeout, "diagnostics")
        return found[0]

    def count(self, name: str) -> int:
        return self.wire.count(name)

    def position(self) -> np.ndarray:
        return self.wire.poses[-1][1]

    def settled(self, tol: float = 5e-4, window: int = 5, timeout: float = 15.0) -> np.ndarray:
        def done() -> bool:
            recent = [p for _, p in self.wire.poses[-window:]]
            return len(recent) == window and float(np.ptp(np.array(recent), axis=0).max()) < tol
        n = len(self.wire.poses)
        self.spin_until(lambda: len(self.wire.poses) >= n + window, timeout, "poses")
        self.spin_until(done, timeout, "the arm settling")
        return self.position()

    def run_chunks(self, row: Sequence[float], seconds: float) -> float:
        """Publish chunks of ``row`` for ``seconds``; the monotonic time of the last one."""
        self.source.row = row
        self.probe.spin_for(seconds)
        self.source.row = None
        return self.source.last_sent

    def set(self, **values: Any) -> List[Any]:
        return self.probe.set_parameters(NODE, values)


def make_rig(tmp: Path, offset: int, command_input: Optional[str], *overrides: str,
             sim_time: bool = False) -> Iterator[Rig]:
    """Bridge (unless ``command_input`` is None) + executor + probe; with ``sim_time`` the
    bridge publishes /clock and the executor and the probe run on it."""
    domain = domain_id(offset)
    sim = bridge_process(tmp, domain, command_input, sim_time) if command_input else None
    if sim_time:
        overrides += ("use_sim_time:=true",)
    executor = executor_process(tmp, domain, *overrides)
    try:
        for probe in probe_fixture(f"executor_probe_{offset}", domain):
            if sim_time:
                probe.node.set_parameters([Parameter("use_sim_time", value=True)])
            wire = Wire()
            node = probe.node
            node.create_subscription(TwistStamped, "/specprune/ee_twist", wire.on_twist, 100)
            node.create_subscription(PoseStamped, "/specprune/ee_target_pose", wire.on_target,
                                     100)
            node.create_subscription(PoseStamped, "/ee_pose", wire.on_pose, 100)
            node.create_subscription(Float64, "/specprune/gripper",
                                     lambda m: wire.gripper.append(m.data), 100)
            node.create_subscription(DiagnosticArray, "/diagnostics", wire.on_diag, 100)
            source = ChunkSource(probe)
            probe.every.append(source)
            yield Rig(sim, executor, probe, wire, source)
    finally:
        executor.stop(signal.SIGINT)
        if sim is not None:
            sim.stop(signal.SIGINT)


def twist_after(wire: Wire, t: float) -> List[np.ndarray]:
    return [v for when, v in wire.twists if when > t]


# ================================================================== twist
@pytest.fixture(scope="class")
def twist_rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    for rig in make_rig(tmp_path_factory.mktemp("executor_twist"), 41, "twist",
                        *EXECUTOR_ARGS, "output:=twist"):
        rig.spin_until(lambda: len(rig.wire.poses) > 5 and len(rig.wire.twists) > 5,
                       START_TIMEOUT_S, "bridge poses and executor twists")
        yield rig


class TestTwist:
    def test_the_arm_keeps_ticking_while_twists_stream(self, twist_rig: Rig) -> None:
        """The executor streams a twist every 20 ms (zero while it holds). The bridge once
        ticked from a timer that rclpy's MultiThreadedExecutor starved under that stream:
        ~1 /ee_pose per second instead of 20, and the arm barely moved (#13)."""
        rig = twist_rig
        poses, twists, t0 = len(rig.wire.poses), len(rig.wire.twists), time.monotonic()
        rig.probe.spin_for(2.0)
        n_poses, n_twists = len(rig.wire.poses) - poses, len(rig.wire.twists) - twists
        seconds = time.monotonic() - t0
        print(f"over {seconds:.1f} s: {n_poses / seconds:.1f} /ee_pose per s, "
              f"{n_twists / seconds:.1f} twists per s")
        assert n_twists > 0
        # nominal 20 Hz / 50 Hz = 0.4 poses per twist; starved it was ~0.02
        assert n_poses / n_twists > 0.1, (n_poses, n_twists)

    def test_chunks_move_the_arm_through_twist_commands(self, twist_rig: Rig) -> None:
        rig = twist_rig
        start = rig.settled()
        t0 = time.monotonic()
        # 0.2 m/s along +x; the simulated OSC arm follows at ~0.025-0.04 m/s (its gains and
        # the bridge's tick rate on a busy machine): 3 s leave a clear margin over 3 cm
        rig.run_chunks([0.2, 0, 0, 0, 0, 0, -1.0], 3.0)
        moving = [v for v in twist_after(rig.wire, t0) if np.linalg.norm(v) > 0]
        assert moving, "no twist commands while chunks arrived"
        np.testing.assert_allclose(np.median(np.array(moving), axis=0),
                                   [0.2, 0, 0, 0, 0, 0], atol=1e-6)
        delta = rig.settled() - start
        assert delta[0] > 0.03, delta
        assert abs(delta[1]) < 0.3 * delta[0] and abs(delta[2]) < 0.3 * delta[0], delta
        assert rig.wire.gripper and rig.wire.gripper[-1] == -1.0

    def test_speed_violation_is_clamped_and_counted(self, twist_rig: Rig) -> None:
        rig = twist_rig
        before = rig.count("linear_speed")
        t0 = time.monotonic()
        rig.run_chunks([-1.0, 0, 0, 0, 0, 0, -1.0], 0.8)  # asks for 1 m/s
        speeds = [np.linalg.norm(v[:3]) for v in twist_after(rig.wire, t0)]
        assert max(speeds) <= SPEED + 1e-9 and max(speeds) > 0.9 * SPEED, max(speeds)
        diag = rig.diag(lambda d: int(d["count_linear_speed"]) > before)
        assert int(diag["count_linear_speed"]) >= before + 10
        rig.settled()

    def test_workspace_violation_is_clamped_and_counted(self, twist_rig: Rig) -> None:
        rig = twist_rig
        start = rig.settled()
        # the hard box brakes early enough for the commanded speed from a pose extrapolated
        # over its age and the controller lag (~5 cm at 0.25 m/s), so the wall is 8 cm away
        wall = float(start[0]) + 0.08
        result = rig.set(workspace_max=[wall, 0.45, 0.6])[0]
        assert result.successful, result.reason
        try:
            before = rig.count("workspace")
            rig.run_chunks([0.3, 0, 0, 0, 0, 0, -1.0], 3.0)  # would carry it 0.9 m further
            end = rig.settled()
            assert end[0] < wall + 0.005, (end, wall)
            assert end[0] > start[0] + 0.01, (end, start)  # it did move up to the wall
            rig.diag(lambda d: int(d["count_workspace"]) > before)
        finally:
            assert rig.set(workspace_max=list(Limits().workspace_max))[0].successful

    def test_watchdog_holds_within_its_time_when_chunks_stop(self, twist_rig: Rig) -> None:
        rig = twist_rig
        rig.settled()
        rig.source.points = 60  # each chunk reaches 3 s ahead: only the watchdog stops it
        try:
            last = rig.run_chunks([0.0, 0.15, 0, 0, 0, 0, -1.0], 0.6)
            rig.spin_until(lambda: any(np.linalg.norm(v) == 0 for v in
                                       twist_after(rig.wire, last)), 5.0, "a zero twist")
        finally:
            rig.source.points = 8
        moving = [when for when, v in rig.wire.twists if when > last and np.linalg.norm(v) > 0]
        held = next(when for when, v in rig.wire.twists if when > last
                    and np.linalg.norm(v) == 0)
        hold_after = held - last
        print(f"watchdog: hold {hold_after * 1e3:.0f} ms after the last chunk "
              f"(chunk_timeout_s {CHUNK_TIMEOUT_S})")
        assert hold_after <= CHUNK_TIMEOUT_S + 2.0 / RATE_HZ + 0.1, hold_after
        assert hold_after >= CHUNK_TIMEOUT_S - 0.1, hold_after  # the chunk ran until then
        assert not [w for w in moving if w > held], "moved again after the hold"
        # the hold stays a watchdog hold (WARN) until a new chunk arrives
        diag = rig.diag(lambda d: d["holding"] == "watchdog")
        assert diag["level"] == DiagnosticStatus.WARN and int(diag["count_hold_watchdog"]) >= 1
        rig.settled()
        assert rig.wire.diags[-1]["holding"] == "watchdog"

    def test_malformed_chunks_are_refused_and_never_move_the_arm(self, twist_rig: Rig) -> None:
        rig = twist_rig
        start = rig.settled()
        before = rig.count("chunks_refused")
        t0 = time.monotonic()
        rig.source.send([[math.nan, 0, 0, 0, 0, 0, 1.0]] + [[1.0] * 7] * 7)
        rig.source.send([[1.0] * 7] * 8, names=list("abcdefg"))
        rig.source.send([[1.0] * 7] * 8, stamped=False)
        rig.source.send([[1.0] * 6] * 8)
        diag = rig.diag(lambda d: int(d["count_chunks_refused"]) >= before + 4)
        assert diag["last_refusal"]
        rig.probe.spin_for(1.0)
        assert all(np.linalg.norm(v) == 0 for v in twist_after(rig.wire, t0))
        assert np.abs(rig.position() - start).max() < 2e-3
        assert rig.executor.alive()

    def test_estop_latches_a_hold_until_reset(self, twist_rig: Rig) -> None:
        rig = twist_rig
        estop = rig.probe.node.create_publisher(Bool, "/specprune/estop", 10)
        rig.source.row = [0.0, -0.1, 0, 0, 0, 0, -1.0]
        try:
            rig.spin_until(lambda: any(np.linalg.norm(v) > 0 for v in
                                       twist_after(rig.wire, time.monotonic() - 0.1)), 10.0)
            estop.publish(Bool(data=True))
            rig.diag(lambda d: d["estop_latched"] == "True"
                     and d["level"] == DiagnosticStatus.ERROR)
            refused = rig.probe.call(Trigger, f"/{NODE}/reset_estop", Trigger.Request())
            assert not refused.success and "still true" in refused.message
            estop.publish(Bool(data=False))  # released, but the hold stays latched
            rig.probe.spin_for(0.5)
            t0 = time.monotonic()
            rig.probe.spin_for(1.0)  # chunks keep coming all along
            assert all(np.linalg.norm(v) == 0 for v in twist_after(rig.wire, t0))
            reset = rig.probe.call(Trigger, f"/{NODE}/reset_estop", Trigger.Request())
            assert reset.success, reset.message
            t1 = time.monotonic()
            rig.spin_until(lambda: any(np.linalg.norm(v) > 0 for v in
                                       twist_after(rig.wire, t1)), 5.0, "motion after reset")
        finally:
            rig.source.row = None
        assert rig.count("estops") >= 1
        rig.settled()

    def test_dry_run_commands_nothing_and_reports(self, twist_rig: Rig) -> None:
        rig = twist_rig
        assert rig.set(dry_run=True)[0].successful
        try:
            rig.probe.spin_for(0.3)
            t0, before = time.monotonic(), rig.count("dry_run_commands")
            rig.run_chunks([0.2, 0, 0, 0, 0, 0, -1.0], 1.0)
            assert not twist_after(rig.wire, t0), "dry run published twists"
            rig.diag(lambda d: int(d["count_dry_run_commands"]) > before + 10
                     and d["message"].startswith("DRY RUN"))
        finally:
            assert rig.set(dry_run=False)[0].successful

    def test_parameters_accept_integers_and_refuse_bad_values_with_the_reason(
            self, twist_rig: Rig) -> None:
        rig = twist_rig
        ok = rig.set(max_linear_speed=1)[0]  # what `ros2 param set ... 1` sends
        assert ok.successful, ok.reason
        assert rig.set(max_linear_speed=SPEED)[0].successful
        bad = rig.set(max_linear_speed=-1.0)[0]
        assert not bad.successful and bad.reason
        inverted = rig.set(workspace_min=[1.0, 1.0, 1.0])[0]
        assert not inverted.successful and "below" in inverted.reason
        rule = rig.set(rule="median")[0]
        assert not rule.successful and "one of" in rule.reason
        assert rig.set(rule="ensemble")[0].successful
        assert rig.set(rule="latest")[0].successful

    def test_sigint_sends_a_last_hold_and_exits_0(self, twist_rig: Rig) -> None:
        rig = twist_rig
        rig.source.row = [0.1, 0, 0, 0, 0, 0, -1.0]
        rig.probe.spin_for(0.5)
        rig.source.row = None
        rig.executor.proc.send_signal(signal.SIGINT)
        code = rig.executor.wait(10.0)
        rig.probe.spin_for(0.3)
        assert code == 0, rig.executor.log()
        assert np.linalg.norm(rig.wire.twists[-1][1]) == 0, "the last command was not a hold"
        assert "Traceback" not in rig.executor.log(10 ** 6)


# ================================================================== pose
@pytest.fixture(scope="class")
def pose_rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    """The pose path on the simulator's clock (/clock, use_sim_time)."""
    for rig in make_rig(tmp_path_factory.mktemp("executor_pose"), 43, "pose",
                        *EXECUTOR_ARGS, "output:=pose", sim_time=True):
        rig.spin_until(lambda: len(rig.wire.poses) > 5 and len(rig.wire.targets) > 5,
                       START_TIMEOUT_S, "bridge poses and executor targets")
        yield rig


class TestPose:
    def test_pose_targets_move_the_arm(self, pose_rig: Rig) -> None:
        rig = pose_rig
        start = rig.settled()
        t0 = time.monotonic()
        rig.run_chunks([0, 0, 0.15, 0, 0, 0, -1.0], 1.5)  # up at 0.15 m/s
        delta = rig.settled() - start
        assert delta[2] > 0.03, delta
        assert abs(delta[0]) < 0.3 * delta[2] and abs(delta[1]) < 0.3 * delta[2], delta
        leads = [np.linalg.norm(target - rig.wire.poses[-1][1])
                 for when, target in rig.wire.targets if when > t0]
        assert max(leads) < 0.3, max(leads)

    def test_executor_runs_on_the_bridge_clock(self, pose_rig: Rig) -> None:
        """Its commands are stamped with values of /clock (the bridge's simulated time,
        advanced in 50 ms steps), not with the wall clock, and its 50 Hz timer ticks on that
        clock: once per step, never twice on one value (a timer on the steady clock, which
        the executor uses without simulated time, would)."""
        rig = pose_rig
        clock: List[int] = []
        stamps: List[int] = []
        node = rig.probe.node
        subs = [node.create_subscription(Clock, "/clock", lambda m: clock.append(
                    m.clock.sec * 10 ** 9 + m.clock.nanosec), 100),
                node.create_subscription(PoseStamped, "/specprune/ee_target_pose", lambda m:
                                         stamps.append(m.header.stamp.sec * 10 ** 9
                                                       + m.header.stamp.nanosec), 100)]
        try:
            rig.spin_until(lambda: len(stamps) >= 20, 10.0, "targets")
        finally:
            for sub in subs:
                node.destroy_subscription(sub)
        assert set(np.diff(clock)) == {50 * 10 ** 6}, "the clock must advance one tick a step"
        later = [s for s in stamps if s >= clock[0]]
        ticks = np.array(clock)
        off = [int(np.abs(ticks - s).min()) for s in later]  # ns; float seconds inside
        assert later and max(off) < 1000, f"commands not stamped on /clock: {off}"
        assert len(set(later)) == len(later), "two ticks on one /clock value"

    def test_watchdog_holds_a_latched_target(self, pose_rig: Rig) -> None:
        """The hold target is latched once (where the decelerating target came to rest),
        not re-read from the measured pose every tick (which let a sagging arm creep)."""
        rig = pose_rig
        rig.source.points = 60
        try:
            rig.run_chunks([0, 0, -0.1, 0, 0, 0, -1.0], 0.6)
            rig.probe.spin_for(CHUNK_TIMEOUT_S + 0.5)
        finally:
            rig.source.points = 8
        end = rig.settled()  # on the simulator's clock: a loaded machine runs it slower
        settled = time.monotonic()
        rig.probe.spin_for(1.0)
        late = np.array([target for when, target in rig.wire.targets if when > settled])
        assert len(late) > 5, "no hold targets"
        assert float(np.ptp(late, axis=0).max()) < 1e-9, "the hold target moved"
        assert np.abs(late[-1] - end).max() < 2e-3, (late[-1], end)
        assert rig.count("hold_watchdog") >= 1


# ================================================================== with the policy node
@pytest.fixture(scope="class")
def policy_rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tuple[Rig, NodeProcess]]:
    """Bridge (twist) + the real policy node (tiny preset) + executor."""
    tmp = tmp_path_factory.mktemp("executor_policy")
    for rig in make_rig(tmp, 53, "twist", "autostart:=true",
                        f"chunk_timeout_s:={CHUNK_TIMEOUT_S}"):
        policy = NodeProcess("specprune_ros.node.policy_node", [
            "--ros-args", "--params-file", "config/policy.yaml", "-p", "model:=tiny",
            "-p", "autostart:=true", "-p", "allow_preset_model:=true",
            "-p", "instruction:=pick up the red cube"], tmp, domain_id(53), "policy")
        try:
            yield rig, policy
        finally:
            policy.stop(signal.SIGINT)


class TestWithPolicy:
    def test_killing_the_policy_node_makes_the_executor_hold_in_its_watchdog_time(
            self, policy_rig: Tuple[Rig, NodeProcess]) -> None:
        rig, policy = policy_rig
        chunks: List[float] = []
        rig.probe.node.create_subscription(JointTrajectory, "/specprune/action_chunk",
                                           lambda m: chunks.append(time.monotonic()), 10)
        rig.spin_until(lambda: len(chunks) >= 5 and any(
            np.linalg.norm(v) > 0 for v in twist_after(rig.wire, chunks[0])),
            START_TIMEOUT_S, "chunks from the policy node moving the arm")
        policy.proc.send_signal(signal.SIGINT)  # keep spinning: arrival times stay true
        assert rig.probe.spin_until(lambda: not policy.alive(), 30.0), policy.log()
        assert policy.stop() == 0, policy.log()
        last = chunks[-1]
        rig.spin_until(lambda: any(np.linalg.norm(v) == 0 for v in
                                   twist_after(rig.wire, last)), 5.0, "a hold")
        rig.probe.spin_for(1.0)
        # the stop: the first zero twist after the last moving one (a no_chunk hold between
        # a late last chunk and its points may reach zero and move again before it)
        after = [(when, float(np.linalg.norm(v))) for when, v in rig.wire.twists if when > last]
        moving = [when for when, speed in after if speed > 0]
        held = next(when for when, speed in after
                    if speed == 0 and (not moving or when > moving[-1]))
        print(f"policy node killed: hold {(held - last) * 1e3:.0f} ms after its last chunk "
              f"(chunk_timeout_s {CHUNK_TIMEOUT_S})")
        assert held - last <= CHUNK_TIMEOUT_S + 2.0 / RATE_HZ + 0.1, held - last
        assert after[-1][0] - held > 0.8  # and it stayed held for the rest of the second
        # the watchdog holds, not merely the end of the last chunk (no_chunk, level OK)
        diag = rig.diag(lambda d: d["active"] == "True", 5.0)
        assert diag["holding"] == "watchdog" and diag["level"] == DiagnosticStatus.WARN, diag
        assert rig.executor.alive()


# ================================================================== lifecycle
@pytest.fixture(scope="class")
def managed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    """The executor without autostart; this process publishes its measured pose."""
    for rig in make_rig(tmp_path_factory.mktemp("executor_lifecycle"), 47, None,
                        f"chunk_timeout_s:={CHUNK_TIMEOUT_S}", "ramp_in_s:=0.0"):
        pose_pub = rig.probe.node.create_publisher(PoseStamped, "/ee_pose", 10)

        def publish_pose() -> None:
            msg = PoseStamped()
            msg.header.stamp = rig.probe.now().to_msg()
            msg.header.frame_id = "panda_link0"
            msg.pose.position.x, msg.pose.position.z = 0.5, 0.2
            msg.pose.orientation.w = 1.0
            pose_pub.publish(msg)
        rig.probe.every.append(publish_pose)
        yield rig


def lifecycle_state(rig: Rig) -> str:
    return rig.probe.call(GetState, f"/{NODE}/get_state", GetState.Request(),
                          START_TIMEOUT_S, rig.executor, resend_s=2.0).current_state.label


def change_state(rig: Rig, transition: int) -> bool:
    request = ChangeState.Request(transition=Transition(id=transition))
    return rig.probe.call(ChangeState, f"/{NODE}/change_state", request,
                          START_TIMEOUT_S, rig.executor).success


def twists_while_chunks(rig: Rig, seconds: float = 1.0) -> List[np.ndarray]:
    rig.probe.spin_for(0.2)
    t0 = time.monotonic()
    rig.run_chunks([0.1, 0, 0, 0, 0, 0, -1.0], seconds)
    return twist_after(rig.wire, t0)


class TestLifecycle:
    def test_unconfigured_executor_commands_nothing(self, managed: Rig) -> None:
        assert lifecycle_state(managed) == "unconfigured"
        assert twists_while_chunks(managed) == []
        assert managed.wire.diags == []

    def test_configure_activate_deactivate_cleanup(self, managed: Rig) -> None:
        rig = managed
        assert change_state(rig, Transition.TRANSITION_CONFIGURE)
        assert lifecycle_state(rig) == "inactive"
        rig.diag(lambda d: d["message"].startswith("inactive"))
        assert twists_while_chunks(rig) == [], "inactive executor commanded"
        assert change_state(rig, Transition.TRANSITION_ACTIVATE)
        assert lifecycle_state(rig) == "active"
        moving = twists_while_chunks(rig)
        assert any(np.linalg.norm(v) > 0 for v in moving), "active executor did not move"
        rig.source.row = [0.1, 0, 0, 0, 0, 0, -1.0]
        try:
            t0 = time.monotonic()
            assert change_state(rig, Transition.TRANSITION_DEACTIVATE)  # while chunks come
            rig.probe.spin_for(0.3)
            after = twist_after(rig.wire, t0)
            t1 = time.monotonic()
            rig.probe.spin_for(1.0)
        finally:
            rig.source.row = None
        assert after and np.linalg.norm(after[-1]) == 0, "deactivate did not end on a hold"
        assert twist_after(rig.wire, t1) == [], "inactive executor commanded"
        assert lifecycle_state(rig) == "inactive"
        assert change_state(rig, Transition.TRANSITION_CLEANUP)
        assert lifecycle_state(rig) == "unconfigured"
        assert twists_while_chunks(rig) == []

    def test_reconfigured_executor_commands_again(self, managed: Rig) -> None:
        rig = managed
        assert change_state(rig, Transition.TRANSITION_CONFIGURE)
        assert change_state(rig, Transition.TRANSITION_ACTIVATE)
        assert any(np.linalg.norm(v) > 0 for v in twists_while_chunks(rig))


def test_joint_trajectory_output_is_refused_for_the_cartesian_layout(tmp_path: Path) -> None:
    proc = executor_process(tmp_path, domain_id(49), "autostart:=true",
                            "output:=joint_trajectory")
    code = proc.wait(60.0)
    if code is None:
        proc.stop()
    assert code == 1, proc.log()
    assert "no inverse kinematics" in proc.log() and "Cartesian" in proc.log()


URDF_UPPER = 0.05  # above the measured joints, from robot_description


def urdf_for(names: Sequence[str], measured: np.ndarray) -> str:
    joints = "".join(f'<joint name="{n}" type="revolute"><limit lower="-3" '
                     f'upper="{q + URDF_UPPER}" velocity="5" effort="1"/></joint>'
                     for n, q in zip(names, measured))
    return f'<?xml version="1.0"?><robot name="probe"><link name="base"/>{joints}</robot>'


def test_joint_space_layout_commands_a_limited_joint_trajectory(tmp_path: Path) -> None:
    """ALOHA's 14 joint positions -> JointTrajectory with the real joint names (stamp 0:
    joint_trajectory_controller starts it on receipt), each joint at most
    max_joint_speed / control_rate_hz further per tick, never beyond the limits of the
    robot_description published (transient local) before the executor started."""
    from specprune.model.layouts import LAYOUTS
    from rclpy.qos import DurabilityPolicy, QoSProfile
    from sensor_msgs.msg import JointState
    from std_msgs.msg import String

    names = list(LAYOUTS["aloha"].action_names)
    real = [f"robot/{n}_joint" for n in names]
    joint_list = "[" + ",".join(f"'{n}'" for n in real) + "]"
    measured = np.linspace(-0.3, 0.3, 14)
    for rig in make_rig(tmp_path, 51, None, "autostart:=true", "action_layout:=aloha",
                        "output:=joint_trajectory", f"joint_names:={joint_list}",
                        "max_joint_speed:=0.5", "max_joint_accel:=1000.0",
                        f"chunk_timeout_s:={CHUNK_TIMEOUT_S}", "ramp_in_s:=0.0"):
        out: List[JointTrajectory] = []
        node = rig.probe.node
        latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        node.create_publisher(String, "/robot_description", latched).publish(
            String(data=urdf_for(real, measured)))
        node.create_subscription(JointTrajectory, "/specprune/joint_trajectory", out.append, 100)
        states = node.create_publisher(JointState, "/joint_states", 10)

        def publish_state() -> None:
            msg = JointState(name=list(reversed(real)), position=list(reversed(measured)))
            msg.header.stamp = rig.probe.now().to_msg()
            states.publish(msg)
        rig.probe.every.append(publish_state)
        rig.spin_until(lambda: len(out) >= 5, START_TIMEOUT_S, "hold trajectories")
        hold = out[-1]
        assert list(hold.joint_names) == real
        assert (hold.header.stamp.sec, hold.header.stamp.nanosec) == (0, 0)
        np.testing.assert_allclose(hold.points[0].positions, measured)  # holds where it is
        rig.diag(lambda d: "robot_description (14 of 14" in d.get("joint_limits", ""))
        rig.source.points = 8
        rig.source.row = None
        chunk = [list(measured + 1.0)] * 8  # far: every joint limited
        t0 = len(out)

        def at_the_limit() -> bool:
            rig.source.send(chunk, names=names)
            rig.probe.spin_for(0.1)
            last = np.array(out[-1].points[0].positions)
            return bool(np.all(last >= measured + URDF_UPPER - 1e-6))
        rig.spin_until(at_the_limit, 30.0, "joint commands at the URDF limits")
        moving = np.array([m.points[0].positions for m in out[t0 - 1:]])
        seconds = np.array([m.points[0].time_from_start.nanosec * 1e-9 for m in out[t0:]])
        speeds = np.abs(np.diff(moving, axis=0)) / seconds[:, None]  # as the controller runs
        assert speeds.max() <= 0.5 + 1e-6, speeds.max()  # the point one tick period ahead
        assert np.all(moving <= measured + URDF_UPPER + 1e-9)  # never beyond the limit
        assert rig.count("joint_speed") > 0 or rig.diag(
            lambda d: int(d["count_joint_speed"]) > 0)


def test_a_backward_clock_step_holds_through_the_jump_callback(tmp_path: Path) -> None:
    """use_sim_time, this process publishes /clock and the pose: a 1 s step back is
    reported by rclpy's time-jump callback (with its size) and held as clock_jump.

    The simulated clock follows the wall clock at most every 5 ms. It used to advance
    0.01 s per spin of this process, up to ~10x faster than real time, so under load the
    executor fell so far behind that its /clock queue dropped the messages before the
    step, and it never saw time go back (one failure in a run beside the training job)."""
    for rig in make_rig(tmp_path, 83, None, "autostart:=true", "use_sim_time:=true",
                        f"chunk_timeout_s:={CHUNK_TIMEOUT_S}", "ramp_in_s:=0.0"):
        clock_pub = rig.probe.node.create_publisher(Clock, "/clock", 10)
        pose_pub = rig.probe.node.create_publisher(PoseStamped, "/ee_pose", 10)
        start = time.monotonic()
        sim = {"t": 100.0, "offset": 100.0}

        def publish() -> None:
            now = sim["offset"] + time.monotonic() - start
            if now < sim["t"] + 0.005:
                return
            sim["t"] = now
            stamp = Time(seconds=sim["t"]).to_msg()
            clock_pub.publish(Clock(clock=stamp))
            msg = PoseStamped()
            msg.header.stamp, msg.header.frame_id = stamp, "panda_link0"
            msg.pose.position.x, msg.pose.position.z, msg.pose.orientation.w = 0.5, 0.2, 1.0
            pose_pub.publish(msg)
        rig.probe.every.append(publish)
        rig.spin_until(lambda: len(rig.wire.twists) > 5, START_TIMEOUT_S, "executor twists")
        sim["offset"] -= 1.0
        sim["t"] -= 1.0
        diag = rig.diag(lambda d: d["holding"] == "clock_jump")
        assert diag["level"] == DiagnosticStatus.WARN and int(diag["count_clock_jumps"]) >= 1
        assert re.search(r"stepped back [01]\.\d{3} s", diag["message"]), diag["message"]
