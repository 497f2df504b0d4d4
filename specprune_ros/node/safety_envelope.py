"""The executor's safety envelope for Cartesian commands, and pose-target integration.

No ROS imports. Units: metres, radians, seconds; vectors in the robot base frame;
quaternions (x, y, z, w). ``Envelope.limit`` takes the twist a chunk asks for and returns
the one that may be commanded, naming every intervention:

1. ``ramp_in``: for ``ramp_in_s`` after (re)activation the speed limits grow linearly from 0
   (``ramp_factor``; the executor applies it to its joint speed limit too).
2. ``linear_speed`` / ``angular_speed``: the vector is scaled down to the limit (direction
   kept).
3. ``linear_accel`` / ``angular_accel``: the change from the previous command is scaled to
   ``max_*_accel * dt``.
4. ``workspace``: per axis, no velocity that would carry the measured position out of the
   box within one tick; outside the box only motion back towards it is allowed (none is
   forced). The box is hard: it may brake harder than the acceleration limit.

``PoseIntegrator`` turns the limited twist into a PoseStamped target for Cartesian
impedance controllers: starting from the measured pose, the target advances by v dt and
w dt each tick, is kept inside the workspace box and at most ``max_pose_lead_m`` /
``max_pose_lead_rad`` ahead of the measured pose (``pose_lead``), and restarts from the
measured pose after every hold.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Optional, Tuple

import numpy as np

from specprune_ros.node.observation_builder import quat_multiply, rotation_vector

INTERVENTIONS = ("ramp_in", "linear_speed", "angular_speed", "linear_accel", "angular_accel",
                 "workspace", "pose_lead")


# ------------------------------------------------------------------------------ rotations
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


def ramp_factor(ramp_in_s: float, since_activation: float) -> float:
    """The fraction of the speed limits allowed ``since_activation`` seconds after
    (re)activation: 0 growing linearly to 1 over ``ramp_in_s`` (0: always 1)."""
    if ramp_in_s <= 0.0:
        return 1.0
    return min(1.0, max(since_activation, 0.0) / ramp_in_s)


def _scale_to(vec: np.ndarray, limit: float) -> Tuple[np.ndarray, bool]:
    norm = float(np.linalg.norm(vec))
    if norm <= limit or norm == 0.0:
        return vec, False
    return vec * (limit / norm), True


# ------------------------------------------------------------------------------ envelope
@dataclass(frozen=True)
class Limits:
    """Every limit of the envelope (the executor's live parameters)."""

    workspace_min: Tuple[float, float, float] = (0.25, -0.45, -0.11)
    workspace_max: Tuple[float, float, float] = (0.85, 0.45, 0.6)
    max_linear_speed: float = 0.25
    max_angular_speed: float = 1.0
    max_linear_accel: float = 2.0
    max_angular_accel: float = 8.0
    ramp_in_s: float = 1.0
    max_pose_lead_m: float = 0.05
    max_pose_lead_rad: float = 0.3

    def __post_init__(self) -> None:
        lo, hi = np.asarray(self.workspace_min), np.asarray(self.workspace_max)
        if lo.shape != (3,) or hi.shape != (3,) or not np.all(np.isfinite(lo)) \
                or not np.all(np.isfinite(hi)):
            raise ValueError("workspace_min and workspace_max need 3 finite values each")
        if np.any(lo >= hi):
            raise ValueError(f"workspace_min {list(lo)} must be below workspace_max {list(hi)} "
                             "on every axis")
        for name in ("max_linear_speed", "max_angular_speed", "max_linear_accel",
                     "max_angular_accel", "ramp_in_s", "max_pose_lead_m", "max_pose_lead_rad"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0.0:
                raise ValueError(f"{name} must be finite and >= 0, got {value}")


@dataclass
class Limited:
    """A limited twist and the interventions that shaped it."""

    linear: np.ndarray
    angular: np.ndarray
    interventions: List[str]


class Envelope:
    """Speed, acceleration, ramp-in and workspace limits of a Cartesian twist command."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.stop()

    def stop(self) -> None:
        """The arm was commanded to hold: the next command accelerates from rest."""
        self._linear = np.zeros(3)
        self._angular = np.zeros(3)

    def limit(self, linear: np.ndarray, angular: np.ndarray, position: np.ndarray, dt: float,
              since_activation: float) -> Limited:
        """The command allowed this tick (``dt``: the control period; ``position``: the
        measured end-effector position; ``since_activation``: seconds since the executor
        was activated or the e-stop reset)."""
        lim, notes = self.limits, []
        v, w = np.asarray(linear, dtype=np.float64), np.asarray(angular, dtype=np.float64)
        ramp = ramp_factor(lim.ramp_in_s, since_activation)
        v_max, w_max = lim.max_linear_speed * ramp, lim.max_angular_speed * ramp
        v, hit_v = _scale_to(v, v_max)
        w, hit_w = _scale_to(w, w_max)
        if ramp < 1.0 and (hit_v or hit_w):
            notes.append("ramp_in")
        elif hit_v or hit_w:
            notes += ["linear_speed"] * hit_v + ["angular_speed"] * hit_w
        dv, hit = _scale_to(v - self._linear, lim.max_linear_accel * dt)
        if hit:
            v = self._linear + dv
            notes.append("linear_accel")
        dw, hit = _scale_to(w - self._angular, lim.max_angular_accel * dt)
        if hit:
            w = self._angular + dw
            notes.append("angular_accel")
        v, hit = self._inside_box(v, np.asarray(position, dtype=np.float64), dt)
        if hit:
            notes.append("workspace")
        self._linear, self._angular = v.copy(), w.copy()
        return Limited(v, w, notes)

    def _inside_box(self, v: np.ndarray, p: np.ndarray, dt: float) -> Tuple[np.ndarray, bool]:
        lo, hi = np.asarray(self.limits.workspace_min), np.asarray(self.limits.workspace_max)
        upper = np.maximum((hi - p) / dt, 0.0)  # outside: only back towards the box
        lower = np.minimum((lo - p) / dt, 0.0)
        out = np.clip(v, lower, upper)
        return out, bool(np.any(np.abs(out - v) > 1e-12))


class PoseIntegrator:
    """Pose targets integrated from the measured pose (see the module docstring)."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Restart from the measured pose at the next step (after a hold)."""
        self.position: Optional[np.ndarray] = None
        self.orientation: Optional[np.ndarray] = None

    def hold(self, position: np.ndarray,
             orientation: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """The hold target: the measured pose; integration restarts from it."""
        self.reset()
        return np.array(position, dtype=np.float64), np.array(orientation, dtype=np.float64)

    def step(self, linear: np.ndarray, angular: np.ndarray, dt: float, position: np.ndarray,
             orientation: np.ndarray, limits: Limits) -> Tuple[np.ndarray, np.ndarray,
                                                               List[str]]:
        """Advance the target by one tick; (position, orientation, interventions)."""
        notes: List[str] = []
        pos = np.asarray(position, dtype=np.float64)
        quat = np.asarray(orientation, dtype=np.float64)
        base_p = pos if self.position is None else self.position
        base_q = quat if self.orientation is None else self.orientation
        target_p = base_p + np.asarray(linear) * dt
        target_q = quat_multiply(rotvec_to_quat(np.asarray(angular) * dt), base_q)
        lead, hit = _scale_to(target_p - pos, limits.max_pose_lead_m)
        lead_r, hit_r = _scale_to(rotation_between(quat, target_q), limits.max_pose_lead_rad)
        if hit or hit_r:
            notes.append("pose_lead")
        target_p = pos + lead
        target_q = quat_multiply(rotvec_to_quat(lead_r), quat)
        lo, hi = np.asarray(limits.workspace_min), np.asarray(limits.workspace_max)
        boxed = np.clip(target_p, np.minimum(lo, pos), np.maximum(hi, pos))  # never outward
        if np.any(np.abs(boxed - target_p) > 1e-12):
            notes.append("workspace")
            target_p = boxed
        self.position, self.orientation = target_p, target_q / np.linalg.norm(target_q)
        return self.position.copy(), self.orientation.copy(), notes
