"""Does specprune-record keep up? Published vs recorded messages, and its CPU share.

Starts ``specprune_ros.node.recorder`` as a process (own ROS domain, localhost only) and,
optionally, processes that each burn a core; publishes two 224 x 224 rgb8 cameras at
``--camera-hz`` and joint states + ee poses at ``--state-hz`` from this process for
``--seconds``; stops the recorder with SIGINT and counts what the bag holds::

    python -m specprune_ros.eval.recording_load --seconds 600 --burners 2 --json load.json

Counted from the moment each publisher sees the recorder's subscription; after the last
message it waits ``--settle`` seconds before the signal. Dropped = published - recorded,
matched message by message on the header stamp: each lost message is listed (seconds after
the first publish), with the recorder's receive latency (bag log time - header stamp: how far
behind it ran) and what its subscriptions' DDS readers reported lost (``message_lost``).
CPU: the recorder's user + system time over the publishing window / its wall time (100 %
= one core); the load average over the run says how busy the machine was besides.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import struct
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import rclpy
from rclpy.context import Context
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from rosbags.rosbag2 import Reader
from ruamel.yaml import YAML

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # lark, pulled in by the msg packages
    from geometry_msgs.msg import PoseStamped
    from builtin_interfaces.msg import Time
    from sensor_msgs.msg import Image, JointState

from specprune_ros.node.bag_topics import CAMERA_TOPICS, METADATA_KEY
from specprune_ros.node.ros_image import rgb_to_image_msg

BURN = "while True: pass"


def stamp_ns(stamp: Time) -> int:
    return stamp.sec * 1_000_000_000 + stamp.nanosec


def header_stamp_ns(cdr: bytes) -> int:
    """The header stamp of a serialized message whose first field is a std_msgs/Header
    (CDR: a 4-byte encapsulation header, byte 1 = 1 for little endian, then int32 sec and
    uint32 nanosec)."""
    sec, nanosec = struct.unpack_from("<iI" if cdr[1] == 1 else ">iI", cdr, 4)
    return sec * 1_000_000_000 + nanosec


def recorded_stamps(bag: str, topics: Sequence[str]) -> Dict[str, List[Tuple[int, int]]]:
    """topic -> [(header stamp, log time)] of the bag's messages on ``topics`` (streamed:
    a 10-minute bag holds several GB)."""
    out: Dict[str, List[Tuple[int, int]]] = {t: [] for t in topics}
    with Reader(bag) as reader:
        wanted = [c for c in reader.connections if c.topic in out]
        for conn, log_ns, raw in reader.messages(connections=wanted):
            out[conn.topic].append((header_stamp_ns(raw), log_ns))
    return out


def compare(published: Dict[str, List[int]], recorded: Dict[str, List[Tuple[int, int]]],
            start_ns: int) -> Dict[str, Dict]:
    """Per topic: published, recorded, dropped, the lost messages (seconds after
    ``start_ns``, by header stamp) and the receive latency (ms: median, p99, max)."""
    out = {}
    for topic, stamps in published.items():
        got = recorded.get(topic, [])
        seen = {stamp for stamp, _ in got}
        lost = [round((s - start_ns) / 1e9, 3) for s in stamps if s not in seen]
        delay = np.array([(log - stamp) / 1e6 for stamp, log in got]) if got else np.zeros(1)
        out[topic] = {"published": len(stamps), "recorded": len(stamps) - len(lost),
                      "dropped": len(lost), "lost_at_s": lost,
                      "latency_ms": {"median": round(float(np.median(delay)), 2),
                                     "p99": round(float(np.percentile(delay, 99)), 2),
                                     "max": round(float(delay.max()), 2)}}
    return out


def recorder_metadata(bag: str) -> Dict:
    """The recorder's own metadata (messages written, messages its readers lost)."""
    info = YAML(typ="safe").load((Path(bag) / "metadata.yaml").read_text("utf8"))
    return json.loads((info["rosbag2_bagfile_information"].get("custom_data") or {}).get(
        METADATA_KEY, "{}"))


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (Linux /proc)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Publishers:
    """The sensor topics, counting what is published once the recorder listens."""

    def __init__(self, node: Node) -> None:
        self.cameras = [node.create_publisher(Image, t, qos_profile_sensor_data)
                        for t in CAMERA_TOPICS]
        self.joints = node.create_publisher(JointState, "/joint_states", 10)
        self.pose = node.create_publisher(PoseStamped, "/ee_pose", 10)
        names = (*CAMERA_TOPICS, "/joint_states", "/ee_pose")
        self.stamps: Dict[str, List[int]] = {t: [] for t in names}  # header stamps, ns
        self.image = np.random.default_rng(0).integers(0, 255, (224, 224, 3), dtype=np.uint8)

    def matched(self) -> bool:
        pubs = self.cameras + [self.joints, self.pose]
        return all(p.get_subscription_count() > 0 for p in pubs)

    def cameras_now(self, stamp: Time) -> None:
        for topic, pub in zip(CAMERA_TOPICS, self.cameras):
            pub.publish(rgb_to_image_msg(self.image, "rgb8", stamp, "camera"))
            self.stamps[topic].append(stamp_ns(stamp))

    def state_now(self, stamp: Time, tick: int) -> None:
        js = JointState(name=[f"panda_joint{i}" for i in range(1, 8)],
                        position=[0.01 * tick] * 7)
        js.header.stamp = stamp
        self.joints.publish(js)
        pose = PoseStamped()
        pose.header.stamp, pose.header.frame_id = stamp, "panda_link0"
        pose.pose.position.x, pose.pose.orientation.w = 0.001 * tick, 1.0
        self.pose.publish(pose)
        self.stamps["/joint_states"].append(stamp_ns(stamp))
        self.stamps["/ee_pose"].append(stamp_ns(stamp))


def publish(node: Node, pubs: Publishers, seconds: float, camera_hz: float,
            state_hz: float) -> float:
    """Publish on a fixed schedule for ``seconds``; the wall time taken."""
    start = time.monotonic()
    next_cam = next_state = start
    tick = 0
    while time.monotonic() - start < seconds:
        now = time.monotonic()
        stamp = node.get_clock().now().to_msg()
        if now >= next_state:
            pubs.state_now(stamp, tick)
            tick += 1
            next_state += 1.0 / state_hz
        if now >= next_cam:
            pubs.cameras_now(stamp)
            next_cam += 1.0 / camera_hz
        time.sleep(max(0.0, min(next_cam, next_state) - time.monotonic()))
    return time.monotonic() - start


def measure(seconds: float, camera_hz: float, state_hz: float, burners: int,
            settle: float = 2.0, domain: Optional[int] = None) -> Dict:
    workdir = tempfile.mkdtemp(prefix="specprune_recording_load_")
    bag = os.path.join(workdir, "bag")
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain or 60 + os.getpid() % 40),
               ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", ROS_LOG_DIR=workdir)
    recorder = subprocess.Popen([sys.executable, "-m", "specprune_ros.node.recorder", "-o", bag,
                                 "--ros-args", "-p", "policy_node:=''"], env=env)
    burn = [subprocess.Popen([sys.executable, "-c", BURN]) for _ in range(burners)]
    context = Context()
    rclpy.init(context=context, domain_id=int(env["ROS_DOMAIN_ID"]))
    node = Node("recording_load", context=context)
    try:
        pubs = Publishers(node)
        deadline = time.monotonic() + 120.0
        while not pubs.matched():
            if time.monotonic() > deadline or recorder.poll() is not None:
                raise RuntimeError(f"the recorder never subscribed (exit code "
                                   f"{recorder.poll()})")
            time.sleep(0.1)
        cpu0, load0 = cpu_seconds(recorder.pid), os.getloadavg()
        start_ns = node.get_clock().now().nanoseconds
        wall = publish(node, pubs, seconds, camera_hz, state_hz)
        time.sleep(settle)
        cpu = (cpu_seconds(recorder.pid) - cpu0) / (wall + settle)
        load = os.getloadavg()
    finally:
        node.destroy_node()
        rclpy.try_shutdown(context=context)
        for proc in burn:
            proc.terminate()
        recorder.send_signal(signal.SIGINT)
        code = recorder.wait(60)
    topics = compare(pubs.stamps, recorded_stamps(bag, list(pubs.stamps)), start_ns)
    meta = recorder_metadata(bag)
    return {"seconds": wall, "camera_hz": camera_hz, "state_hz": state_hz, "burners": burners,
            "load_average_1_5_15": {"at_start": load0, "at_end": load},
            "recorder_cpu_percent": 100.0 * cpu, "recorder_exit_code": code,
            "bag_bytes": sum(os.path.getsize(os.path.join(bag, f)) for f in os.listdir(bag)),
            "topics": topics, "dropped": sum(t["dropped"] for t in topics.values()),
            "recorder_reported": {k: meta.get(k) for k in ("messages", "lost")},
            "bag": bag}


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--camera-hz", type=float, default=20.0)
    parser.add_argument("--state-hz", type=float, default=50.0)
    parser.add_argument("--burners", type=int, default=2, help="CPU-burning processes beside")
    parser.add_argument("--json", default="", help="write the result here")
    args = parser.parse_args(argv)
    result = measure(args.seconds, args.camera_hz, args.state_hz, args.burners)
    print(json.dumps(result, indent=2))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)
    return 0 if result["dropped"] == 0 and result["recorder_exit_code"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
