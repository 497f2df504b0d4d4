"""Bags for the recording tests, written with rosbags directly (not by specprune-record):
synthetic camera frames, joint states, ee poses, an instruction and, optionally, the chunks a
policy computed on the observations the node's builder makes of them."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

from specprune_ros.node.bag_topics import EPISODE_TOPIC

TS = get_typestore(Stores.ROS2_KILTED)
T = TS.types
CAMERAS = ("/camera/agentview/image_raw", "/camera/wrist/image_raw")
JOINTS = [f"panda_joint{i}" for i in range(1, 8)] + [
    "panda_finger_joint1", "panda_finger_joint2"]
BASE = 1_800_000_000  # seconds: stamps of the synthetic run


def header(t: float, frame: str = "") -> Any:
    sec, nsec = divmod(int(round(t * 1e9)), 10 ** 9)
    return T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=sec, nanosec=nsec),
                                    frame_id=frame)


def image(t: float, rgb: np.ndarray) -> Any:
    return T["sensor_msgs/msg/Image"](header=header(t, "camera"), height=rgb.shape[0],
                                      width=rgb.shape[1], encoding="rgb8", is_bigendian=0,
                                      step=rgb.shape[1] * 3, data=rgb.reshape(-1).copy())


def joint_state(t: float, tick: int) -> Any:
    pos = np.array([0.01 * tick] * 7 + [0.04 - 0.001 * tick, 0.04 - 0.001 * tick])
    return T["sensor_msgs/msg/JointState"](header=header(t), name=JOINTS, position=pos,
                                           velocity=np.zeros(0), effort=np.zeros(0))


def pose(t: float, tick: int) -> Any:
    P, Q = T["geometry_msgs/msg/Point"], T["geometry_msgs/msg/Quaternion"]
    half = 0.01 * tick
    return T["geometry_msgs/msg/PoseStamped"](header=header(t, "panda_link0"), pose=T[
        "geometry_msgs/msg/Pose"](position=P(x=0.4 + 0.002 * tick, y=0.0, z=0.3 - 0.001 * tick),
                                  orientation=Q(x=np.sin(half), y=0.0, z=0.0, w=np.cos(half))))


def string(text: str) -> Any:
    return T["std_msgs/msg/String"](data=text)


def chunk(t: float, actions: np.ndarray, names: Sequence[str]) -> Any:
    D = T["builtin_interfaces/msg/Duration"]
    points = [T["trajectory_msgs/msg/JointTrajectoryPoint"](
        positions=row.astype(np.float64), velocities=np.zeros(0), accelerations=np.zeros(0),
        effort=np.zeros(0), time_from_start=D(sec=0, nanosec=50_000_000 * (i + 1)))
        for i, row in enumerate(actions)]
    return T["trajectory_msgs/msg/JointTrajectory"](header=header(t, "panda_link0"),
                                                    joint_names=list(names), points=points)


class SyntheticBag:
    """Messages (topic, type, log time s, message), written out in log-time order."""

    def __init__(self) -> None:
        self.items: List[tuple] = []

    def add(self, topic: str, msgtype: str, log_t: float, msg: Any) -> None:
        self.items.append((topic, msgtype, log_t, msg))

    def write(self, path: Path, omit: Sequence[str] = (),
              retype: Optional[Dict[str, str]] = None) -> Path:
        """``omit``: topics left out; ``retype``: topic -> another type it is written as
        (a String with the same number of messages)."""
        retype = retype or {}
        writer = Writer(path, version=9, storage_plugin=StoragePlugin.MCAP)
        writer.open()
        conns: Dict[str, Any] = {}
        for topic, msgtype, log_t, msg in sorted(self.items, key=lambda i: i[2]):
            if topic in omit:
                continue
            if topic in retype:
                msgtype, msg = retype[topic], string("not what you expect")
            if topic not in conns:
                conns[topic] = writer.add_connection(topic, msgtype, typestore=TS)
            writer.write(conns[topic], int(round(log_t * 1e9)), TS.serialize_cdr(msg, msgtype))
        writer.close()
        return path


def synthetic_run(ticks: int, every: int, step: Optional[Callable[[Any], Any]] = None,
                  episodes: int = 1, size: int = 224, marker: str = "reset") -> SyntheticBag:
    """Two cameras at 20 Hz, joint state + pose at 40 Hz, the instruction; ``step(builder
    result)`` -> (actions, names) is called on every ``every``-th matched set, as a node
    busy for that long would, and its chunk logged 30 ms later (frames keep arriving).
    The views' frames of one tick arrive 5 ms apart."""
    from specprune_ros.node import parameters as params
    from specprune_ros.node.observation_builder import make_builder

    bag = SyntheticBag()
    bag.add("/instruction", "std_msgs/msg/String", BASE - 1.0, string("pick up the red cube"))
    values = {s.name: s.default for s in params.PARAMS}
    builder = make_builder(values, 8)
    rng = np.random.default_rng(0)
    sets = 0
    per_episode = ticks // episodes
    for tick in range(ticks):
        t = BASE + 0.05 * tick
        if tick and tick % per_episode == 0:
            bag.add(EPISODE_TOPIC, "std_msgs/msg/String", t - 0.01, string(marker))
        for sub in (0, 1):  # state at 40 Hz, around the frame
            ts = t + 0.025 * sub
            bag.add("/joint_states", "sensor_msgs/msg/JointState", ts + 0.002,
                    joint_state(ts, 2 * tick + sub))
            bag.add("/ee_pose", "geometry_msgs/msg/PoseStamped", ts + 0.002,
                    pose(ts, 2 * tick + sub))
            builder.set_joint_state(JOINTS, list(joint_state(ts, 2 * tick + sub).position), ts)
            p = pose(ts, 2 * tick + sub).pose
            builder.add_pose((p.position.x, p.position.y, p.position.z),
                             (p.orientation.x, p.orientation.y, p.orientation.z,
                              p.orientation.w), ts, "panda_link0")
        frames = [rng.integers(0, 255, (size, size, 3), dtype=np.uint8) for _ in CAMERAS]
        for view, topic in enumerate(CAMERAS):
            bag.add(topic, "sensor_msgs/msg/Image", t + 0.004 + 0.005 * view,
                    image(t, frames[view]))
            builder.add_frame(view, frames[view], t, t + 0.004 + 0.005 * view)
        if step is None:
            continue
        result = builder.build(t + 0.03, "pick up the red cube")
        if result.observation is None:
            continue
        sets += 1
        if sets % every == 0:
            actions, names = step(result)
            bag.add("/specprune/action_chunk", "trajectory_msgs/msg/JointTrajectory", t + 0.06,
                    chunk(t, actions, names))
    return bag
