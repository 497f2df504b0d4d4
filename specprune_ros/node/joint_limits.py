"""Joint limits and joint-target motion for the executor's ``joint_trajectory`` output.

No ROS imports. A joint-space layout's actions are absolute joint positions; each tick
``JointMotion.move`` turns the action into the next joint target, per joint:

1. ``ramp_in`` / ``joint_speed``: at most ``max_joint_speed`` (or the joint's URDF
   ``velocity``, whichever is lower; ramped in like the Cartesian speed limits);
2. ``joint_position``: a speed from which the joint stops before its position limit at
   ``max_joint_accel`` (held one period, then braked: ``stopping_speed``); the target
   never moves out past a limit, not even in a hold; a joint already beyond one (the
   limits changed live, the arm was moved by hand) may only move back, and is never
   pulled back in one step;
3. ``joint_accel``: the change from the previous speed at most ``max_joint_accel`` per
   second while the previous speed is allowed; ``stop_decel``: one that is no longer
   allowed (a hold, a limit closing in, a lowered speed limit) is brought back at
   ``max_joint_stop_decel`` (or ``max_joint_accel`` where that is larger);
4. ``joint_lead``: a step never takes the target further than ``max_joint_lead`` from the
   measured joint (as joint_trajectory_controller's path tolerance would abort), so a
   blocked arm does not wind it up; nor further than it already is. The target never
   follows the measured joint on its own: a joint pushed away (a collision, a person) or
   one bad encoder sample must not step it, and a stepped target stored as the joint's
   velocity would carry on past the speed limit.

The target is integrated from the previous target (from the measured joints at the start):
an arm that settles 2 mm short of its target does not drag a hold down. Position limits
are the parameters ``joint_position_min`` / ``joint_position_max``, narrowed by the URDF's
``<limit lower upper velocity>`` when ``robot_description`` is published
(``parse_urdf_limits``; continuous joints have a velocity limit only). A URDF whose limits
for the executor's joints are unusable (``narrowed``: a negative velocity, lower above
upper, no overlap with the parameters' range) is refused whole, and a live parameter
change that would leave a joint no range inside the URDF's is rejected.
"""
from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from specprune_ros.node.safety_envelope import (NO_ZERO_ACCEL, check_non_negative, finite,
                                                not_outward, stopping_speed)


@dataclass(frozen=True)
class JointLimits:
    """The joint limits of the executor's parameters (one position pair per joint)."""

    joint_position_min: Tuple[float, ...]
    joint_position_max: Tuple[float, ...]
    max_joint_speed: float = 1.0
    max_joint_accel: float = 5.0
    max_joint_stop_decel: float = 10.0
    max_joint_lead: float = 0.1

    def __post_init__(self) -> None:
        lo, hi = np.asarray(self.joint_position_min), np.asarray(self.joint_position_max)
        if lo.shape != hi.shape or lo.ndim != 1 or not finite(lo, hi):
            raise ValueError("joint_position_min and joint_position_max need one finite value "
                             f"per joint, got {lo.size} and {hi.size}")
        bad = np.nonzero(lo >= hi)[0]
        if bad.size:
            raise ValueError(f"joint_position_min must be below joint_position_max for every "
                             f"joint; not for joints {bad.tolist()}")
        check_non_negative(self, ("max_joint_speed", "max_joint_accel", "max_joint_stop_decel",
                                  "max_joint_lead"))
        if self.max_joint_stop_decel <= 0.0:
            raise ValueError("max_joint_stop_decel must be > 0: a hold has to stop")
        if self.max_joint_accel <= 0.0:
            raise ValueError(f"max_joint_accel must be > 0: {NO_ZERO_ACCEL}")

    @property
    def stop_decel(self) -> float:
        """The deceleration of a stop: never gentler than a start."""
        return max(self.max_joint_stop_decel, self.max_joint_accel)


@dataclass(frozen=True)
class UrdfLimit:
    """One joint's ``<limit>``: position bounds (None for a continuous joint) and speed."""

    lower: Optional[float]
    upper: Optional[float]
    velocity: Optional[float]


def _attribute(limit: ET.Element, name: str, joint: str) -> Optional[float]:
    text = limit.get(name)
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"joint '{joint}': <limit {name}=\"{text}\"> is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"joint '{joint}': <limit {name}> is not finite")
    return value


def parse_urdf_limits(urdf: str) -> Dict[str, UrdfLimit]:
    """Every revolute, prismatic and continuous joint's limits in a URDF document (what
    robot_state_publisher publishes on robot_description); ValueError saying what is wrong.
    Only the robot's own ``<joint>`` elements count (not those inside ``<transmission>``)."""
    try:
        root = ET.fromstring(urdf)
    except ET.ParseError as exc:
        raise ValueError(f"not XML: {exc}") from None
    if root.tag != "robot":
        raise ValueError(f"the root element is <{root.tag}>, not <robot>")
    limits: Dict[str, UrdfLimit] = {}
    for joint in root.findall("joint"):
        name, kind, limit = joint.get("name", ""), joint.get("type"), joint.find("limit")
        if kind not in ("revolute", "prismatic", "continuous") or limit is None:
            continue
        bounded = kind != "continuous"
        limits[name] = UrdfLimit(_attribute(limit, "lower", name) if bounded else None,
                                 _attribute(limit, "upper", name) if bounded else None,
                                 _attribute(limit, "velocity", name))
    return limits


def narrowed(names: Sequence[str], limits: JointLimits, urdf: Dict[str, UrdfLimit]
             ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(lower, upper, max speed) per joint of ``names``: the parameters narrowed by the
    URDF's limits; ValueError naming the joint where a URDF limit is unusable (a negative
    velocity, lower above upper) or leaves no range inside the parameters'."""
    lo = np.array(limits.joint_position_min, dtype=np.float64)
    hi = np.array(limits.joint_position_max, dtype=np.float64)
    speed = np.full(len(names), limits.max_joint_speed)
    for i, name in enumerate(names):
        limit = urdf.get(name)
        if limit is None:
            continue
        if limit.velocity is not None and limit.velocity < 0.0:
            raise ValueError(f"joint '{name}': URDF <limit velocity=\"{limit.velocity}\"> "
                             "is negative")
        if limit.lower is not None and limit.upper is not None and limit.lower > limit.upper:
            raise ValueError(f"joint '{name}': URDF <limit lower=\"{limit.lower}\"> is above "
                             f"upper=\"{limit.upper}\"")
        lo[i] = lo[i] if limit.lower is None else max(lo[i], limit.lower)
        hi[i] = hi[i] if limit.upper is None else min(hi[i], limit.upper)
        speed[i] = speed[i] if limit.velocity is None else min(speed[i], limit.velocity)
        if lo[i] >= hi[i]:
            raise ValueError(
                f"joint '{name}': the URDF's range [{limit.lower}, {limit.upper}] leaves "
                f"nothing of the parameters' [{limits.joint_position_min[i]}, "
                f"{limits.joint_position_max[i]}]")
    return lo, hi, speed


def _frozen(arrays: Tuple[np.ndarray, ...]) -> Tuple[np.ndarray, ...]:
    """``arrays`` made read-only (bounds shared by every tick must not be changed by one)."""
    for a in arrays:
        a.setflags(write=False)
    return arrays


class JointMotion:
    """Joint targets for the ``joint_trajectory`` output (see the module docstring)."""

    def __init__(self, names: Sequence[str], limits: JointLimits) -> None:
        self.names = tuple(names)
        self._limits = limits
        self._urdf: Dict[str, UrdfLimit] = {}
        self._bounds = _frozen(narrowed(self.names, limits, self._urdf))
        self.reset()

    @property
    def limits(self) -> JointLimits:
        return self._limits

    @limits.setter
    def limits(self, limits: JointLimits) -> None:
        """New parameters (checked against the URDF in force: ValueError, nothing changed)."""
        self._bounds = _frozen(narrowed(self.names, limits, self._urdf))
        self._limits = limits

    @property
    def urdf(self) -> Dict[str, UrdfLimit]:
        """The robot_description's limits of the executor's joints in force."""
        return self._urdf

    @urdf.setter
    def urdf(self, urdf: Dict[str, UrdfLimit]) -> None:
        """Narrows the limits (an unusable one: ValueError naming the joint, nothing
        changed)."""
        self._bounds = _frozen(narrowed(self.names, self._limits, urdf))
        self._urdf = dict(urdf)

    def reset(self) -> None:
        """Start again from the measured joints, at rest."""
        self.target: Optional[np.ndarray] = None
        self.velocity = np.zeros(len(self.names))

    def bounds(self) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(lower, upper, max speed) per joint: the parameters narrowed by the URDF,
        computed when either changes (not every tick)."""
        return self._bounds

    def forget_target(self) -> None:
        """The target belongs to another timeline (the clock stepped back: a simulator
        reset moves the arm): the next hold latches at the next fresh measured joints, and
        the joints' speed is still brought down at the stop deceleration."""
        self.target = None

    def move(self, action: np.ndarray, measured: np.ndarray, period: float, ramp: float
             ) -> Tuple[np.ndarray, List[str]]:
        """The next target towards ``action`` (joint positions); (target, interventions)."""
        lo, hi, speed = self.bounds()
        base = np.asarray(measured if self.target is None else self.target, dtype=np.float64)
        notes: List[str] = []
        v_max = speed * ramp
        wanted = (np.asarray(action, dtype=np.float64) - base) / period
        capped = np.clip(wanted, -v_max, v_max)
        if np.any(np.abs(capped - wanted) > 1e-12):
            notes.append("ramp_in" if ramp < 1.0 else "joint_speed")
        low, high = self._stop_caps(base, lo, hi, period)
        braked = np.clip(capped, low, high)
        if np.any(np.abs(braked - capped) > 1e-12):
            notes.append("joint_position")
        tol = 1e-9
        allowed = (np.abs(self.velocity) <= v_max + tol) & (self.velocity >= low - tol) \
            & (self.velocity <= high + tol)
        rate = np.where(allowed, self.limits.max_joint_accel, self.limits.stop_decel)
        step = np.clip(braked - self.velocity, -rate * period, rate * period)
        binds = np.abs(step - (braked - self.velocity)) > 1e-12
        if np.any(binds & allowed):
            notes.append("joint_accel")
        if np.any(binds & ~allowed):
            notes.append("stop_decel")
        lead = self.limits.max_joint_lead
        free = base + (self.velocity + step) * period
        target = np.clip(free, np.minimum(measured - lead, base),
                         np.maximum(measured + lead, base))
        if np.any(np.abs(target - free) > 1e-12):
            notes.append("joint_lead")
        return self._commit(not_outward(target, lo, hi, base), base, period), notes

    def hold(self, measured: Optional[np.ndarray], period: float) -> Optional[np.ndarray]:
        """A hold step: the latched target (the last one, else ``measured``, even beyond a
        limit: pulling it in would be a step) moves only while the speed comes down at
        ``max_joint_stop_decel``, never outward; None with nothing to hold at."""
        lo, hi, _ = self.bounds()
        rate = self.limits.stop_decel * period
        slower = self.velocity - np.clip(self.velocity, -rate, rate)
        if self.target is None:
            self.velocity = slower  # the stop goes on while nothing can be commanded
            if measured is None:
                return None
            self.target = np.asarray(measured, dtype=np.float64).copy()
        return self._commit(not_outward(self.target + slower * period, lo, hi, self.target),
                            self.target, period)

    def final_hold(self, measured: Optional[np.ndarray]) -> Optional[Tuple[np.ndarray, float]]:
        """The last command when nothing follows it (deactivate, exit, dry_run on): the
        point where the joints come to rest at ``max_joint_stop_decel`` and the time to get
        there; None with nothing to hold at."""
        if self.target is None and measured is None:
            return None
        lo, hi, _ = self.bounds()
        base = np.asarray(self.target if self.target is not None else measured,
                          dtype=np.float64)
        decel = self.limits.stop_decel
        v = self.velocity
        rest = not_outward(base + v * np.abs(v) / (2.0 * decel), lo, hi, base)
        seconds = float(np.abs(v).max()) / decel
        self.target, self.velocity = rest, np.zeros(len(self.names))
        return rest.copy(), seconds

    def _stop_caps(self, position: np.ndarray, lo: np.ndarray, hi: np.ndarray,
                   period: float) -> Tuple[np.ndarray, np.ndarray]:
        accel = self.limits.max_joint_accel
        return (-stopping_speed(position - lo, accel, period),
                stopping_speed(hi - position, accel, period))

    def _commit(self, target: np.ndarray, base: np.ndarray, period: float) -> np.ndarray:
        self.velocity = (target - base) / period
        self.target = target
        return target.copy()
