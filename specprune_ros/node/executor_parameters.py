"""The chunk executor's parameters: one table, from which everything else derives.

The same pattern as the policy node's (``specprune_ros.node.parameters``), on the shared
``specprune_ros.node.param_table``: ``PARAMS`` holds every parameter with its default,
documentation, range and liveness; from it come the descriptors the node declares, the
live-value checks, the ``Limits`` of the safety envelope and config/executor.yaml::

    python -m specprune_ros.node.executor_parameters --write config/executor.yaml
    python -m specprune_ros.node.executor_parameters --check config/executor.yaml

Scaling of the normalised actions (LIBERO's OSC delta action space) to SI units: robosuite
1.5's OSC_POSE controller (controllers/config/default/parts/osc_pose.json, the Panda
default) maps an action of 1 to an end-effector goal offset of output_max = 0.05 m and
0.5 rad per control step; LIBERO steps at 20 Hz, so 1 unit = 0.05 m * 20 /s = 1.0 m/s and
0.5 rad * 20 /s = 10 rad/s. A policy trained at another rate or on another controller needs
other ``linear_scale`` / ``angular_scale`` values.
"""
from __future__ import annotations

import math
import sys
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

from specprune.model.layouts import LAYOUTS
from specprune_ros.node.chunk_timing import RULES
from specprune_ros.node.param_table import (ParamSpec, ros_value, rule_problem, yaml_cli,
                                            yaml_entries)
from specprune_ros.node.joint_limits import JointLimits, UrdfLimit, narrowed
from specprune_ros.node.safety_envelope import Limits

NODE_NAME = "specprune_executor"
OUTPUTS = ("twist", "pose", "joint_trajectory")
#: action layouts whose dimensions are joint positions (the others are Cartesian deltas)
JOINT_LAYOUTS = ("aloha",)
_DEFAULT = Limits()
_JOINTS = 14  # the aloha layout's
_JOINT_DEFAULT = JointLimits((-math.pi,) * _JOINTS, (math.pi,) * _JOINTS)
_ALOHA_JOINTS = [f"{side}_{j}" for side in ("left", "right")
                 for j in ("waist", "shoulder", "elbow", "forearm_roll", "wrist_angle",
                           "wrist_rotate", "gripper")]

PARAMS: Tuple[ParamSpec, ...] = (
    # --- structure (read-only) -----------------------------------------------------------
    ParamSpec("autostart", False, "Configure and activate at start-up (launch files and the "
              "project's own processes pass true); false: wait for lifecycle transitions.",
              read_only=True),
    ParamSpec("action_layout", "libero", "Layout of the chunks' action dimensions: 'libero' "
              "(x y z roll pitch yaw gripper: normalised OSC delta end-effector actions, "
              "Cartesian) or 'aloha' (14 absolute joint positions).", read_only=True,
              choices=tuple(LAYOUTS)),
    ParamSpec("output", "twist", "Command interface: 'twist' (geometry_msgs/TwistStamped, "
              "for MoveIt Servo or Cartesian velocity controllers), 'pose' (geometry_msgs/"
              "PoseStamped targets integrated from the measured pose, for Cartesian impedance "
              "controllers), 'joint_trajectory' (trajectory_msgs/JointTrajectory with "
              "joint_names, for joint_trajectory_controller; joint-space layouts only: a "
              "Cartesian layout is refused at configure, there is no IK here).",
              read_only=True, choices=OUTPUTS),
    ParamSpec("control_rate_hz", 50.0, "Executor ticks per second (its own timer, on the "
              "node clock: simulated time with use_sim_time).", read_only=True, lo=1.0,
              hi=1000.0),
    ParamSpec("linear_scale", 1.0, "m/s of end-effector velocity per normalised action unit "
              "(robosuite OSC_POSE: 0.05 m per 20 Hz step).", read_only=True, lo=1e-4,
              hi=100.0),
    ParamSpec("angular_scale", 10.0, "rad/s of end-effector angular velocity per normalised "
              "action unit (robosuite OSC_POSE: 0.5 rad per 20 Hz step).", read_only=True,
              lo=1e-4, hi=1000.0),
    ParamSpec("base_frame", "panda_link0", "Frame of the commands; the measured pose must be "
              "stamped in it.", read_only=True),
    ParamSpec("joint_names", _ALOHA_JOINTS, "Real joint names, in action order, of a "
              "joint-space layout (output joint_trajectory).", read_only=True),
    ParamSpec("action_chunk_topic", "/specprune/action_chunk", "trajectory_msgs/"
              "JointTrajectory chunks from the policy (stamp = camera time).", read_only=True),
    ParamSpec("ee_pose_topic", "/ee_pose", "geometry_msgs/PoseStamped: measured end-effector "
              "pose in base_frame.", read_only=True),
    ParamSpec("joint_states_topic", "/joint_states", "sensor_msgs/JointState: measured joints "
              "(joint-space layouts).", read_only=True),
    ParamSpec("estop_topic", "/specprune/estop", "std_msgs/Bool: true latches a hold until "
              "the ~/reset_estop service.", read_only=True),
    ParamSpec("twist_topic", "/specprune/ee_twist", "geometry_msgs/TwistStamped output "
              "(base_frame, m/s and rad/s).", read_only=True),
    ParamSpec("pose_topic", "/specprune/ee_target_pose", "geometry_msgs/PoseStamped output "
              "(base_frame).", read_only=True),
    ParamSpec("joint_trajectory_topic", "/specprune/joint_trajectory", "trajectory_msgs/"
              "JointTrajectory output (one point per tick).", read_only=True),
    ParamSpec("gripper_topic", "/specprune/gripper", "std_msgs/Float64 output: the gripper "
              "action of Cartesian layouts (-1 open .. 1 close), sent with every moving "
              "command and never in a hold.", read_only=True),
    ParamSpec("robot_description_topic", "/robot_description", "std_msgs/String (transient "
              "local, as robot_state_publisher publishes it): the URDF whose joint <limit "
              "lower upper velocity> narrow the joint limits (joint-space layouts).",
              read_only=True),
    # --- chunk combination (live) --------------------------------------------------------
    ParamSpec("rule", "latest", "How overlapping chunks combine: 'latest' (newest chunk), "
              "'ensemble' (ACT temporal ensembling, weights exp(-ensemble_k * j), j = 0 for "
              "the oldest), 'crossfade' (linear blend into a new chunk over its first "
              "crossfade_points points).", choices=RULES),
    ParamSpec("ensemble_k", 0.01, "Temporal-ensembling decay (ACT's default 0.01).",
              lo=0.0, hi=10.0),
    ParamSpec("crossfade_points", 2, "Points of a new chunk over which it fades in.",
              lo=0, hi=100),
    # --- watchdog and inputs (live) ------------------------------------------------------
    ParamSpec("chunk_timeout_s", 0.5, "Watchdog: hold when no chunk arrived for this long "
              "(even if the last one still has points).", lo=0.01, hi=10.0),
    ParamSpec("max_state_age_s", 0.25, "Hold when the measured pose (joint state) is older "
              "than this.", lo=0.001, hi=10.0),
    ParamSpec("max_chunk_age_s", 1.0, "Refuse a chunk whose stamp is older than this when "
              "it arrives.", lo=0.01, hi=60.0),
    ParamSpec("max_future_stamp_s", 0.1, "Refuse a chunk, and hold on a measured state, "
              "stamped further than this ahead of the node clock (clocks of two machines "
              "under NTP / PTP agree within milliseconds; a /clock subscriber may run one "
              "step of a 10-20 Hz clock behind).", lo=0.0, hi=1.0),
    ParamSpec("dry_run", False, "Compute and report on /diagnostics, command nothing."),
    ParamSpec("require_estop_signal", True, "Hold (reason estop, 'no e-stop signal received "
              "yet') until a false has been received on estop_topic, so that an e-stop "
              "raised before the executor subscribed cannot go unseen (the topic is not "
              "latched). false only where nothing publishes the e-stop (simulation, tests)."),
    ParamSpec("estop_heartbeat_timeout_s", 0.0, "E-stop heartbeat: hold (reason estop) unless "
              "a false arrived on estop_topic within this time, so that a dead e-stop "
              "publisher stops the arm; for e-stop publishers that repeat their state at a "
              "known rate. 0: off (a false is needed once, see require_estop_signal).",
              lo=0.0, hi=10.0),
    # --- safety envelope (live) ----------------------------------------------------------
    ParamSpec("workspace_min", list(_DEFAULT.workspace_min), "Workspace box lower corner "
              "(x, y, z) in base_frame, m (the simulated table top is at z = -0.10, cube "
              "centres at -0.08)."),
    ParamSpec("workspace_max", list(_DEFAULT.workspace_max), "Workspace box upper corner "
              "(x, y, z) in base_frame, m."),
    ParamSpec("max_linear_speed", _DEFAULT.max_linear_speed, "Linear speed limit, m/s.",
              lo=0.0, hi=2.0),
    ParamSpec("max_angular_speed", _DEFAULT.max_angular_speed, "Angular speed limit, rad/s.",
              lo=0.0, hi=20.0),
    ParamSpec("max_linear_accel", _DEFAULT.max_linear_accel, "Linear acceleration limit, "
              "m/s^2; also the braking the workspace box plans with. Not 0 (the policy could "
              "never slow the arm): to stop it, set max_linear_speed 0.", lo=0.01, hi=1000.0),
    ParamSpec("max_angular_accel", _DEFAULT.max_angular_accel, "Angular acceleration limit, "
              "rad/s^2; not 0 (see max_linear_accel).", lo=0.01, hi=10000.0),
    ParamSpec("max_linear_stop_decel", _DEFAULT.max_linear_stop_decel, "Linear deceleration "
              "of a stop: every hold (the e-stop included), a lowered speed limit, a box "
              "closing in; max_linear_accel where that is larger (a stop is never gentler "
              "than a start). Franka Panda's own limit: 13 m/s^2.",
              lo=0.01, hi=10000.0),
    ParamSpec("max_angular_stop_decel", _DEFAULT.max_angular_stop_decel, "Angular "
              "deceleration of a stop, rad/s^2; max_angular_accel where that is larger.", lo=0.01,
              hi=100000.0),
    ParamSpec("controller_lag_s", _DEFAULT.controller_lag_s, "Output twist: the time from a "
              "command to the arm moving by it (the controller's delay; a first-order lag's "
              "time constant counts as such). The workspace box extrapolates the measured pose "
              "by the commands of the last (pose age + this) seconds.", lo=0.0, hi=1.0),
    ParamSpec("ramp_in_s", _DEFAULT.ramp_in_s, "After activation, an e-stop reset, the first "
              "e-stop signal, a heartbeat regained or a clock that stepped back, the speed "
              "limits grow from 0 to full over this time; 0: off.", lo=0.0, hi=30.0),
    ParamSpec("max_pose_lead_m", _DEFAULT.max_pose_lead_m, "Output pose: the target stays "
              "within this distance of the measured position.", lo=0.001, hi=1.0),
    ParamSpec("max_pose_lead_rad", _DEFAULT.max_pose_lead_rad, "Output pose: the target "
              "orientation stays within this angle of the measured one.", lo=0.001, hi=3.14),
    ParamSpec("orientation_reference", list(_DEFAULT.orientation_reference), "Orientation "
              "cone: the reference orientation of the tool (quaternion x y z w in "
              "base_frame). (1, 0, 0, 0) points a tool z axis down in a z-up base frame "
              "(Franka's home); check your robot's tool frame."),
    ParamSpec("max_orientation_deviation_rad", _DEFAULT.max_orientation_deviation_rad,
              "Orientation cone: the tool's orientation stays within this angle of "
              "orientation_reference (rotation away braked at max_angular_accel; outside it "
              "only rotation back, none forced). pi: off.", lo=0.0, hi=math.pi),
    ParamSpec("joint_position_min", list(_JOINT_DEFAULT.joint_position_min), "Output "
              "joint_trajectory: lower position limit per joint (joint_names order), rad or "
              "m; narrowed by robot_description's <limit lower>. The defaults bound nothing "
              "a revolute joint can reach: set your robot's."),
    ParamSpec("joint_position_max", list(_JOINT_DEFAULT.joint_position_max), "Output "
              "joint_trajectory: upper position limit per joint, rad or m; narrowed by "
              "robot_description's <limit upper>."),
    ParamSpec("max_joint_speed", _JOINT_DEFAULT.max_joint_speed, "Output joint_trajectory: "
              "per-joint speed limit, rad/s (or m/s); narrowed by robot_description's <limit "
              "velocity>.", lo=0.0, hi=20.0),
    ParamSpec("max_joint_accel", _JOINT_DEFAULT.max_joint_accel, "Output joint_trajectory: "
              "per-joint acceleration limit, rad/s^2; also the braking before a position "
              "limit. Not 0 (see max_linear_accel).", lo=0.01, hi=1000.0),
    ParamSpec("max_joint_stop_decel", _JOINT_DEFAULT.max_joint_stop_decel, "Output "
              "joint_trajectory: per-joint deceleration of a stop (holds, a lowered speed "
              "limit, a position limit closing in); max_joint_accel where that is larger.",
              lo=0.01, hi=10000.0),
    ParamSpec("max_joint_lead", _JOINT_DEFAULT.max_joint_lead, "Output joint_trajectory: the "
              "target stays within this of the measured joint (rad or m).", lo=0.001,
              hi=3.14),
)
BY_NAME: Dict[str, ParamSpec] = {spec.name: spec for spec in PARAMS}
LIMIT_FIELDS = tuple(f for f in Limits.__dataclass_fields__)
JOINT_LIMIT_FIELDS = tuple(f for f in JointLimits.__dataclass_fields__)
COMBINE = ("rule", "ensemble_k", "crossfade_points")


def _plain(values: Mapping[str, Any], fields: Sequence[str]) -> Dict[str, Any]:
    """The ``fields`` of ``values``, lists as tuples (the limits are frozen dataclasses)."""
    plain = {f: ros_value(values[f]) for f in fields}
    return {f: tuple(v) if isinstance(v, list) else v for f, v in plain.items()}


def limits_from(values: Mapping[str, Any]) -> Limits:
    """The envelope's Limits; ValueError naming the inconsistency."""
    return Limits(**_plain(values, LIMIT_FIELDS))


def joint_limits_from(values: Mapping[str, Any]) -> JointLimits:
    """The joint limits; ValueError naming the inconsistency (one pair per joint name)."""
    limits = JointLimits(**_plain(values, JOINT_LIMIT_FIELDS))
    joints = len(values["joint_names"])
    if len(limits.joint_position_min) != joints:
        raise ValueError(f"joint_position_min / joint_position_max need one value per joint "
                         f"of joint_names ({joints}), got {len(limits.joint_position_min)}")
    return limits


def check_values(values: Mapping[str, Any], current: Mapping[str, Any],
                 urdf: Optional[Mapping[str, UrdfLimit]] = None) -> Optional[str]:
    """Why the ``values`` to be set (over ``current``) are not allowed, or None. ``urdf``:
    the robot_description's limits in force, which new joint limits must leave a range."""
    problem = rule_problem(BY_NAME, values)
    if problem:
        return problem
    merged = {**current, **values}
    try:
        if set(values) & set(LIMIT_FIELDS):
            limits_from(merged)
        if set(values) & set(JOINT_LIMIT_FIELDS):
            narrowed(merged["joint_names"], joint_limits_from(merged), dict(urdf or {}))
    except (ValueError, TypeError) as exc:
        return str(exc)
    return None


def structure_problem(values: Mapping[str, Any]) -> Optional[str]:
    """Why the read-only settings cannot work together (refused at configure), or None."""
    layout = values["action_layout"]
    if values["output"] == "joint_trajectory" and layout not in JOINT_LAYOUTS:
        return (f"output 'joint_trajectory' needs a joint-space action layout, but "
                f"'{layout}' is Cartesian (end-effector deltas "
                f"{' '.join(LAYOUTS[layout].action_names)}); this executor does no inverse "
                f"kinematics: use output 'twist' or 'pose'")
    if values["output"] != "joint_trajectory" and layout in JOINT_LAYOUTS:
        return (f"output '{values['output']}' needs a Cartesian action layout; '{layout}' "
                f"holds joint positions: use output 'joint_trajectory'")
    if layout in JOINT_LAYOUTS and len(values["joint_names"]) != LAYOUTS[layout].action_dim:
        return (f"joint_names lists {len(values['joint_names'])} joints, layout '{layout}' "
                f"has {LAYOUTS[layout].action_dim} action dimensions")
    return None


_HEADER = f"""\
# Parameters of the chunk executor ({NODE_NAME}), generated from
# specprune_ros/node/executor_parameters.py: do not edit by hand, regenerate with
#   python -m specprune_ros.node.executor_parameters --write config/executor.yaml
# Run: python -m specprune_ros.node.executor_node --ros-args --params-file config/executor.yaml
# Live parameters can be changed with `ros2 param set /{NODE_NAME} <name> <value>` (an
# integer is accepted for a double); invalid values are rejected with the reason."""


def render_yaml(specs: Sequence[ParamSpec] = PARAMS) -> str:
    lines = _HEADER.splitlines() + [f"{NODE_NAME}:", "  ros__parameters:"]
    lines += yaml_entries(specs, "    ", lambda s: s.name)
    return "\n".join(lines) + "\n"


def main(argv: Optional[Sequence[str]] = None) -> int:
    return yaml_cli(argv, render_yaml(), "specprune_ros.node.executor_parameters",
                    "the executor's")


if __name__ == "__main__":
    sys.exit(main())
