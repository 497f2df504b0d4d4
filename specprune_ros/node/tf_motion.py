"""End-effector pose sources for the policy node: tf2_ros lookups or a PoseStamped topic.

``TfPoseSource`` polls ``buffer.lookup_transform(base_frame, ee_frame, Time())`` (the latest
transform) at its own timer rate and hands each pose to a callback. tf2_ros comes with a full
ROS 2 installation but not from PyPI: ``tf_unavailable_reason()`` says why it cannot be used
(None when it can), and the node rejects ``ee_motion_source: tf`` with that reason.
"""
from __future__ import annotations

import warnings
from typing import Any, Callable, Optional, Tuple

import rclpy.time
from rclpy.node import Node

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # lark, pulled in by the msg packages
    from builtin_interfaces.msg import Duration
    from geometry_msgs.msg import PoseStamped

try:
    import tf2_ros
    _TF_ERROR: Optional[str] = None
except ImportError as exc:  # PyPI-only installations: no tf2_ros
    tf2_ros = None
    _TF_ERROR = (f"TF is unavailable: tf2_ros cannot be imported ({exc}); it needs a full "
                 f"ROS 2 installation. Use ee_motion_source 'pose_topic' or 'policy'.")

#: (position (3,), quaternion x y z w (4,), stamp seconds)
PoseCallback = Callable[[Tuple[float, float, float], Tuple[float, float, float, float], float],
                        None]


def tf_unavailable_reason() -> Optional[str]:
    """Why TF lookups cannot be made here, or None when tf2_ros is importable."""
    return _TF_ERROR


def stamp_seconds(stamp: Any) -> float:
    """builtin_interfaces/Time (or Duration: the same two fields) -> seconds."""
    return stamp.sec + stamp.nanosec * 1e-9


def duration(seconds: float) -> Duration:
    """Seconds -> builtin_interfaces/Duration (rounded to the nanosecond)."""
    sec, nanosec = divmod(int(round(seconds * 1e9)), 10 ** 9)
    return Duration(sec=sec, nanosec=nanosec)


def pose_from_msg(msg: PoseStamped) -> Tuple[Tuple[float, float, float],
                                             Tuple[float, float, float, float], float]:
    """(position, quaternion xyzw, stamp s) of a PoseStamped."""
    p, q = msg.pose.position, msg.pose.orientation
    return (p.x, p.y, p.z), (q.x, q.y, q.z, q.w), stamp_seconds(msg.header.stamp)


class TfPoseSource:
    """Latest base_frame -> ee_frame transform, looked up ``rate_hz`` times per second.

    ``on_pose`` receives every successful lookup (repeats of one transform included: the
    consumer ignores samples whose stamp did not advance); ``on_error`` the reason of a
    failed lookup. Raises RuntimeError with ``tf_unavailable_reason()`` without tf2_ros.
    """

    def __init__(self, node: Node, base_frame: str, ee_frame: str, rate_hz: float,
                 on_pose: PoseCallback, on_error: Callable[[str], None]) -> None:
        if tf2_ros is None:
            raise RuntimeError(_TF_ERROR)
        self._node = node
        self._frames = (base_frame, ee_frame)
        self._on_pose, self._on_error = on_pose, on_error
        self._buffer = tf2_ros.Buffer()
        self._listener = tf2_ros.TransformListener(self._buffer, node)
        self._timer = node.create_timer(1.0 / rate_hz, self._lookup)

    def _lookup(self) -> None:
        base, ee = self._frames
        try:
            tf = self._buffer.lookup_transform(base, ee, rclpy.time.Time())
        except tf2_ros.TransformException as exc:
            self._on_error(f"TF {base} -> {ee} unavailable: {exc}")
            return
        t, r = tf.transform.translation, tf.transform.rotation
        self._on_pose((t.x, t.y, t.z), (r.x, r.y, r.z, r.w), stamp_seconds(tf.header.stamp))

    def destroy(self) -> None:
        """Stop the lookups and the listener's subscriptions."""
        self._node.destroy_timer(self._timer)
        unregister = getattr(self._listener, "unregister", None)
        if unregister is not None:
            unregister()
