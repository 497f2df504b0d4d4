"""The messages the executor publishes, built from plain values.

``twist_msg`` / ``pose_msg``: TwistStamped (m/s, rad/s) and PoseStamped targets in the
base frame, stamped with the node time of the tick. ``trajectory_msg``: one
JointTrajectory point ``seconds`` ahead, stamped 0, the stamp joint_trajectory_controller
reads as "start when received": its first segment then runs from the controller's state at
receipt to the point over the whole ``seconds``. A message stamped with its publishing time
would have that segment shortened by the transport delay (a faster motion than commanded)
or, arriving after its point's time, be refused as ending in the past; MoveIt Servo stamps
its trajectories 0 for the same reason. ``seconds`` is the executor's tick period, so the
next message replaces the trajectory as its point is reached.
"""
from __future__ import annotations

import warnings
from typing import Any, Dict, Sequence

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # lark, pulled in by the msg packages
    from builtin_interfaces.msg import Time
    from diagnostic_msgs.msg import DiagnosticStatus, KeyValue
    from geometry_msgs.msg import PoseStamped, TwistStamped
    from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from specprune_ros.node.tf_motion import duration


def stamp(seconds: float) -> Time:
    sec, nanosec = divmod(int(round(seconds * 1e9)), 10 ** 9)
    return Time(sec=sec, nanosec=nanosec)


def twist_msg(linear: Sequence[float], angular: Sequence[float], now: float,
              frame: str) -> TwistStamped:
    msg = TwistStamped()
    msg.header.stamp, msg.header.frame_id = stamp(now), frame
    t = msg.twist
    t.linear.x, t.linear.y, t.linear.z = (float(x) for x in linear)
    t.angular.x, t.angular.y, t.angular.z = (float(x) for x in angular)
    return msg


def pose_msg(position: Sequence[float], quaternion: Sequence[float], now: float,
             frame: str) -> PoseStamped:
    msg = PoseStamped()
    msg.header.stamp, msg.header.frame_id = stamp(now), frame
    p, o = msg.pose.position, msg.pose.orientation
    p.x, p.y, p.z = (float(x) for x in position)
    o.x, o.y, o.z, o.w = (float(x) for x in quaternion)
    return msg


def trajectory_msg(names: Sequence[str], positions: Sequence[float], seconds: float,
                   frame: str) -> JointTrajectory:
    """One point ``seconds`` ahead, stamped 0 (see the module docstring)."""
    msg = JointTrajectory(joint_names=list(names))
    msg.header.stamp, msg.header.frame_id = Time(), frame
    msg.points.append(JointTrajectoryPoint(positions=[float(v) for v in positions],
                                           time_from_start=duration(seconds)))
    return msg


def status_msg(level: bytes, name: str, message: str, hardware_id: str,
               values: Dict[str, Any]) -> DiagnosticStatus:
    """A DiagnosticStatus; floats shown with 4 decimals."""
    return DiagnosticStatus(
        level=level, name=name, message=message, hardware_id=hardware_id,
        values=[KeyValue(key=k, value=f"{x:.4f}" if isinstance(x, float) else str(x))
                for k, x in values.items()])
