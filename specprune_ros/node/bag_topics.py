"""What a recording holds: the topics specprune-record keeps (name, type, role, QoS), the
metadata keys, and the bag layout. ROS-free: the recorder, the bag reader and the replay
all read this one table.

Roles (``TopicSpec.role``): ``camera<i>`` (the policy's view i, raw Image or
CompressedImage as the node is configured), ``joint_states``, ``ee_pose``, ``instruction``,
``action_chunk`` (the policy's output), ``episode`` (the policy node's ~/reset marker),
``parameter_events`` (live parameter changes: which ``prune.*`` setting produced each
chunk), ``diagnostics``; what the executor commanded (``twist``, ``pose_target``,
``joint_trajectory``, ``gripper``) and the e-stop; ``task_success`` (the simulator's) and
``clock`` (when the nodes run on simulated time). REPLAY_ROLES are the ones the replay
cannot do without.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple

SENSOR, RELIABLE, LATCHED = "sensor", "reliable", "latched"  # subscription QoS kinds

#: custom_data key (rosbag2 metadata.yaml and each MCAP file) of the recording's metadata
#: (JSON): package version, recorder settings, the policy node's parameters, model + hash
METADATA_KEY = "specprune.recording"
#: the parameters of the node whose chunks were recorded, as fetched at start (JSON)
PARAMETERS_KEY = "specprune.policy_parameters"
EPISODE_TOPIC = "/specprune/episode"  # = policy_node.EPISODE_TOPIC (no rclpy import here)
#: what the policy node publishes there: ~/reset (the instruction may be forgotten) and
#: activation (a new start that keeps the instruction); both start a new episode
EPISODE_RESET, EPISODE_ACTIVATE = "reset", "activate"
UNFINISHED_PREFIX = ".writing_"  # the split being written: <bag>/.writing_<i>/

#: role -> (default topic, message type, QoS kind) of the fixed topics
FIXED: Dict[str, Tuple[str, str, str]] = {
    "joint_states": ("/joint_states", "sensor_msgs/msg/JointState", RELIABLE),
    "ee_pose": ("/ee_pose", "geometry_msgs/msg/PoseStamped", RELIABLE),
    "instruction": ("/instruction", "std_msgs/msg/String", LATCHED),
    "action_chunk": ("/specprune/action_chunk", "trajectory_msgs/msg/JointTrajectory", RELIABLE),
    "episode": (EPISODE_TOPIC, "std_msgs/msg/String", RELIABLE),
    "parameter_events": ("/parameter_events", "rcl_interfaces/msg/ParameterEvent", RELIABLE),
    "diagnostics": ("/diagnostics", "diagnostic_msgs/msg/DiagnosticArray", RELIABLE),
    "twist": ("/specprune/ee_twist", "geometry_msgs/msg/TwistStamped", RELIABLE),
    "pose_target": ("/specprune/ee_target_pose", "geometry_msgs/msg/PoseStamped", RELIABLE),
    "joint_trajectory": ("/specprune/joint_trajectory", "trajectory_msgs/msg/JointTrajectory",
                         RELIABLE),
    "gripper": ("/specprune/gripper", "std_msgs/msg/Float64", RELIABLE),
    "estop": ("/specprune/estop", "std_msgs/msg/Bool", RELIABLE),
    "task_success": ("/task_success", "std_msgs/msg/Bool", RELIABLE),
}
CLOCK = ("/clock", "rosgraph_msgs/msg/Clock", RELIABLE)
IMAGE, COMPRESSED = "sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage"
CAMERA_TOPICS = ("/camera/agentview/image_raw", "/camera/wrist/image_raw")
REPLAY_ROLES = ("joint_states", "ee_pose", "action_chunk")  # + every camera


@dataclass(frozen=True)
class TopicSpec:
    """One recorded topic."""

    role: str
    topic: str
    msgtype: str  # ROS 2 name, e.g. "sensor_msgs/msg/Image"
    qos: str  # SENSOR, RELIABLE or LATCHED


def camera_role(view: int) -> str:
    return f"camera{view}"


def camera_spec(view: int, topic: str, transport: str) -> TopicSpec:
    """View ``view``'s topic as the policy node subscribes it (``<topic>/compressed``
    for the compressed transport)."""
    if transport not in ("raw", "compressed"):
        raise ValueError(f"camera_transport must be 'raw' or 'compressed', got {transport!r}")
    if transport == "compressed":
        return TopicSpec(camera_role(view), f"{topic}/compressed", COMPRESSED, SENSOR)
    return TopicSpec(camera_role(view), topic, IMAGE, SENSOR)


def recorded_topics(camera_topics: Sequence[str], camera_transport: str,
                    topics: Dict[str, str], clock: bool) -> List[TopicSpec]:
    """Every topic of a recording: the cameras, the FIXED roles (``topics`` renames them:
    role -> topic), /clock when ``clock``. ValueError naming a role that does not exist or
    a topic listed twice."""
    unknown = sorted(set(topics) - set(FIXED))
    if unknown:
        raise ValueError(f"unknown topic roles {unknown}; known: {sorted(FIXED)}")
    if not camera_topics:
        raise ValueError("at least one camera topic is needed")
    specs = [camera_spec(v, t, camera_transport) for v, t in enumerate(camera_topics)]
    specs += [TopicSpec(role, topics.get(role, topic), msgtype, qos)
              for role, (topic, msgtype, qos) in FIXED.items()]
    if clock:
        specs.append(TopicSpec("clock", *CLOCK))
    names = [s.topic for s in specs]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"topics listed twice: {twice}")
    return specs
