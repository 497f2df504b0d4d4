"""The simulated arm renders its cameras only on camera ticks, and only for subscribers.

Rendering two views in software is most of a bridge tick on a CPU (pick_color at 224 px:
~60 ms against ~19 ms of physics), so the bridge renders them at ``camera_rate_hz`` (10 Hz:
every 2nd tick of 20) and only while someone subscribes to a view, and keeps publishing
the joint states and the ee pose every tick. Checked across a real process boundary on the
bridge's /clock (stamps exact) and, for the subscriber rule, in-process with the bridge's
own simulator wrapped to log which ticks it was asked to render.
"""
import math
import time
import warnings
from typing import Callable, Dict, Iterator, List, Tuple

import numpy as np
import pytest
import rclpy
import yaml
from rclpy.context import Context
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # lark, pulled in by the msg packages
    from geometry_msgs.msg import PoseStamped
    from sensor_msgs.msg import Image, JointState

from ros_helpers import REPO, NodeProcess, Probe, domain_id, probe_fixture
from specprune_ros.node import parameters as policy_parameters
from specprune_ros.sim import sim_bridge_node
from specprune_ros.sim.sim_arm import SimArm, SimObservation
from specprune_ros.sim.sim_bridge_node import SimBridgeNode, camera_every, is_camera_tick

pytestmark = pytest.mark.filterwarnings("ignore:module 'sre_:DeprecationWarning")
TICK_NS = 50_000_000  # config/sim_arm.yaml control_rate_hz 20
VIEWS = ("/camera/agentview/image_raw", "/camera/wrist/image_raw")
START_TIMEOUT_S = 90.0


def _yaml(relative: str, node: str) -> Dict:
    return yaml.safe_load((REPO / relative).read_text())[node]["ros__parameters"]


# ------------------------------------------------------------------ the rule, no ROS graph
def test_camera_ticks_are_every_kth_tick_from_the_reset() -> None:
    assert camera_every(20.0, 10.0) == 2 and camera_every(20.0, 5.0) == 4
    assert camera_every(20.0, 0.0) == 1 and camera_every(20.0, 50.0) == 1
    assert [s for s in range(9) if is_camera_tick(s, 2)] == [0, 2, 4, 6, 8]
    assert all(is_camera_tick(s, 1) for s in range(5))


def test_default_camera_rate_feeds_every_step_the_policy_node_may_take() -> None:
    """The bridge's default frame rate is no lower than the policy node's default step
    rate: each step can have a frame pair it has not used."""
    bridge = _yaml("config/sim_arm.yaml", sim_bridge_node.NODE_NAME)
    policy = _yaml("config/policy.yaml", policy_parameters.NODE_NAME)
    assert 0.0 < policy["inference_rate_hz"] <= bridge["camera_rate_hz"]
    assert camera_every(bridge["control_rate_hz"], bridge["camera_rate_hz"]) == 2


# ------------------------------------------------------------------ who the cameras render for
class RenderLog:
    """The bridge's own SimArm, with a log of (tick, render) for every step it is asked for."""

    def __init__(self, arm: SimArm) -> None:
        self.arm = arm
        self.calls: List[Tuple[int, bool]] = []

    def __getattr__(self, name: str):
        return getattr(self.arm, name)

    def step(self, action: np.ndarray, render: bool = True) -> SimObservation:
        obs = self.arm.step(action, render=render)
        self.calls.append((obs.step, render))
        return obs


def _wait(condition: Callable[[], bool], timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


@pytest.fixture
def in_process_bridge(monkeypatch: pytest.MonkeyPatch
                      ) -> Iterator[Tuple[SimBridgeNode, RenderLog, Context]]:
    logs: List[RenderLog] = []
    real_make_arm = sim_bridge_node.make_arm

    def make_arm(params):
        logs.append(RenderLog(real_make_arm(params)))
        return logs[-1]

    monkeypatch.setattr(sim_bridge_node, "make_arm", make_arm)
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    context = Context()
    rclpy.init(args=["--ros-args", "-p", "camera_size:=64"], context=context,
               domain_id=domain_id(83))
    node = SimBridgeNode(context=context)
    try:
        yield node, logs[0], context
    finally:
        node.stop_ticking()
        node.close()
        node.destroy_node()
        rclpy.try_shutdown(context=context)


def test_cameras_render_only_on_camera_ticks_while_a_view_is_subscribed(
        in_process_bridge: Tuple[SimBridgeNode, RenderLog, Context]) -> None:
    node, arm, context = in_process_bridge
    assert _wait(lambda: len(arm.calls) >= 6), "the bridge did not tick"
    assert not any(render for _, render in arm.calls), arm.calls  # nobody is looking
    viewer = Node("viewer", context=context)
    try:
        viewer.create_subscription(Image, VIEWS[1], lambda msg: None, qos_profile_sensor_data)
        assert _wait(lambda: any(render for _, render in arm.calls)), "never rendered"
        first = next(i for i, (_, render) in enumerate(arm.calls) if render)
        assert _wait(lambda: len(arm.calls) >= first + 8)
        watched = arm.calls[first:first + 8]
        # from then on every camera tick renders, and no other tick does
        assert [render for _, render in watched] == [is_camera_tick(s, 2) for s, _ in watched]
        assert watched[0][0] % 2 == 0, watched
    finally:
        viewer.destroy_node()


# ------------------------------------------------------------------ the real bridge, on /clock
@pytest.fixture(scope="module")
def clocked_bridge(tmp_path_factory: pytest.TempPathFactory
                   ) -> Iterator[Tuple[NodeProcess, Probe]]:
    """config/sim_arm.yaml with /clock, and a probe recording joint / pose / image stamps."""
    tmp = tmp_path_factory.mktemp("camera_rate")
    domain = domain_id(97)
    bridge = NodeProcess("specprune_ros.sim.sim_bridge_node",
                         ["--ros-args", "--params-file", "config/sim_arm.yaml",
                          "-p", "publish_clock:=true"], tmp, domain, "sim")
    try:
        for probe in probe_fixture("camera_rate_probe", domain):
            probe.stamps = {"joints": [], "pose": [], **{v: [] for v in VIEWS}}
            for key, kind, topic, qos in [
                    ("joints", JointState, "/joint_states", 100),
                    ("pose", PoseStamped, "/ee_pose", 100)] + [
                    (view, Image, view, qos_profile_sensor_data) for view in VIEWS]:
                probe.node.create_subscription(kind, topic, _stamp_recorder(
                    probe.stamps[key]), qos)
            yield bridge, probe
    finally:
        bridge.stop()


def _stamp_recorder(into: List[int]) -> Callable:
    return lambda msg: into.append(msg.header.stamp.sec * 10 ** 9 + msg.header.stamp.nanosec)


def test_frames_come_every_second_tick_and_joints_and_pose_every_tick(
        clocked_bridge: Tuple[NodeProcess, Probe]) -> None:
    bridge, probe = clocked_bridge
    stamps: Dict[str, List[int]] = probe.stamps
    assert probe.spin_until(lambda: all(stamps[v] for v in VIEWS), START_TIMEOUT_S,
                            bridge.alive), f"no frames:\n{bridge.log()}"
    start = {key: len(values) for key, values in stamps.items()}
    assert probe.spin_until(lambda: len(stamps["joints"]) - start["joints"] >= 40, 120.0,
                            bridge.alive), f"the bridge stopped ticking:\n{bridge.log()}"
    probe.spin_for(0.5)  # the last tick's frames and pose
    window = {key: values[start[key]:] for key, values in stamps.items()}
    joints = window["joints"]
    # joint states and poses: every simulated tick, one control period apart
    assert set(np.diff(joints)) == {TICK_NS}, np.diff(joints)
    assert set(window["pose"]) >= set(joints[:-1])
    ticks = len(joints)
    for view in VIEWS:
        frames = [s for s in window[view] if joints[0] <= s <= joints[-1]]
        # each frame carries the stamp of the tick it was rendered on, ...
        assert set(frames) <= set(joints), view
        # ... a whole number of camera periods (2 ticks) after the view's first frame
        assert all((s - stamps[view][0]) % (2 * TICK_NS) == 0 for s in frames), (
            view, [(s - stamps[view][0]) / TICK_NS for s in frames])
        # one frame per camera tick (sensor-data QoS may drop one now and then)
        assert math.ceil(ticks / 2) - 2 <= len(frames) <= math.ceil(ticks / 2), (
            view, len(frames), ticks)
