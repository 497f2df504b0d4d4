"""``specprune-record``: record what the policy node saw and did into a rosbag2 bag (MCAP).

    specprune-record -o bags/run1                     # the default topics, 1 GB files
    python -m specprune_ros.node.recorder --ros-args -p output:=bags/run1 \
        -p camera_transport:=compressed -p max_bag_duration_s:=300

Subscribes raw (serialized) to every topic of the recording contract
(``bag_topics.recorded_topics``: the cameras as the node takes them, joint state, ee pose,
instruction, action chunks, the executor's commands and gripper, the e-stop, /diagnostics,
/parameter_events, the episode marker the policy node publishes on ``~/reset``, and /clock
when ``use_sim_time``) and writes the CDR bytes as they come, stamped with this node's clock
(simulated time with ``use_sim_time``, as ``ros2 bag record --use-sim-time``): no
deserialise / serialise round trip. Files split by size / duration (``bag_writer``).

Metadata (``bag_topics.METADATA_KEY`` / ``PARAMETERS_KEY`` in metadata.yaml's custom_data
and in each file): package version, the recorder's settings, the topics, the instructions
seen, and every parameter of ``policy_node`` fetched over its parameter services once it
answers (later changes are in /parameter_events), with the model folder's content hash.

SIGINT / SIGTERM close the file in progress: every message received before the signal is
in the bag. A topic nobody publishes is simply empty.

Transport (Fast DDS, the default RMW): the recorder's participant takes data over UDP with a
receive buffer as large as the kernel allows (``net.core.rmem_max``), not over shared
memory. Over shared memory a message waits in the *publisher's* segment (512 kB by default:
three 224 x 224 images) until the recorder's receive thread takes it, and a busy machine that
leaves the recorder unscheduled for ~0.1 s loses images (and, past a reliable publisher's
10-message history, state): measured, every one of 212 lost messages in 90 s under two CPU
burners was reported lost by the DDS reader, none in the recorder's own queue or writer. A UDP
datagram waits in the recorder's socket buffer, filled by the kernel while the recorder
sleeps. ``FASTDDS_BUILTIN_TRANSPORTS`` or a Fast DDS XML profile set by the user wins.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import re
import sys
import tempfile
import threading
import time
import warnings
from typing import Any, Dict, Iterator, List, Optional

import rclpy
import rclpy.logging
try:  # Iron and later
    from rclpy.event_handler import QoSMessageLostInfo, SubscriptionEventCallbacks
except ImportError:  # Humble: the same classes, in qos_event
    from rclpy.qos_event import QoSMessageLostInfo, SubscriptionEventCallbacks
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter, parameter_value_to_python
from rclpy.qos import (DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy,
                       qos_profile_parameter_events)
from rclpy.serialization import deserialize_message
from rclpy.utilities import remove_ros_args

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # lark, pulled in by the msg packages
    from rcl_interfaces.srv import GetParameters, ListParameters
    from std_msgs.msg import String

from specprune.model.folder_hash import checkpoint_hash
from specprune_ros.node import lifecycle
from specprune_ros.node.bag_topics import (CAMERA_TOPICS, FIXED, LATCHED, METADATA_KEY,
                                           PARAMETERS_KEY, RELIABLE, SENSOR, TopicSpec,
                                           recorded_topics)
from specprune_ros.node.bag_writer import BagWriter, SplitLimits
from specprune_ros.node.lifecycle import StartupError
from specprune_ros.node.package_data import data_path
from specprune_ros.node.param_table import ParamSpec, declare_table

NODE_NAME = "specprune_recorder"
_POLL_S = 1.0  # ask the policy node for its parameters this often until it answers
_RMEM_MAX = "/proc/sys/net/core/rmem_max"
QUEUE_DEPTH = {SENSOR: 600, RELIABLE: 1500}  # per subscription, by QoS kind
_USER_TRANSPORT = ("FASTDDS_BUILTIN_TRANSPORTS", "FASTDDS_DEFAULT_PROFILES_FILE",
                   "FASTRTPS_DEFAULT_PROFILES_FILE")

PARAMS = (
    ParamSpec("output", "", "Bag directory to create (must not exist); empty: "
              "bags/specprune_<UTC date_time>", read_only=True),
    ParamSpec("camera_topics", list(CAMERA_TOPICS), "The policy node's camera topics, view "
              "order", read_only=True),
    ParamSpec("camera_transport", "raw", "Record the raw Images or <topic>/compressed, as the "
              "policy node takes them", read_only=True, choices=("raw", "compressed")),
    *(ParamSpec(f"{role}_topic", topic, f"{msgtype} topic recorded as {role}", read_only=True)
      for role, (topic, msgtype, _) in FIXED.items()),
    ParamSpec("max_bag_size_mb", 1024, "Start a new file after this many MB (0: never)",
              read_only=True, lo=0, hi=1_000_000),
    ParamSpec("max_bag_duration_s", 0.0, "Start a new file after this many seconds (0: never)",
              read_only=True, lo=0.0, hi=1e7),
    ParamSpec("policy_node", "/specprune_policy", "Node whose parameters the metadata records "
              "(empty: none)", read_only=True),
)


def package_version() -> str:
    """The <version> of package.xml (installed share directory, else the source tree)."""
    try:
        with open(data_path("package.xml"), encoding="utf-8") as f:
            found = re.search(r"<version>([^<]+)</version>", f.read())
    except OSError:
        return "unknown"
    return found.group(1).strip() if found else "unknown"


def message_class(msgtype: str) -> Any:
    """"sensor_msgs/msg/Image" -> the rclpy message class."""
    package, kind, name = msgtype.split("/")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return getattr(importlib.import_module(f"{package}.{kind}"), name)


def subscription_qos(spec: TopicSpec) -> QoSProfile:
    """Deep queues, so a slow moment does not lose messages; best effort for the cameras
    (their publishers' sensor-data QoS), transient local for the latched instruction.
    Depth: QUEUE_DEPTH (30 s of a 20 Hz camera / 50 Hz state), taken out by the Python
    thread up to 4.6 s (images) / 6.3 s (state) late in the 10-minute load measurement."""
    if spec.role == "parameter_events":
        return qos_profile_parameter_events
    if spec.qos == LATCHED:
        return QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL,
                          reliability=ReliabilityPolicy.RELIABLE)
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=QUEUE_DEPTH[spec.qos],
                      reliability=ReliabilityPolicy.BEST_EFFORT if spec.qos == SENSOR
                      else ReliabilityPolicy.RELIABLE)


#: Fast DDS profile of the recorder's participant: user data over UDP on 127.0.0.1 only, into
#: a receive buffer of {size} bytes. (rmw_fastrtps with ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
#: sets its own locators, and Fast DDS then ignores FASTDDS_BUILTIN_TRANSPORTS: measured.)
UDP_PROFILE = """<?xml version="1.0" encoding="UTF-8" ?>
<dds xmlns="http://www.eprosima.com">
  <profiles>
    <transport_descriptors>
      <transport_descriptor>
        <transport_id>specprune_recorder_udp</transport_id>
        <type>UDPv4</type>
        <receiveBufferSize>{size}</receiveBufferSize>
      </transport_descriptor>
    </transport_descriptors>
    <participant profile_name="specprune_recorder" is_default_profile="true">
      <rtps>
        <defaultUnicastLocatorList>
          <locator><udpv4><address>127.0.0.1</address></udpv4></locator>
        </defaultUnicastLocatorList>
        <userTransports><transport_id>specprune_recorder_udp</transport_id></userTransports>
        <useBuiltinTransports>false</useBuiltinTransports>
      </rtps>
    </participant>
  </profiles>
</dds>
"""


@contextlib.contextmanager
def receive_transport(environ: Dict[str, str], rmem_max: Optional[int]
                      ) -> Iterator[Dict[str, str]]:
    """The environment the recorder's participant is created with: Fast DDS takes user data
    over UDP into a receive buffer of ``rmem_max`` bytes (the kernel's cap). LOCALHOST
    discovery range: a default profile (UDP on 127.0.0.1 only) written into a temporary
    folder that exists while the context is open and is removed when it closes; other
    ranges: ``FASTDDS_BUILTIN_TRANSPORTS=UDPv4?sockets_size=...``, no file. ``environ``
    unchanged (and no folder) when another RMW is chosen, the user configured Fast DDS's
    transports, discovery is OFF or the cap is unknown."""
    scope = environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE", "").upper()
    if "fastrtps" not in environ.get("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp") or any(
            environ.get(k) for k in _USER_TRANSPORT) or not rmem_max or scope == "OFF":
        yield dict(environ)
    elif scope != "LOCALHOST":
        yield dict(environ, FASTDDS_BUILTIN_TRANSPORTS=f"UDPv4?sockets_size={rmem_max}")
    else:
        with tempfile.TemporaryDirectory(prefix="specprune_recorder_") as folder:
            path = os.path.join(folder, "specprune_recorder_fastdds.xml")
            with open(path, "w", encoding="utf-8") as f:
                f.write(UDP_PROFILE.format(size=rmem_max))
            yield dict(environ, FASTDDS_DEFAULT_PROFILES_FILE=path)


def kernel_rmem_max() -> Optional[int]:
    try:
        with open(_RMEM_MAX, encoding="ascii") as f:
            return int(f.read())
    except (OSError, ValueError):
        return None


def default_output() -> str:
    return os.path.join("bags", time.strftime("specprune_%Y%m%d_%H%M%S", time.gmtime()))


class ParameterFetcher:
    """All parameters of ``target`` over its list / get services, asked every _POLL_S until
    it answers; ``values`` then holds them and ``stamp_ns`` the node clock at the answer."""

    def __init__(self, node: Node, target: str, done: Any) -> None:
        self.node, self.target, self._done = node, target.rstrip("/"), done
        self.values: Optional[Dict[str, Any]] = None
        self.stamp_ns = 0
        self._list = node.create_client(ListParameters, f"{self.target}/list_parameters")
        self._get = node.create_client(GetParameters, f"{self.target}/get_parameters")
        self._pending: Optional[Any] = None
        self._timer = node.create_timer(_POLL_S, self._poll)

    def _poll(self) -> None:
        if self._pending is not None or not self._list.service_is_ready():
            return
        self._pending = self._list.call_async(ListParameters.Request())
        self._pending.add_done_callback(self._on_list)

    def _on_list(self, future: Any) -> None:
        names = list(future.result().result.names)
        self._pending = self._get.call_async(GetParameters.Request(names=names))
        self._pending.add_done_callback(lambda f: self._on_values(names, f))

    def _on_values(self, names: List[str], future: Any) -> None:
        self.values = {n: parameter_value_to_python(v)
                       for n, v in zip(names, future.result().values)}
        self.stamp_ns = self.node.get_clock().now().nanoseconds
        self._timer.cancel()
        self._done()


class Recorder(Node):
    """The recording node (see the module docstring)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        try:
            values = declare_table(self, PARAMS)
            self.specs = recorded_topics(
                values["camera_topics"], values["camera_transport"],
                {role: values[f"{role}_topic"] for role in FIXED},
                clock=bool(self.get_parameter("use_sim_time").value))
            limits = SplitLimits(int(values["max_bag_size_mb"]) * 1_000_000,
                                 int(float(values["max_bag_duration_s"]) * 1e9))
            self.bag = BagWriter(values["output"] or default_output(), self.specs, limits)
        except (ValueError, OSError) as exc:
            self.destroy_node()
            raise StartupError(str(exc)) from None
        self._lock = threading.Lock()
        self.instructions: List[str] = []
        self.metadata: Dict[str, Any] = {
            "package_version": package_version(), "recorder": values,
            "topics": [{"role": s.role, "topic": s.topic, "type": s.msgtype}
                       for s in self.specs],
            "policy_node": values["policy_node"], "model": None, "model_hash": None,
            "instructions": self.instructions, "started_ns": self._now_ns()}
        self._instruction_index = [i for i, s in enumerate(self.specs)
                                   if s.role == "instruction"][0]
        self.lost = [0] * len(self.specs)  # what each DDS reader reported lost
        self._subs = [self.create_subscription(
            message_class(s.msgtype), s.topic, lambda data, i=i: self._on_message(i, data),
            subscription_qos(s), raw=True, event_callbacks=SubscriptionEventCallbacks(
                message_lost=lambda info, i=i: self._on_lost(i, info)))
            for i, s in enumerate(self.specs)]
        self._update_metadata()
        self.parameters = ParameterFetcher(self, values["policy_node"], self._on_parameters) \
            if values["policy_node"] else None
        self.get_logger().info(f"recording {len(self.specs)} topics into {self.bag.path}")

    def _now_ns(self) -> int:
        return self.get_clock().now().nanoseconds

    def _on_message(self, index: int, data: bytes) -> None:
        self.bag.write(index, self._now_ns(), data)
        if index == self._instruction_index:
            text = deserialize_message(data, String).data
            with self._lock:
                if text not in self.instructions:
                    self.instructions.append(text)
            self._update_metadata()

    def _on_lost(self, index: int, info: QoSMessageLostInfo) -> None:
        self.lost[index] += info.total_count_change

    def _on_parameters(self) -> None:
        values = self.parameters.values
        self.bag.set_custom_data(PARAMETERS_KEY, json.dumps(
            {"node": self.parameters.target, "stamp_ns": self.parameters.stamp_ns,
             "values": values}))
        model = str(values.get("model", ""))
        with self._lock:
            self.metadata["model"] = model
        self._update_metadata()
        if os.path.isdir(model):  # hashing a large checkpoint takes a while: not here
            threading.Thread(target=self._hash_model, args=(model,), daemon=True).start()

    def _hash_model(self, model: str) -> None:
        digest = checkpoint_hash(model)
        with self._lock:
            self.metadata["model_hash"] = digest
        self._update_metadata()

    def _update_metadata(self) -> None:
        with self._lock:
            text = json.dumps(self.metadata)
        self.bag.set_custom_data(METADATA_KEY, text)

    def close(self) -> Dict[str, int]:
        """Close the bag; messages written per topic."""
        with self._lock:
            self.metadata["stopped_ns"] = self._now_ns()
            self.metadata["messages"] = {s.topic: n for s, n in zip(self.specs, self.bag.counts)}
            self.metadata["lost"] = {s.topic: n for s, n in zip(self.specs, self.lost) if n}
        self._update_metadata()
        self.bag.close()
        return self.metadata["messages"]


def _parse(argv: List[str]) -> List[Parameter]:
    parser = argparse.ArgumentParser(prog="specprune-record", description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", default=None, help="bag directory (parameter output)")
    args = parser.parse_args(remove_ros_args(argv)[1:])
    return [Parameter("output", value=args.output)] if args.output else []


def main(args: Optional[List[str]] = None) -> None:
    """Record until SIGINT / SIGTERM, then close the bag (exit 0); exit 1 when the recording
    cannot start (the reason is logged)."""
    argv = list(sys.argv if args is None else args)
    overrides = _parse(argv)
    with receive_transport(dict(os.environ), kernel_rmem_max()) as environ:
        os.environ.update(environ)
        code = _record(argv, overrides)
    sys.exit(code)


def _record(argv: List[str], overrides: List[Parameter]) -> int:
    """Init, record until stopped, close the bag and shut down; the exit code."""
    lifecycle.init(argv)
    node: Optional[Recorder] = None
    executor = SingleThreadedExecutor()
    code = 0
    try:
        node = Recorder(parameter_overrides=overrides)
        executor.add_node(node)
        lifecycle.spin_until_stopped(executor)
    except StartupError as exc:
        rclpy.logging.get_logger(NODE_NAME).fatal(f"cannot start: {exc}")
        code = 1
    finally:
        if node is not None:
            counts = node.close()
            node.get_logger().info(f"closed {node.bag.path} ({len(node.bag.files)} files): " +
                                   ", ".join(f"{t} {n}" for t, n in counts.items() if n))
            executor.shutdown()
            node.destroy_node()
        rclpy.try_shutdown()
    return code


if __name__ == "__main__":
    main()
