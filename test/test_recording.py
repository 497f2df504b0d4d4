"""specprune-record and the bag files: the recording contract, splitting, what survives a
kill or a truncated file, and the recorder process stopped mid-episode by a signal."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Iterator
from xml.etree import ElementTree

import numpy as np
import pytest

from specprune.model.folder_hash import checkpoint_hash
from specprune_ros.node.bag_reader import BagError, decode, read_bag
from specprune_ros.node.bag_topics import (COMPRESSED, EPISODE_TOPIC, METADATA_KEY,
                                           recorded_topics)
from specprune_ros.node.bag_writer import BagWriter, SplitLimits
from specprune_ros.node.package_data import shipped_checkpoint
from specprune_ros.node.recorder import receive_transport, subscription_qos
from ros_helpers import REPO, NodeProcess, Probe, domain_id, ros_environment

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # lark, pulled in by the msg packages
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from rclpy.serialization import serialize_message
    from sensor_msgs.msg import Image, JointState
    from std_msgs.msg import String


def specs():
    return recorded_topics(["/a", "/b"], "raw", {}, clock=False)


def index(role: str) -> int:
    return [s.role for s in specs()].index(role)


def image_bytes(value: int = 0) -> bytes:
    return serialize_message(Image(height=224, width=224, encoding="rgb8", step=672,
                                   data=bytes([value]) * (224 * 224 * 3)))


# ------------------------------------------------------------------------------ contract
def test_the_recorder_imports_on_humble_where_event_handler_does_not_exist() -> None:
    """Humble's rclpy keeps QoSMessageLostInfo / SubscriptionEventCallbacks in qos_event
    (event_handler came with Iron): the recorder died with ModuleNotFoundError there, and
    policy.launch.py's record:=true shut the whole launch down with it."""
    code = ("import sys, types\n"
            "import rclpy.executors, rclpy.lifecycle, rclpy.node\n"  # rclpy's own imports
            "import rclpy.event_handler as moved\n"
            "humble = types.ModuleType('rclpy.qos_event')\n"  # Humble's layout of the two
            "humble.QoSMessageLostInfo = moved.QoSMessageLostInfo\n"
            "humble.SubscriptionEventCallbacks = moved.SubscriptionEventCallbacks\n"
            "sys.modules['rclpy.qos_event'], sys.modules['rclpy.event_handler'] = humble, None\n"
            "from specprune_ros.node import recorder\n"
            "assert recorder.SubscriptionEventCallbacks is moved.SubscriptionEventCallbacks\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=str(REPO)), cwd=REPO,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_compressed_transport_records_the_compressed_topics() -> None:
    cams = [s for s in recorded_topics(["/cam0"], "compressed", {}, False)
            if s.role == "camera0"]
    assert [(s.topic, s.msgtype) for s in cams] == [("/cam0/compressed", COMPRESSED)]


def test_unknown_role_and_topic_twice_are_refused_with_the_reason() -> None:
    with pytest.raises(ValueError, match="unknown topic roles.*'bogus'"):
        recorded_topics(["/a"], "raw", {"bogus": "/x"}, False)
    with pytest.raises(ValueError, match=r"topics listed twice: \['/joint_states'\]"):
        recorded_topics(["/a"], "raw", {"ee_pose": "/joint_states"}, False)
    with pytest.raises(ValueError, match="camera_transport"):
        recorded_topics(["/a"], "theora", {}, False)


def test_clock_is_recorded_only_on_simulated_time() -> None:
    assert "/clock" in [s.topic for s in recorded_topics(["/a"], "raw", {}, True)]
    assert "/clock" not in [s.topic for s in recorded_topics(["/a"], "raw", {}, False)]


# ------------------------------------------------------------------------------ files
def test_bag_splits_by_size_and_lists_every_file(tmp_path: Path) -> None:
    writer = BagWriter(str(tmp_path / "bag"), specs(), SplitLimits(max_bytes=1_000_000))
    writer.write(index("instruction"), 1, serialize_message(String(data="pick")))
    for k in range(20):
        writer.write(index("camera0"), 10 + k, image_bytes(k))
    writer.close()
    assert len(writer.files) == 3  # 150 kB images, a new file after 1 MB
    bag = read_bag(str(tmp_path / "bag"))
    frames = [decode(m) for m in bag.on("/a")]
    assert [int(f.data[0]) for f in frames] == list(range(20))
    # the latched instruction starts every file: one file alone still has it
    assert bag.counts()["/instruction"] == 3 and not bag.problems


def test_killed_recording_keeps_its_finished_files(tmp_path: Path) -> None:
    writer = BagWriter(str(tmp_path / "bag"), specs(), SplitLimits(max_bytes=1_000_000))
    for k in range(12):
        writer.write(index("camera0"), 10 + k, image_bytes(k))
    # no close(): the process died while the second file was written
    bag = read_bag(str(tmp_path / "bag"))
    assert bag.counts()["/a"] == 7  # the first file: closed at 1 MB
    assert len(bag.problems) == 1 and ".writing_1" in bag.problems[0]
    assert "interrupted" in bag.problems[0]


def test_truncated_file_is_named_and_the_others_are_read(tmp_path: Path) -> None:
    writer = BagWriter(str(tmp_path / "bag"), specs(), SplitLimits(max_bytes=1_000_000))
    for k in range(20):
        writer.write(index("camera0"), 10 + k, image_bytes(k))
    writer.close()
    damaged = tmp_path / "bag" / writer.files[1]
    damaged.write_bytes(damaged.read_bytes()[:5000])
    bag = read_bag(str(tmp_path / "bag"))
    assert [p.split(":")[0] for p in bag.problems] == [str(damaged)]
    assert "truncated or damaged" in bag.problems[0]
    values = [int(decode(m).data[0]) for m in bag.on("/a")]
    assert values == list(range(7)) + list(range(14, 20))  # files 0 and 2


def test_a_bag_with_no_readable_file_is_an_error_naming_it(tmp_path: Path) -> None:
    (tmp_path / "x.mcap").write_bytes(b"not an mcap")
    with pytest.raises(BagError, match="x.mcap"):
        read_bag(str(tmp_path / "x.mcap"))
    with pytest.raises(BagError, match="does not exist"):
        read_bag(str(tmp_path / "nothing"))


@pytest.mark.skipif(shutil.which("ros2") is None,
                    reason="needs the ros2 command (ros2cli + rosbag2), which comes only with a "
                           "ROS 2 installation, not from PyPI")
def test_ros2_bag_info_reads_a_split_recording(tmp_path: Path) -> None:
    writer = BagWriter(str(tmp_path / "bag"), specs(), SplitLimits(max_bytes=1_000_000))
    for k in range(20):
        writer.write(index("camera0"), 10 + k, image_bytes(k))
    writer.close()
    out = subprocess.run(["ros2", "bag", "info", str(tmp_path / "bag")], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "Messages: 20" in out.stdout or "Messages:            20" in out.stdout


# ------------------------------------------------------------------------------ the process
@pytest.fixture
def probe() -> Iterator[Probe]:
    # named as the policy node: the recorder fetches its parameters for the metadata
    p = Probe("specprune_policy", domain_id(41))
    p.node.declare_parameter("model", shipped_checkpoint())
    p.node.declare_parameter("prune.keep_scale", 1.5)
    yield p
    p.close()


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_mid_episode_closes_the_bag_with_every_message(tmp_path: Path, probe: Probe,
                                                              sig: int) -> None:
    bag_path = tmp_path / "bag"
    recorder = NodeProcess("specprune_ros.node.recorder", ["-o", str(bag_path)],
                           tmp_path / "log", domain_id(41), "recorder")
    node = probe.node
    joints = node.create_publisher(JointState, "/joint_states", 10)
    camera = node.create_publisher(Image, "/camera/agentview/image_raw", 10)
    episode = node.create_publisher(String, EPISODE_TOPIC, 10)
    latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL,
                         reliability=ReliabilityPolicy.RELIABLE)
    node.create_publisher(String, "/instruction", latched).publish(String(data="pick it"))
    assert probe.spin_until(lambda: all(p.get_subscription_count() for p in (
        joints, camera, episode)), 60.0, recorder.alive), recorder.log()
    episode.publish(String(data="reset"))
    tick = [0]

    def publish() -> None:
        msg = JointState(name=["panda_joint1"], position=[float(tick[0])])
        joints.publish(msg)
        if tick[0] % 3 == 0:
            camera.publish(Image(height=2, width=2, encoding="rgb8", step=6, data=bytes(12)))
        tick[0] += 1

    probe.every.append(publish)
    probe.spin_for(4.0)  # parameters fetched (asked every second), mid-episode
    recorder.proc.send_signal(sig)
    assert probe.spin_until(lambda: not recorder.alive(), 30.0)
    assert recorder.proc.returncode == 0, recorder.log()
    bag = read_bag(str(bag_path))
    assert not bag.problems
    ticks = [int(decode(m).position[0]) for m in bag.on("/joint_states")]
    # everything received before the signal, in order, nothing missing in between
    assert ticks == list(range(ticks[0], ticks[0] + len(ticks))) and len(ticks) > 20
    assert bag.counts()["/camera/agentview/image_raw"] > 5
    assert bag.counts()[EPISODE_TOPIC] == 1
    meta = json.loads(bag.custom_data[METADATA_KEY])
    assert meta["instructions"] == ["pick it"]
    assert meta["model_hash"] == checkpoint_hash(shipped_checkpoint())
    assert meta["messages"]["/joint_states"] == len(ticks)
    assert bag.policy_parameters()["values"]["prune.keep_scale"] == 1.5
    assert np.isfinite(ticks).all()


# ------------------------------------------------------------------------------ transport
@pytest.fixture
def temp_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """tempfile's folders go under this (empty) folder."""
    root = tmp_path / "tmp"
    root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    return root


def test_recorder_takes_local_data_over_udp_into_a_kernel_sized_buffer(temp_root: Path) -> None:
    with receive_transport({"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}, 4_194_304) as env:
        root = ElementTree.parse(env["FASTDDS_DEFAULT_PROFILES_FILE"]).getroot()
        assert len(list(temp_root.iterdir())) == 1
    ns = {"d": "http://www.eprosima.com"}
    assert root.find(".//d:transport_descriptor/d:type", ns).text == "UDPv4"
    assert root.find(".//d:receiveBufferSize", ns).text == "4194304"
    assert root.find(".//d:useBuiltinTransports", ns).text == "false"  # no shared memory
    assert root.find(".//d:defaultUnicastLocatorList//d:address", ns).text == "127.0.0.1"
    assert not list(temp_root.iterdir())  # the profile's folder is gone once closed


@pytest.mark.parametrize("environ", [{"ROS_AUTOMATIC_DISCOVERY_RANGE": "SUBNET"}, {}],
                         ids=["subnet", "default range"])
def test_recorder_sizes_builtin_udp_without_a_file_beyond_localhost(temp_root: Path,
                                                                    environ) -> None:
    with receive_transport(environ, 4_194_304) as env:
        assert env["FASTDDS_BUILTIN_TRANSPORTS"] == "UDPv4?sockets_size=4194304"
        assert not list(temp_root.iterdir())


@pytest.mark.parametrize("environ, rmem_max", [
    ({"FASTDDS_DEFAULT_PROFILES_FILE": "/etc/mine.xml"}, 4_194_304),
    ({"FASTDDS_BUILTIN_TRANSPORTS": "LARGE_DATA"}, 4_194_304),
    ({"RMW_IMPLEMENTATION": "rmw_cyclonedds_cpp"}, 4_194_304),
    ({"ROS_AUTOMATIC_DISCOVERY_RANGE": "OFF"}, 4_194_304),
    ({"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}, None),
], ids=["user profile", "user transports", "other rmw", "no discovery", "no rmem_max"])
def test_recorder_leaves_a_user_transport_setting_alone(
        temp_root: Path, environ, rmem_max) -> None:
    with receive_transport(environ, rmem_max) as env:
        assert env == environ
        assert not list(temp_root.iterdir())  # no folder made for nothing


def test_recorder_that_cannot_start_leaves_no_temporary_folder(tmp_path: Path) -> None:
    """The process itself: a refused output (the bag folder exists) exits 1, and the folder
    of its transport profile (LOCALHOST discovery) is removed on the way out."""
    (tmp_path / "bag").mkdir()
    temp_root = tmp_path / "tmp"
    temp_root.mkdir()
    env = dict(ros_environment(tmp_path / "log", domain_id(42)), TMPDIR=str(temp_root))
    for key in ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTDDS_BUILTIN_TRANSPORTS",
                "FASTRTPS_DEFAULT_PROFILES_FILE", "RMW_IMPLEMENTATION"):
        env.pop(key, None)
    out = subprocess.run([sys.executable, "-m", "specprune_ros.node.recorder", "-o",
                          str(tmp_path / "bag")],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "cannot start" in out.stdout + out.stderr
    assert not list(temp_root.iterdir())


def test_recorder_queues_hold_thirty_seconds_of_cameras_and_state() -> None:
    qos = {s.role: subscription_qos(s) for s in specs()}
    assert qos["camera0"].depth / 20.0 >= 30.0  # 20 Hz camera
    assert qos["camera0"].reliability == ReliabilityPolicy.BEST_EFFORT
    assert qos["joint_states"].depth / 50.0 >= 30.0  # 50 Hz state
    assert qos["joint_states"].reliability == ReliabilityPolicy.RELIABLE
