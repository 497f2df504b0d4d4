"""The executor's safety envelope for Cartesian commands, and pose-target integration.

No ROS imports. Units: metres, radians, seconds; vectors in the robot base frame;
quaternions (x, y, z, w). ``Envelope.limit`` takes the twist a chunk asks for (or, in a
hold, zero) and returns the one that may be commanded, naming every intervention:

1. ``ramp_in``: for ``ramp_in_s`` after (re)activation the speed limits grow linearly from 0
   (``ramp_factor``; the executor applies it to its joint speed limits too).
2. ``linear_speed`` / ``angular_speed``: the vector is scaled down to the limit (direction
   kept).
3. ``workspace``: per axis, no velocity from which the arm could not stop inside the box:
   held until the next tick (at the latest: ``horizon``, a late tick must not carry a
   twist out) and then braked at ``max_linear_accel`` (``stopping_speed``), from the
   position at command time (the caller extrapolates the
   measured pose with ``CommandHistory``: its age and the controller's lag). Outside the
   box only motion back towards it is allowed (none is forced).
4. ``linear_accel`` / ``angular_accel``: the change from the previous command is scaled to
   ``max_*_accel * period``, while the previous command is itself allowed.
5. ``stop_decel``: a previous command that is no longer allowed (a hold, a lowered speed
   limit, the box closing in) is brought into the limits at ``max_*_stop_decel`` (or the
   acceleration limit where that is larger: a stop may be firmer than a start, never
   gentler, and never a step).
6. ``workspace`` again, the last resort: no velocity that leaves the box before the next
   tick (``horizon``; a box moved live, a pose that jumped), whatever the deceleration.

``orientation`` (off by default): the orientation cone, the box's counterpart for the
tool's orientation: its angle from ``orientation_reference`` (whose rate is exactly the
angular velocity's component along the deviation's axis) stays within
``max_orientation_deviation_rad``, braked at ``max_angular_accel`` as in 3, held as in 6;
outside it only rotation back (none forced).

``period`` is the actual time between the executor's ticks (on a 20 Hz /clock it is 50 ms
with a nominal 20 ms), so the limits hold per second, not per tick.

``PoseIntegrator`` turns the limited twist into a PoseStamped target for Cartesian
impedance controllers: the target advances by v period and w period each tick from the
last target (from the measured pose at the start) and never moves out of the workspace box
(a target already outside is not pulled in: only the envelope's motion back). A
step never takes it further than ``max_pose_lead_m`` / ``max_pose_lead_rad`` from the
measured pose (``pose_lead``), nor further than it already is: the target never follows the
measured pose on its own (an arm pushed away, one bad pose sample would step it). In a
hold it is latched: it advances only by the decelerating twist, from the last target (or,
with none, the measured pose), never outward, as a unit quaternion, and never follows the
measured pose (an arm that settles 2 mm low would drag it down).
"""
from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np

from specprune_ros.node.quaternions import quat_multiply, rotation_between, rotvec_to_quat

#: why an acceleration limit of 0 is refused
NO_ZERO_ACCEL = ("at 0 a moving arm could never be slowed by the policy's commands (to stop "
                 "it, set the speed limit to 0 or raise the e-stop)")

INTERVENTIONS = ("ramp_in", "linear_speed", "angular_speed", "linear_accel", "angular_accel",
                 "stop_decel", "workspace", "orientation", "pose_lead")


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


def stopping_speed(distance: np.ndarray, decel: float, period: float) -> np.ndarray:
    """The largest speed towards a limit ``distance`` away (per element; <= 0: none) that
    can be held for one ``period`` and then braked to rest at ``decel`` before the limit:
    v period + v^2 / (2 decel) <= distance."""
    d = np.maximum(np.asarray(distance, dtype=np.float64), 0.0)
    if decel <= 0.0:
        return d / period
    return decel * (np.sqrt(period ** 2 + 2.0 * d / decel) - period)


def approach(previous: np.ndarray, wanted: np.ndarray, allowed: bool, rate: float,
             stop_rate: float, period: float) -> Tuple[np.ndarray, str]:
    """One tick from the ``previous`` command towards ``wanted``: at most ``rate * period``
    while the previous command is ``allowed`` (note "accel" when that binds), else at most
    ``stop_rate * period`` (note "stop_decel" when that binds). Vectors are limited as a
    whole (direction kept)."""
    step, hit = _scale_to(wanted - previous, (rate if allowed else stop_rate) * period)
    return previous + step, ("" if not hit else "accel" if allowed else "stop_decel")


# ------------------------------------------------------------------------------ envelope
def finite(*arrays: np.ndarray) -> bool:
    return all(bool(np.all(np.isfinite(a))) for a in arrays)


def check_non_negative(limits: object, names: Tuple[str, ...]) -> None:
    """ValueError naming the first of ``names`` whose value is not finite and >= 0."""
    for name in names:
        value = getattr(limits, name)
        if not math.isfinite(value) or value < 0.0:
            raise ValueError(f"{name} must be finite and >= 0, got {value}")


@dataclass(frozen=True)
class Limits:
    """Every limit of the envelope (the executor's live parameters)."""

    workspace_min: Tuple[float, float, float] = (0.25, -0.45, -0.11)
    workspace_max: Tuple[float, float, float] = (0.85, 0.45, 0.6)
    max_linear_speed: float = 0.25
    max_angular_speed: float = 1.0
    max_linear_accel: float = 2.0
    max_angular_accel: float = 8.0
    # Franka Panda's own Cartesian limits are 13 m/s^2 and 25 rad/s^2: a stop at these
    # rates stays well inside what the robot's velocity interface accepts
    max_linear_stop_decel: float = 5.0
    max_angular_stop_decel: float = 20.0
    controller_lag_s: float = 0.05
    ramp_in_s: float = 1.0
    max_pose_lead_m: float = 0.05
    max_pose_lead_rad: float = 0.3
    # the orientation cone: the tool's orientation stays within max_orientation_deviation_rad
    # of orientation_reference (x y z w, base frame); pi: off. (1, 0, 0, 0) is a tool
    # pointing down in a z-up base frame (Franka's home), but tool frames differ per robot
    orientation_reference: Tuple[float, float, float, float] = (1.0, 0.0, 0.0, 0.0)
    max_orientation_deviation_rad: float = math.pi

    def __post_init__(self) -> None:
        lo, hi = np.asarray(self.workspace_min), np.asarray(self.workspace_max)
        if lo.shape != (3,) or hi.shape != (3,) or not finite(lo, hi):
            raise ValueError("workspace_min and workspace_max need 3 finite values each")
        if np.any(lo >= hi):
            raise ValueError(f"workspace_min {list(lo)} must be below workspace_max {list(hi)} "
                             "on every axis")
        check_non_negative(self, ("max_linear_speed", "max_angular_speed", "max_linear_accel",
                                  "max_angular_accel", "max_linear_stop_decel",
                                  "max_angular_stop_decel", "controller_lag_s", "ramp_in_s",
                                  "max_pose_lead_m", "max_pose_lead_rad"))
        ref = np.asarray(self.orientation_reference, dtype=np.float64)
        if ref.shape != (4,) or not finite(ref) or not 0.5 < float(np.linalg.norm(ref)) < 2.0:
            raise ValueError(f"orientation_reference must be a quaternion x y z w of length "
                             f"~1, got {list(ref)}")
        if not 0.0 <= self.max_orientation_deviation_rad <= math.pi:
            raise ValueError(f"max_orientation_deviation_rad must be in [0, pi], got "
                             f"{self.max_orientation_deviation_rad}")
        if min(self.max_linear_stop_decel, self.max_angular_stop_decel) <= 0.0:
            raise ValueError("the stop decelerations must be > 0: a hold has to stop")
        if min(self.max_linear_accel, self.max_angular_accel) <= 0.0:
            raise ValueError(f"max_linear_accel and max_angular_accel must be > 0: "
                             f"{NO_ZERO_ACCEL}")

    @property
    def linear_stop(self) -> float:
        """The linear deceleration of a stop: never gentler than a start."""
        return max(self.max_linear_stop_decel, self.max_linear_accel)

    @property
    def angular_stop(self) -> float:
        return max(self.max_angular_stop_decel, self.max_angular_accel)

    @property
    def cone(self) -> bool:
        """Whether the orientation cone is on."""
        return self.max_orientation_deviation_rad < math.pi

    def deviation(self, orientation: np.ndarray) -> np.ndarray:
        """The base-frame rotation vector from the reference to ``orientation``: its norm
        is the angle the cone bounds, and d(angle)/dt = w . its direction, exactly."""
        return rotation_between(np.asarray(self.orientation_reference, dtype=np.float64),
                                np.asarray(orientation, dtype=np.float64))


@dataclass
class Limited:
    """A limited twist and the interventions that shaped it."""

    linear: np.ndarray
    angular: np.ndarray
    interventions: List[str]


class CommandHistory:
    """The linear velocities commanded lately (each from its time until the next), to
    extrapolate a measured position to the present."""

    def __init__(self, keep_s: float = 12.0) -> None:  # max_state_age_s + controller_lag_s
        self.keep_s = keep_s
        self.clear()

    def clear(self) -> None:
        self._times: List[float] = []
        self._velocities: List[np.ndarray] = []

    @property
    def empty(self) -> bool:
        return not self._times

    def add(self, t: float, velocity: np.ndarray) -> None:
        self._times.append(t)
        self._velocities.append(np.asarray(velocity, dtype=np.float64).copy())
        old = bisect.bisect_left(self._times, t - self.keep_s) - 1  # keep the one in force
        if old > 0:
            del self._times[:old], self._velocities[:old]

    def displacement(self, start: float, end: float) -> np.ndarray:
        """The integral of the commanded velocity from ``start`` to ``end`` (zero before
        the first command kept)."""
        total = np.zeros(3)
        first = max(bisect.bisect_right(self._times, start) - 1, 0)  # the one in force
        for i in range(first, len(self._times)):
            t = self._times[i]
            until = self._times[i + 1] if i + 1 < len(self._times) else end
            lo, hi = max(t, start), min(until, end)
            if hi > lo:
                total += self._velocities[i] * (hi - lo)
        return total


class Envelope:
    """Speed, acceleration, stop, ramp-in and workspace limits of a Cartesian twist."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.stop()

    def stop(self) -> None:
        """The arm is at rest: the next command accelerates from zero."""
        self._linear = np.zeros(3)
        self._angular = np.zeros(3)

    @property
    def linear(self) -> np.ndarray:
        """The last commanded linear velocity."""
        return self._linear.copy()

    @property
    def angular(self) -> np.ndarray:
        return self._angular.copy()

    def limit(self, linear: np.ndarray, angular: np.ndarray, position: Optional[np.ndarray],
              period: float, since_activation: float, hold: bool = False,
              horizon: float = 0.0, orientation: Optional[np.ndarray] = None) -> Limited:
        """The command allowed this tick. ``position``: the end effector's position at
        command time (None: unknown, no box); ``period``: the time since the last tick, the
        acceleration steps' time; ``horizon``: the latest the next tick may come, which the
        box plans with (at least ``period``); ``since_activation``: seconds since the speed
        limits started ramping in; ``hold``: stop (``linear`` and ``angular`` are
        ignored); ``orientation``: the tool's at command time, for the orientation cone
        (None: unknown, no cone)."""
        lim, notes = self.limits, []
        v = np.zeros(3) if hold else np.asarray(linear, dtype=np.float64)
        w = np.zeros(3) if hold else np.asarray(angular, dtype=np.float64)
        ramp = ramp_factor(lim.ramp_in_s, since_activation)
        v_max, w_max = lim.max_linear_speed * ramp, lim.max_angular_speed * ramp
        v, hit_v = _scale_to(v, v_max)
        w, hit_w = _scale_to(w, w_max)
        if ramp < 1.0 and (hit_v or hit_w):
            notes.append("ramp_in")
        elif hit_v or hit_w:
            notes += ["linear_speed"] * hit_v + ["angular_speed"] * hit_w
        horizon = max(period, horizon)
        low, high = self._box(position, horizon)
        boxed = np.clip(v, low, high)
        if np.any(np.abs(boxed - v) > 1e-12):
            notes.append("workspace")
        deviation = self._deviation(orientation)
        coned = self._cone(w, deviation, horizon)
        if np.any(np.abs(coned - w) > 1e-12):
            notes.append("orientation")
            w = coned
        tol = 1e-9
        v_ok = not hold and float(np.linalg.norm(self._linear)) <= v_max + tol \
            and bool(np.all(self._linear >= low - tol) and np.all(self._linear <= high + tol))
        w_ok = not hold and float(np.linalg.norm(self._angular)) <= w_max + tol \
            and bool(np.all(np.abs(self._cone(self._angular, deviation, horizon)
                                   - self._angular) <= tol))
        v, note_v = approach(self._linear, boxed, v_ok, lim.max_linear_accel,
                             lim.linear_stop, period)
        w, note_w = approach(self._angular, w, w_ok, lim.max_angular_accel,
                             lim.angular_stop, period)
        notes += [f"linear_{note_v}"] * (note_v == "accel") + \
            [f"angular_{note_w}"] * (note_w == "accel") + \
            ["stop_decel"] * ("stop_decel" in (note_v, note_w))
        last = self._box(position, horizon, brake=False)
        hard = np.clip(v, *last)
        if np.any(np.abs(hard - v) > 1e-12):
            notes.append("workspace")
            v = hard
        hard_w = self._cone(w, deviation, horizon, brake=False)
        if np.any(np.abs(hard_w - w) > 1e-12):
            notes.append("orientation")
            w = hard_w
        self._linear, self._angular = v.copy(), w.copy()
        return Limited(v, w, list(dict.fromkeys(notes)))

    def _box(self, position: Optional[np.ndarray], period: float,
             brake: bool = True) -> Tuple[np.ndarray, np.ndarray]:
        """Per axis, the (lowest, highest) velocity allowed at ``position``: one that can
        stop inside the box at ``max_linear_accel`` (``brake``), or that does not leave it
        within one period; outside the box only motion back towards it."""
        if position is None:
            return np.full(3, -np.inf), np.full(3, np.inf)
        p = np.asarray(position, dtype=np.float64)
        lo, hi = np.asarray(self.limits.workspace_min), np.asarray(self.limits.workspace_max)
        if brake:
            accel = self.limits.max_linear_accel
            return -stopping_speed(p - lo, accel, period), stopping_speed(hi - p, accel, period)
        return np.minimum((lo - p) / period, 0.0), np.maximum((hi - p) / period, 0.0)

    def _deviation(self, orientation: Optional[np.ndarray]) -> Optional[np.ndarray]:
        """The cone's deviation at ``orientation`` (``Limits.deviation``); None with the
        cone off or the orientation unknown."""
        if orientation is None or not self.limits.cone:
            return None
        return self.limits.deviation(orientation)

    def _cone(self, w: np.ndarray, r: Optional[np.ndarray], period: float,
              brake: bool = True) -> np.ndarray:
        """``w`` as the orientation cone allows it at deviation ``r`` (``_deviation``;
        None: no bound): the angle after one
        ``period`` stays within the limit (outside it, within the present angle: only
        back). Along the deviation's direction n the angle's rate is w . n; the part of w
        across n adds to the angle at second order, sqrt((angle + (w . n) T)^2 +
        (|w across| T)^2) bounding the new angle (curvature makes SO(3)'s smaller), so
        the part along n is capped for both. ``brake``: the part along n can also still
        stop before the edge at ``max_angular_accel`` (as ``_box``)."""
        lim = self.limits
        if r is None:
            return w
        angle = float(np.linalg.norm(r))
        edge = lim.max_orientation_deviation_rad
        reach = max(edge, angle)
        if angle < 1e-9:  # at the reference every direction leads away
            speed = stopping_speed(reach, lim.max_angular_accel, period) if brake \
                else reach / period
            return _scale_to(w, float(speed))[0]
        n = r / angle
        along = float(w @ n)
        across, _ = _scale_to(w - along * n, reach / period)
        room = math.sqrt(max(reach ** 2 - float(across @ across) * period ** 2, 0.0))
        high, low = (room - angle) / period, (-room - angle) / period
        if brake:
            high = min(high, float(stopping_speed(edge - angle, lim.max_angular_accel, period)))
        return across + float(np.clip(along, low, high)) * n


def orientation_not_outward(target: np.ndarray, limits: Limits, *present: np.ndarray
                            ) -> Tuple[np.ndarray, bool]:
    """``target``, or, where it is further from the cone's reference than both the limit
    and every ``present`` orientation, the first of them; (orientation, whether replaced)."""
    if not limits.cone:
        return target, False
    allowed = max([limits.max_orientation_deviation_rad]
                  + [float(np.linalg.norm(limits.deviation(q))) for q in present])
    if float(np.linalg.norm(limits.deviation(target))) <= allowed + 1e-9:
        return target, False
    return np.asarray(present[0], dtype=np.float64).copy(), True


def not_outward(target: np.ndarray, lo: Sequence[float], hi: Sequence[float],
                *present: np.ndarray) -> np.ndarray:
    """``target`` clipped into [lo, hi] (the workspace box, joint limits) widened to every
    ``present`` position (the measured one, the last target): a limit stops outward motion,
    it never pulls a target that is already beyond it (after a live change of the limits,
    an arm moved by hand) back at once: that would be a step of any size. Motion back is
    the envelope's, at its speed and acceleration limits."""
    lo, hi = np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
    for p in present:
        lo, hi = np.minimum(lo, p), np.maximum(hi, p)
    return np.clip(target, lo, hi)


class PoseIntegrator:
    """Pose targets integrated from the measured pose (see the module docstring)."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Start again from the measured pose at the next step (activation, e-stop reset,
        dry_run switched off: the arm may be anywhere near the old target)."""
        self.position: Optional[np.ndarray] = None
        self.orientation: Optional[np.ndarray] = None

    def latch(self, position: np.ndarray, orientation: np.ndarray) -> None:
        """A hold with no target yet: at ``position``, even outside the box (pulling the
        target in would be a step), and ``orientation`` (normalised)."""
        if self.position is not None:
            return
        self.position = np.asarray(position, dtype=np.float64).copy()
        q = np.asarray(orientation, dtype=np.float64)
        self.orientation = q / np.linalg.norm(q)

    def coast(self, linear: np.ndarray, angular: np.ndarray, period: float, limits: Limits
              ) -> Tuple[np.ndarray, np.ndarray]:
        """A hold step: the latched target moves only by the (decelerating) twist, inside
        the box; (position, orientation)."""
        p = not_outward(self.position + np.asarray(linear) * period, limits.workspace_min,
                        limits.workspace_max, self.position)
        q = quat_multiply(rotvec_to_quat(np.asarray(angular) * period), self.orientation)
        q, _ = orientation_not_outward(q / np.linalg.norm(q), limits, self.orientation)
        self.position, self.orientation = p, q
        return self.position.copy(), self.orientation.copy()

    def step(self, linear: np.ndarray, angular: np.ndarray, period: float,
             position: np.ndarray, orientation: np.ndarray, limits: Limits
             ) -> Tuple[np.ndarray, np.ndarray, List[str]]:
        """Advance the target by one tick; (position, orientation, interventions)."""
        notes: List[str] = []
        pos = np.asarray(position, dtype=np.float64)
        quat = np.asarray(orientation, dtype=np.float64)
        quat = quat / np.linalg.norm(quat)
        base_p = pos if self.position is None else self.position
        base_q = quat if self.orientation is None else self.orientation
        target_p = base_p + np.asarray(linear) * period
        target_q = quat_multiply(rotvec_to_quat(np.asarray(angular) * period), base_q)
        # never further from the measured pose than the lead, nor than the target already is
        reach = max(limits.max_pose_lead_m, float(np.linalg.norm(base_p - pos)))
        reach_r = max(limits.max_pose_lead_rad,
                      float(np.linalg.norm(rotation_between(quat, base_q))))
        lead, hit = _scale_to(target_p - pos, reach)
        lead_r, hit_r = _scale_to(rotation_between(quat, target_q), reach_r)
        if hit or hit_r:
            notes.append("pose_lead")
        target_p = pos + lead
        target_q = quat_multiply(rotvec_to_quat(lead_r), quat)
        boxed = not_outward(target_p, limits.workspace_min, limits.workspace_max, pos, base_p)
        if np.any(np.abs(boxed - target_p) > 1e-12):
            notes.append("workspace")
            target_p = boxed
        target_q, turned = orientation_not_outward(target_q / np.linalg.norm(target_q), limits,
                                                   base_q, quat)
        if turned:
            notes.append("orientation")
        self.position, self.orientation = target_p, target_q / np.linalg.norm(target_q)
        return self.position.copy(), self.orientation.copy(), notes
