"""The simulator bridge on LIBERO's tasks, across a real process boundary (issue #19).

One bridge process per suite (task 0 of libero_spatial, libero_object, libero_goal and
libero_10: the few ticks of one task per suite CI runs), on its own /clock, with small
cameras; this process asserts on what crosses the wire: the topics the policy node and the
executor read, frames rendered only on the camera ticks, a twist that moves the end
effector, a gripper command read as OpenVLA-OFT's released LIBERO checkpoints give it
(0 close .. 1 open), ~/reset on a given seed. Skipped where .venv-libero is not installed.
"""
from typing import Any, Dict, Iterator, List

import numpy as np
import pytest

from ros_helpers import NodeProcess, Probe, domain_id, probe_fixture
from specprune_ros.node.ros_image import image_msg_to_rgb
from specprune_ros.sim.libero_env import libero_python

from geometry_msgs.msg import PoseStamped, TwistStamped  # noqa: E402 (lark filtered above)
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from rclpy.qos import qos_profile_sensor_data  # noqa: E402
from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue  # noqa: E402
from rcl_interfaces.srv import SetParameters  # noqa: E402
from sensor_msgs.msg import Image, JointState  # noqa: E402
from std_msgs.msg import Bool, Float64, String  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402

pytestmark = [
    pytest.mark.skipif(libero_python() is None, reason=".venv-libero is not installed "
                       "(scripts/setup.sh installs it; SPECPRUNE_SKIP_LIBERO=1 skipped it)"),
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:module 'sre_:DeprecationWarning"),
]
#: Task 0's language in each suite (LIBERO's benchmark order).
SUITES: Dict[str, str] = {
    "libero_spatial": "pick up the black bowl between the plate and the ramekin and place "
                      "it on the plate",
    "libero_object": "pick up the alphabet soup and place it in the basket",
    "libero_goal": "open the middle drawer of the cabinet",
    "libero_10": "put both the alphabet soup and the tomato sauce in the basket",
}
CAMERA_SIZE = 64
CAMERA_EVERY = 4  # config/libero_arm.yaml: camera_rate_hz 5 of LIBERO's 20 Hz
TICK_NS = 50_000_000
START_TIMEOUT_S = 240.0  # a LIBERO build takes ~7 s alone, far more on a busy 2-core machine
RESET_TIMEOUT_S = 120.0  # a hard reset rebuilds the scene
KEYS = ("agentview", "wrist", "joints", "pose", "success", "instruction")


def _stamp_ns(msg: Any) -> int:
    return msg.header.stamp.sec * 10 ** 9 + msg.header.stamp.nanosec


@pytest.fixture(scope="module", params=list(SUITES))
def ready(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[Probe]:
    """A probe once every output of a bridge on ``<suite>:0`` arrived."""
    suite = request.param
    domain = domain_id(70 + list(SUITES).index(suite))
    bridge = NodeProcess(
        "specprune_ros.sim.sim_bridge_node",
        ["--ros-args", "--params-file", "config/sim_arm.yaml", "--params-file",
         "config/libero_arm.yaml", "-p", f"task:={suite}:0", "-p", "command_input:=twist",
         "-p", f"camera_size:={CAMERA_SIZE}", "-p", "publish_clock:=true",
         "-p", "gripper_convention:=openvla_oft"],
        tmp_path_factory.mktemp(f"libero_bridge_{suite}"), domain, "bridge")
    try:
        for probe in probe_fixture(f"libero_bridge_probe_{suite}", domain):
            _record(probe)
            probe.suite, probe.bridge = suite, bridge
            arrived = probe.spin_until(lambda: all(k in probe.latest for k in KEYS),
                                       START_TIMEOUT_S, alive=bridge.alive)
            missing = [k for k in KEYS if k not in probe.latest]
            assert arrived, f"missing {missing}; bridge log:\n{bridge.log()}"
            yield probe
            assert bridge.alive(), bridge.log()
    finally:
        bridge.stop()


def _record(probe: Probe) -> None:
    """Subscribe the probe to every output; keep the latest of each, pose and image stamps."""
    probe.latest, probe.poses = {}, []
    probe.stamps: Dict[str, List[int]] = {"pose": [], "agentview": []}
    latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL,
                         reliability=ReliabilityPolicy.RELIABLE)
    for key, kind, topic, qos in [
            ("agentview", Image, "/camera/agentview/image_raw", qos_profile_sensor_data),
            ("wrist", Image, "/camera/wrist/image_raw", qos_profile_sensor_data),
            ("joints", JointState, "/joint_states", 10), ("pose", PoseStamped, "/ee_pose", 50),
            ("success", Bool, "/task_success", 10),
            ("instruction", String, "/instruction", latched)]:
        def record(msg: Any, key: str = key) -> None:
            probe.latest[key] = msg
            if key == "pose":
                p = msg.pose.position
                probe.poses.append(np.array([p.x, p.y, p.z]))
            if key in probe.stamps:
                probe.stamps[key].append(_stamp_ns(msg))
        probe.node.create_subscription(kind, topic, record, qos)
    probe.twists = probe.node.create_publisher(TwistStamped, "/specprune/ee_twist", 10)
    probe.gripper = probe.node.create_publisher(Float64, "/specprune/gripper", 10)


def _wait_poses(probe: Probe, n: int, timeout: float = 120.0) -> np.ndarray:
    """The newest ee position once ``n`` more poses arrived."""
    target = len(probe.poses) + n
    assert probe.spin_until(lambda: len(probe.poses) >= target, timeout,
                            alive=probe.bridge.alive), probe.bridge.log()
    return probe.poses[-1]


def test_the_libero_bridge_publishes_frames_state_and_the_task_language(ready: Probe) -> None:
    for view, frame_id in (("agentview", "agentview_camera"), ("wrist", "wrist_camera")):
        img = ready.latest[view]
        assert (img.encoding, img.height, img.width, img.header.frame_id) == (
            "rgb8", CAMERA_SIZE, CAMERA_SIZE, frame_id)
        assert image_msg_to_rgb(img).std() > 10  # a rendered scene, not the blank stub
    joints = ready.latest["joints"]
    assert list(joints.name) == [f"panda_joint{i}" for i in range(1, 8)] + [
        "panda_finger_joint1", "panda_finger_joint2"]
    assert len(joints.position) == len(joints.velocity) == 9
    assert joints.position[7] > 0.03  # the hand starts open
    pose = ready.latest["pose"]
    assert pose.header.frame_id == "world"  # LIBERO's world frame (floor or table scenes)
    assert 0.1 < pose.pose.position.z < 1.5 and abs(pose.pose.position.y) < 0.1, pose
    assert ready.latest["instruction"].data == SUITES[ready.suite]
    assert ready.latest["success"].data is False


def test_cameras_are_rendered_on_every_fourth_tick_only(ready: Probe) -> None:
    _wait_poses(ready, 3 * CAMERA_EVERY)
    images = [t for t in ready.stamps["agentview"] if t >= ready.stamps["pose"][0]]
    assert len(images) >= 2 and set(images) <= set(ready.stamps["pose"])
    gaps = np.diff(images)
    # best-effort images may be lost on the way, never rendered between camera ticks
    assert gaps.min() == CAMERA_EVERY * TICK_NS and np.all(gaps % (CAMERA_EVERY * TICK_NS) == 0)


def test_an_upward_twist_lifts_the_end_effector(ready: Probe) -> None:
    start = _wait_poses(ready, 2)
    up = TwistStamped()
    up.header.frame_id = "world"
    up.twist.linear.z = 0.1  # 5 mm per 50 ms tick

    def publish() -> None:
        up.header.stamp = ready.now().to_msg()
        ready.twists.publish(up)
        ready.gripper.publish(Float64(data=1.0))  # OpenVLA-OFT's "open"
    ready.every.append(publish)
    try:
        end = _wait_poses(ready, 20)
    finally:
        ready.every.remove(publish)
    assert ready.latest["joints"].position[7] > 0.03  # still open
    delta = end - start
    # LIBERO's OSC (robosuite 1.4) puts each tick's goal 5 mm from the measured pose, not from
    # the previous goal: the hand trails the command (2.3 cm in 20 ticks, not 10 cm); held
    # still, it drifts < 2 mm (test_sim_bridge)
    assert delta[2] > 0.01, delta
    assert abs(delta[0]) < 0.3 * delta[2] and abs(delta[1]) < 0.3 * delta[2], delta


def test_a_zero_gripper_command_closes_the_hand(ready: Probe) -> None:
    opened = ready.latest["joints"].position[7]
    ready.every.append(lambda: ready.gripper.publish(Float64(data=0.0)))  # "close"
    try:
        _wait_poses(ready, 15)
    finally:
        ready.every.clear()
    closed = ready.latest["joints"].position[7]
    assert closed < opened - 0.015, (opened, closed)  # open ~0.04 m per finger


def _set_integer(probe: Probe, name: str, value: int) -> None:
    request = SetParameters.Request(parameters=[Parameter(name=name, value=ParameterValue(
        type=ParameterType.PARAMETER_INTEGER, integer_value=value))])
    result = probe.call(SetParameters, "/specprune_sim_arm/set_parameters", request)
    assert result.results[0].successful, result.results[0].reason


def test_reset_starts_an_episode_on_a_seed_or_a_fixed_initial_state(ready: Probe) -> None:
    if ready.suite != "libero_object":
        pytest.skip("~/reset is checked on libero_object only (a hard reset rebuilds the "
                    "scene: ~7 s and more per suite)")
    _set_integer(ready, "reset_seed", 1234)
    lifted = _wait_poses(ready, 1)
    response = ready.call(Trigger, "/specprune_sim_arm/reset", Trigger.Request(),
                          RESET_TIMEOUT_S)
    assert response.success and response.message.endswith("(seed 1234)"), response.message
    after = _wait_poses(ready, 3)
    assert after[2] < lifted[2] - 0.02, (lifted, after)  # back at the start height
    assert ready.latest["joints"].position[7] > 0.03
    assert ready.latest["instruction"].data == SUITES["libero_object"]
    _set_integer(ready, "reset_init_state", 49)  # the claim set's last
    response = ready.call(Trigger, "/specprune_sim_arm/reset", Trigger.Request(),
                          RESET_TIMEOUT_S)
    assert response.success and response.message.endswith("(initial state 49)"), \
        response.message
