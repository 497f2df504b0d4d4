"""The simulated-arm bridge, tested across a real process boundary (plus its pure helpers).

The bridge runs as ``python -m specprune_ros.sim.sim_bridge_node`` in its own process on a
per-run ROS domain, discovery limited to this host; this process talks to it with its own
rclpy context and asserts only on what crosses the wire. Waits are on conditions with
deadlines, never blind sleeps; the bridge is stopped with SIGINT (never SIGKILL, which would
leave /dev/shm/fastdds_* behind).
"""
import math
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence

import numpy as np
import pytest
import rclpy
import yaml
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # lark, pulled in by the msg packages
    from builtin_interfaces.msg import Duration
    from geometry_msgs.msg import PoseStamped
    from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
    from rcl_interfaces.srv import SetParameters
    from sensor_msgs.msg import Image, JointState
    from std_msgs.msg import Bool, String
    from std_srvs.srv import Trigger
    from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from ros_helpers import ros_environment
from specprune_ros.node.ros_image import image_msg_to_rgb
from specprune_ros.sim.sim_arm import ACTION_NAMES
from specprune_ros.sim.tabletop_suites import TABLETOP_TASKS
from specprune_ros.node.quaternions import rotvec_to_quat
from specprune_ros.sim.bridge_commands import (ActionQueue, CommandInput, parse_action_chunk,
                                               pose_to_action, twist_to_action)
from specprune_ros.sim.sim_bridge_node import PARAMS

# lark (used by rosidl at the first node / type-support load) imports the deprecated
# sre_parse / sre_constants modules.
pytestmark = pytest.mark.filterwarnings("ignore:module 'sre_:DeprecationWarning")
REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "config" / "sim_arm.yaml"
DOMAIN_ID = 100 + os.getpid() % 100
RATE_HZ = 20.0
STARTUP_TIMEOUT_S = 60.0
HOLD = [0.0] * 6 + [-1.0]


# ------------------------------------------------------------------ pure helpers (no graph)
def test_parse_reorders_a_permutation_of_the_names() -> None:
    names = list(reversed(ACTION_NAMES))
    rows = [[7, 6, 5, 4, 3, 2, 1], [0, 0, 0, 0, 0, 0, 0.5]]
    np.testing.assert_array_equal(parse_action_chunk(names, rows),
                                  [[1, 2, 3, 4, 5, 6, 7], [0.5, 0, 0, 0, 0, 0, 0]])


@pytest.mark.parametrize("names,rows,reason", [
    (["x", "y", "z", "roll", "pitch", "yaw"], [[0] * 6], "permutation"),
    (list(ACTION_NAMES[:-1]) + ["x"], [[0] * 7], "permutation"),
    (list(ACTION_NAMES), [], "1 to"),
    (list(ACTION_NAMES), [[0] * 7, [0] * 6], r"points \[1\]"),
    (list(ACTION_NAMES), [[0] * 6 + [math.nan]], r"non-finite positions in points \[0\]"),
    (list(ACTION_NAMES), [[0] * 7, [math.inf] + [0] * 6], r"non-finite .* \[1\]"),
])
def test_parse_rejects_malformed_chunks(names: List[str], rows: List[List[float]],
                                        reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_action_chunk(names, rows)


def test_queue_executes_rows_then_holds_with_the_last_gripper_command() -> None:
    queue = ActionQueue()
    np.testing.assert_array_equal(queue.next_action(), HOLD)
    queue.replace(np.array([[1, 0, 0, 0, 0, 0, 1.0], [0, 1, 0, 0, 0, 0, 1.0]]))
    queue.replace(np.array([[0, 0, 1, 0, 0, 0, 0.8]]))  # the newest chunk wins
    np.testing.assert_array_equal(queue.next_action(), [0, 0, 1, 0, 0, 0, 0.8])
    np.testing.assert_array_equal(queue.next_action(), [0] * 6 + [0.8])
    queue.clear()
    np.testing.assert_array_equal(queue.next_action(), HOLD)


def test_twist_becomes_the_osc_delta_of_one_tick() -> None:
    # 0.5 m/s for 50 ms = 2.5 cm = half of OSC_POSE's 5 cm; 2 rad/s -> 0.1 rad of 0.5
    action = twist_to_action([0.5, -0.2, 0.0], [0.0, 0.0, 2.0], 1.0, 0.05)
    np.testing.assert_allclose(action, [0.5, -0.2, 0.0, 0.0, 0.0, 0.2, 1.0])
    np.testing.assert_allclose(twist_to_action([3.0, 0, 0], [0, 0, 0], -1.0, 0.05)[0], 1.0)
    with pytest.raises(ValueError):
        twist_to_action([math.nan, 0, 0], [0, 0, 0], 1.0, 0.05)


def test_pose_target_becomes_the_osc_delta_that_reaches_it() -> None:
    here, identity = np.array([0.5, 0.0, 0.1]), np.array([0.0, 0.0, 0.0, 1.0])
    action = pose_to_action(here + [0.01, 0.0, -0.02], rotvec_to_quat([0.0, 0.1, 0.0]),
                            here, identity, -1.0)
    np.testing.assert_allclose(action, [0.2, 0.0, -0.4, 0.0, 0.2, 0.0, -1.0], atol=1e-12)
    far = pose_to_action(here + [1.0, 0.0, 0.0], identity, here, identity, -1.0)
    assert far[0] == 1.0  # clipped to one step's reach
    with pytest.raises(ValueError):
        pose_to_action(here, [0.0, 0.0, 0.0, 0.0], here, identity, -1.0)


def test_command_input_holds_when_the_command_is_stale_or_bad() -> None:
    here, identity = np.zeros(3), np.array([0.0, 0.0, 0.0, 1.0])
    twist = CommandInput("twist", timeout_s=0.2)
    np.testing.assert_array_equal(twist.action(10.0, 0.05, here, identity), HOLD)
    twist.set([0.5, 0, 0], [0, 0, 0], now=10.0)
    twist.set_gripper(1.0)
    np.testing.assert_allclose(twist.action(10.1, 0.05, here, identity),
                               [0.5, 0, 0, 0, 0, 0, 1.0])
    np.testing.assert_array_equal(twist.action(10.3, 0.05, here, identity), [0] * 6 + [1.0])
    twist.set([math.inf, 0, 0], [0, 0, 0], now=10.3)
    np.testing.assert_array_equal(twist.action(10.3, 0.05, here, identity), [0] * 6 + [1.0])
    assert twist.rejected == 1
    twist.clear()
    np.testing.assert_array_equal(twist.action(10.3, 0.05, here, identity), HOLD)


def test_yaml_documents_every_declared_parameter_with_its_default() -> None:
    params = yaml.safe_load(CONFIG.read_text())["specprune_sim_arm"]["ros__parameters"]
    assert set(params) == {spec.name for spec in PARAMS}
    for spec in PARAMS:
        assert params[spec.name] == spec.default and type(params[spec.name]) is type(
            spec.default), spec.name
    text = CONFIG.read_text()
    for spec in PARAMS:  # each key is preceded by a comment (its own or its group's)
        before = text[:text.index(f"    {spec.name}:")].rstrip().splitlines()[-1].strip()
        assert before.startswith("#") or before.split(":")[0] in params, spec.name


# ------------------------------------------------------------------ the bridge process
class Bridge:
    """The bridge process and its captured output."""

    def __init__(self, log_dir: Path, extra: Sequence[str] = (), domain: int = DOMAIN_ID
                 ) -> None:
        self.output = log_dir / "bridge.log"
        self._out = self.output.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "specprune_ros.sim.sim_bridge_node", "--ros-args",
             "--params-file", str(CONFIG.relative_to(REPO)), *extra],
            cwd=REPO, env=ros_environment(log_dir, domain), stdout=self._out,
            stderr=subprocess.STDOUT)

    def log(self) -> str:
        return self.output.read_text(errors="replace")[-4000:]

    def stop(self, sig: int = signal.SIGINT, timeout: float = 20.0) -> Optional[int]:
        """Send ``sig`` (then SIGTERM) and return the exit code, None if it would not stop."""
        for current in (sig, signal.SIGTERM):
            if self.proc.poll() is None:
                self.proc.send_signal(current)
                try:
                    self.proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    continue
        self._out.close()
        return self.proc.poll()


class Probe:
    """An rclpy node in its own context that records what the bridge publishes."""

    def __init__(self, domain: int = DOMAIN_ID) -> None:
        self.context = Context()
        rclpy.init(context=self.context, domain_id=domain)
        self.node = Node("sim_bridge_probe", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.latest: Dict[str, Any] = {}
        self.counts: Dict[str, int] = {}
        self.poses: List[np.ndarray] = []
        self._subscribe()
        self.chunks = self.node.create_publisher(JointTrajectory, "/specprune/action_chunk", 10)

    def _subscribe(self) -> None:
        latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL,
                             reliability=ReliabilityPolicy.RELIABLE)
        for key, kind, topic, qos in [
                ("agentview", Image, "/camera/agentview/image_raw", qos_profile_sensor_data),
                ("wrist", Image, "/camera/wrist/image_raw", qos_profile_sensor_data),
                ("joints", JointState, "/joint_states", 10),
                ("pose", PoseStamped, "/ee_pose", 10),
                ("success", Bool, "/task_success", 10),
                ("instruction", String, "/instruction", latched)]:
            self.node.create_subscription(kind, topic, self._recorder(key), qos)

    def _recorder(self, key: str) -> Callable[[Any], None]:
        def record(msg: Any) -> None:
            self.latest[key] = msg
            self.counts[key] = self.counts.get(key, 0) + 1
            if key == "pose":
                p = msg.pose.position
                self.poses.append(np.array([p.x, p.y, p.z]))
        return record

    def spin_until(self, done: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() > deadline:
                return False
            self.executor.spin_once(timeout_sec=0.05)
        return True

    def wait_poses(self, n: int, timeout: float = 15.0) -> np.ndarray:
        """Wait for ``n`` new ee poses and return the newest position."""
        target = len(self.poses) + n
        assert self.spin_until(lambda: len(self.poses) >= target, timeout), "ee_pose stopped"
        return self.poses[-1]

    def wait_settled(self, tol: float = 5e-4, window: int = 5, timeout: float = 15.0
                     ) -> np.ndarray:
        """Wait until the ee moved less than ``tol`` over ``window`` consecutive poses."""
        def settled() -> bool:
            recent = self.poses[-window:]
            return len(recent) == window and float(np.ptp(np.array(recent), axis=0).max()) < tol
        self.wait_poses(window, timeout)
        assert self.spin_until(settled, timeout), "the arm did not settle"
        return self.poses[-1]

    def send_chunk(self, names: Sequence[str], rows: Sequence[Sequence[float]]) -> None:
        msg = JointTrajectory(joint_names=list(names))
        msg.header.stamp = self.node.get_clock().now().to_msg()
        for i, row in enumerate(rows):
            t = (i + 1) / RATE_HZ
            msg.points.append(JointTrajectoryPoint(
                positions=[float(v) for v in row],
                time_from_start=Duration(sec=int(t), nanosec=int(round(t % 1 * 1e9)))))
        self.chunks.publish(msg)

    def call(self, srv_type: Any, name: str, request: Any, timeout: float = 15.0) -> Any:
        client = self.node.create_client(srv_type, name)
        try:
            assert self.spin_until(lambda: client.service_is_ready(), timeout), \
                f"{name} never became available"
            future = client.call_async(request)
            assert self.spin_until(future.done, timeout), f"{name} did not answer"
            return future.result()
        finally:
            self.node.destroy_client(client)

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)


@pytest.fixture(scope="module")
def bridge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bridge]:
    proc = Bridge(tmp_path_factory.mktemp("sim_bridge_ros_log"))
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def probe(bridge: Bridge) -> Iterator[Probe]:
    saved = os.environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE")
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"  # read by rclpy.init
    try:
        node = Probe()
        yield node
        node.close()
    finally:
        if saved is None:
            os.environ.pop("ROS_AUTOMATIC_DISCOVERY_RANGE")
        else:
            os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = saved


@pytest.fixture(scope="module")
def ready(bridge: Bridge, probe: Probe) -> Probe:
    """The probe once every bridge output (both cameras, joints, pose, instruction) arrived."""
    keys = ("agentview", "wrist", "joints", "pose", "success", "instruction")
    arrived = probe.spin_until(lambda: all(k in probe.latest for k in keys)
                               or bridge.proc.poll() is not None, STARTUP_TIMEOUT_S)
    missing = [k for k in keys if k not in probe.latest]
    assert arrived and not missing, f"missing {missing}; bridge log:\n{bridge.log()}"
    return probe


def alive(bridge: Bridge) -> None:
    assert bridge.proc.poll() is None, f"bridge died:\n{bridge.log()}"


def test_bridge_publishes_cameras_joints_pose_and_instruction(ready: Probe) -> None:
    for view, frame in (("agentview", "agentview_camera"), ("wrist", "wrist_camera")):
        img = ready.latest[view]
        assert (img.encoding, img.height, img.width, img.header.frame_id) == (
            "rgb8", 224, 224, frame)
        assert image_msg_to_rgb(img).std() > 10  # a rendered scene, not a blank buffer
    joints = ready.latest["joints"]
    assert list(joints.name) == [f"panda_joint{i}" for i in range(1, 8)] + [
        "panda_finger_joint1", "panda_finger_joint2"]
    assert len(joints.position) == len(joints.velocity) == 9
    pose = ready.latest["pose"]
    assert pose.header.frame_id == "panda_link0"
    assert 0.2 < pose.pose.position.x < 0.8 and 0.0 < pose.pose.position.z < 0.4
    assert ready.latest["instruction"].data == "pick up the red cube"
    assert ready.latest["success"].data is False


def test_plus_x_chunk_moves_the_end_effector_along_plus_x(bridge: Bridge, ready: Probe
                                                          ) -> None:
    start = ready.wait_settled()
    ready.send_chunk(ACTION_NAMES, [[1.0, 0, 0, 0, 0, 0, -1.0]] * 10)
    ready.wait_poses(10)
    end = ready.wait_settled()
    delta = end - start
    # 10 ticks of a full +x command: ~0.11 m in the sim (see test_sim_arm)
    assert 0.05 < delta[0] < 0.5, delta
    assert abs(delta[1]) < 0.2 * delta[0] and abs(delta[2]) < 0.2 * delta[0], delta
    alive(bridge)


def test_malformed_chunks_are_rejected_and_the_arm_holds(bridge: Bridge, ready: Probe
                                                         ) -> None:
    start = ready.wait_settled()
    ready.send_chunk(ACTION_NAMES, [[math.nan, 0, 0, 0, 0, 0, 1.0]] + [[1.0] * 7] * 9)
    ready.send_chunk(["a", "b", "c", "d", "e", "f", "g"], [[1.0] * 7] * 10)
    ready.send_chunk(ACTION_NAMES, [[1.0] * 6] * 10)
    positions = [ready.wait_poses(1) for _ in range(20)]  # a second of executed ticks
    drift = np.abs(np.array(positions) - start).max()
    assert drift < 2e-3, f"the arm moved {drift:.4f} m on garbage"
    assert ready.latest["joints"].position[7] > 0.03, "the gripper must stay open"
    alive(bridge)
    assert "rejected action chunk" in bridge.log()


def test_permuted_names_are_executed_in_the_right_dimension(bridge: Bridge, ready: Probe
                                                            ) -> None:
    start = ready.wait_settled()
    names = list(reversed(ACTION_NAMES))  # gripper, yaw, pitch, roll, z, y, x
    ready.send_chunk(names, [[-1.0, 0, 0, 0, 1.0, 0, 0]] * 6)  # +z
    ready.wait_poses(6)
    delta = ready.wait_settled() - start
    assert delta[2] > 0.03 and abs(delta[0]) < 0.3 * delta[2], delta
    alive(bridge)


def test_instruction_parameter_is_settable_and_republished(ready: Probe) -> None:
    text = "lift the red block"
    value = ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=text)
    request = SetParameters.Request(parameters=[Parameter(name="instruction", value=value)])
    result = ready.call(SetParameters, "/specprune_sim_arm/set_parameters", request)
    assert result.results[0].successful, result.results[0].reason
    assert ready.spin_until(lambda: ready.latest["instruction"].data == text, 10.0)
    request.parameters = [Parameter(name="task", value=value)]
    result = ready.call(SetParameters, "/specprune_sim_arm/set_parameters", request)
    assert not result.results[0].successful and "read-only" in result.results[0].reason
    padded = ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=" lift ")
    request.parameters = [Parameter(name="instruction", value=padded)]
    result = ready.call(SetParameters, "/specprune_sim_arm/set_parameters", request)
    assert not result.results[0].successful and "whitespace" in result.results[0].reason


def test_fixed_initial_states_are_refused_on_our_own_task(ready: Probe) -> None:
    value = ParameterValue(type=ParameterType.PARAMETER_INTEGER, integer_value=3)
    request = SetParameters.Request(parameters=[Parameter(name="reset_init_state",
                                                          value=value)])
    result = ready.call(SetParameters, "/specprune_sim_arm/set_parameters", request)
    assert not result.results[0].successful
    assert "has no fixed initial states" in result.results[0].reason


def test_reset_service_starts_a_new_episode(bridge: Bridge, ready: Probe) -> None:
    ready.send_chunk(ACTION_NAMES, [[0, 0, 1.0, 0, 0, 0, 1.0]] * 200)  # long, interrupted
    ready.wait_poses(5)
    response = ready.call(Trigger, "/specprune_sim_arm/reset", Trigger.Request())
    assert response.success, response.message
    assert "episode 1" in response.message
    settled = ready.wait_settled()
    later = ready.wait_poses(20)
    # the chunk was dropped: the arm stays at its start pose (z about 0.12 m above the base)
    assert abs(later[2] - settled[2]) < 2e-3 and settled[2] < 0.2, (settled, later)
    assert ready.latest["joints"].position[7] > 0.03, "a new episode starts with an open hand"
    alive(bridge)


def test_reset_seed_parameter_replays_one_seed_until_cleared(bridge: Bridge, ready: Probe
                                                             ) -> None:
    def set_reset_seed(value: int) -> None:
        request = SetParameters.Request(parameters=[Parameter(name="reset_seed", value=(
            ParameterValue(type=ParameterType.PARAMETER_INTEGER, integer_value=value)))])
        result = ready.call(SetParameters, "/specprune_sim_arm/set_parameters", request)
        assert result.results[0].successful, result.results[0].reason

    set_reset_seed(7)
    for _ in range(2):
        response = ready.call(Trigger, "/specprune_sim_arm/reset", Trigger.Request())
        assert response.success and response.message.endswith("(seed 7)"), response.message
    set_reset_seed(-1)
    response = ready.call(Trigger, "/specprune_sim_arm/reset", Trigger.Request())
    assert "(seed 7)" not in response.message, response.message
    alive(bridge)


def test_sigint_stops_the_bridge_with_exit_code_0(bridge: Bridge, ready: Probe) -> None:
    assert bridge.stop(signal.SIGINT, timeout=20.0) == 0, bridge.log()
    assert "Traceback" not in bridge.log(), bridge.log()
    # a callback queued at shutdown failing on the executor's destroyed guard condition
    assert "never retrieved" not in bridge.log(), bridge.log()


@pytest.mark.parametrize("name", ["sim_spatial_2", "sim_object_1", "sim_goal_3", "sim_long_1"])
def test_a_tabletop_suite_task_runs_behind_the_same_topics(tmp_path: Path, name: str) -> None:
    """One task of each LIBERO-shaped suite (sim_<suite>_<i>) in the same bridge: its
    instruction, both cameras, and a +x chunk moving the hand (a domain of its own: the
    module's bridge may still be up when this test runs alone)."""
    task = TABLETOP_TASKS[name]
    domain = 200 + os.getpid() % 30  # DDS allows domains up to 232
    saved = os.environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE")
    bridge, probe = None, None
    try:
        bridge = Bridge(tmp_path, ("-p", f"task:={task.name}"), domain)
        os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
        probe = Probe(domain)
        keys = ("agentview", "wrist", "pose", "instruction")
        assert probe.spin_until(lambda: all(k in probe.latest for k in keys)
                                or bridge.proc.poll() is not None, STARTUP_TIMEOUT_S), \
            bridge.log()
        assert probe.latest["instruction"].data == task.instruction
        assert image_msg_to_rgb(probe.latest["agentview"]).std() > 10
        start = probe.wait_settled()
        probe.send_chunk(ACTION_NAMES, [[1.0, 0, 0, 0, 0, 0, -1.0]] * 8)
        moved = probe.wait_poses(15)
        assert moved[0] - start[0] > 0.02, (start, moved)
        alive(bridge)
    finally:
        if probe is not None:
            probe.close()
        if bridge is not None:
            assert bridge.stop(signal.SIGINT) == 0, bridge.log()
        if saved is None:
            os.environ.pop("ROS_AUTOMATIC_DISCOVERY_RANGE")
        else:
            os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = saved
