"""Unit-quaternion helpers in ROS's (x, y, z, w) order. Pure numpy: the executor and the
observation builder both use them next to the robot's driver."""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np


def quat_to_axis_angle(quat_xyzw: Sequence[float]) -> np.ndarray:
    """Axis-angle (3,) of an (x, y, z, w) quaternion the way LIBERO's quat2axisangle does it:
    angle = 2 acos(w) (no hemisphere flip), zeros when the rotation is the identity."""
    q = np.asarray(quat_xyzw, dtype=np.float64)
    w = min(max(float(q[3]), -1.0), 1.0)
    den = math.sqrt(1.0 - w * w)
    if math.isclose(den, 0.0):
        return np.zeros(3)
    return q[:3] * 2.0 * math.acos(w) / den


def quat_multiply(a: Sequence[float], b: Sequence[float]) -> np.ndarray:
    """Hamilton product a * b of (x, y, z, w) quaternions."""
    ax, ay, az, aw = a
    bx, by, bz, bw = b
    return np.array([aw * bx + ax * bw + ay * bz - az * by,
                     aw * by - ax * bz + ay * bw + az * bx,
                     aw * bz + ax * by - ay * bx + az * bw,
                     aw * bw - ax * bx - ay * by - az * bz])


def rotation_vector(quat_xyzw: Sequence[float]) -> np.ndarray:
    """Shortest rotation vector (axis * angle, angle in [0, pi]) of a unit quaternion."""
    q = np.asarray(quat_xyzw, dtype=np.float64)
    if q[3] < 0.0:
        q = -q
    sin_half = float(np.linalg.norm(q[:3]))
    if sin_half < 1e-12:
        return 2.0 * q[:3]  # small-angle limit
    return q[:3] * (2.0 * math.atan2(sin_half, q[3]) / sin_half)


def quat_conj(q: np.ndarray) -> np.ndarray:
    return np.array([-q[0], -q[1], -q[2], q[3]])


def rotvec_to_quat(rotvec: np.ndarray) -> np.ndarray:
    """Quaternion of a rotation vector (axis * angle)."""
    angle = float(np.linalg.norm(rotvec))
    if angle < 1e-12:
        return np.array([0.0, 0.0, 0.0, 1.0])
    axis = np.asarray(rotvec, dtype=np.float64) / angle
    return np.append(axis * math.sin(angle / 2.0), math.cos(angle / 2.0))


def quat_to_rotvec(q: np.ndarray) -> np.ndarray:
    """Rotation vector of a (not necessarily unit) quaternion, angle in [0, pi]."""
    q = np.asarray(q, dtype=np.float64)
    return rotation_vector(q / np.linalg.norm(q))


def rotation_between(current: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Base-frame rotation vector r with rotvec_to_quat(r) * current = target."""
    return quat_to_rotvec(quat_multiply(target, quat_conj(current)))
