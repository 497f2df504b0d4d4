"""Scripted LIBERO primitives beyond pick and place, from the privileged state. No ROS.

Each primitive is a closed-loop state machine like ``libero_experts.PickPlaceExpert``:
``reset()`` per episode, ``act(obs) -> (7,)`` per tick (LIBERO's OSC delta; 1 moves the
controller's goal 5 cm), ``phase_log``, ``done`` (its goal holds, as far as it can see),
``valid_start(obs)``, ``focus`` (the two bodies a demo recorder tracks) and ``part`` (0: a
single primitive is one part of its task; ``SequenceExpert`` counts its parts). It reads the true
state every tick, so a push that slipped or a knob the fingers left starts over from there.

The state comes from the worker's observation: movable objects as ``<name>_pos``, and the
fixture state every reply adds (``libero_worker``): region sites ``<site>_site_xpos``, fixture
poses ``<fixture>_fixture_xpos`` / ``_fixture_xquat`` and joint positions ``<joint>_joint_qpos``
(the stove's knob, drawers, doors).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import numpy as np
from scipy.spatial.transform import Rotation

from specprune.config import check_value, int_as_float

GRIPPER_OPEN, GRIPPER_CLOSE = -1.0, 1.0
SITE_POS, FIXTURE_POS, FIXTURE_QUAT, JOINT_QPOS = ("_site_xpos", "_fixture_xpos",
                                                   "_fixture_xquat", "_joint_qpos")
APPROACH, DESCEND, SWEEP, PUSH, RETREAT = "approach", "descend", "sweep", "push", "retreat"
Obs = Dict[str, np.ndarray]


def check_positive(config: object, names: Tuple[str, ...]) -> None:
    """ValueError naming the config, the field and the value unless each of ``names`` is a
    positive number."""
    for name in names:
        check_value(type(config).__name__, name, int_as_float(getattr(config, name), float),
                    float, 1e-9, None)


def scene_pos(obs: Obs, name: str) -> np.ndarray:
    """World position (3,) of ``name``: a movable object, else the object whose
    ``_contain_region`` it is (the container's origin), else a region site, else a fixture.
    KeyError naming what the observation has."""
    stripped = name[:-len("_contain_region")] if name.endswith("_contain_region") else None
    for key in (f"{name}_pos", f"{stripped}_pos" if stripped else None, name + SITE_POS,
                name + FIXTURE_POS):
        if key is not None and key in obs:
            return np.asarray(obs[key], dtype=np.float64)
    known = sorted(k for k in obs if k.endswith(("_pos", SITE_POS, FIXTURE_POS))
                   and not k.startswith("robot0_") and "_to_robot0_" not in k)
    raise KeyError(f"nothing called {name!r} in the observation; it has {known}")


def body_of(obs: Obs, name: str) -> str:
    """The body (object or fixture) a region belongs to, e.g. ``flat_stove_1_cook_region``
    -> ``flat_stove_1``; ``name`` itself when it is one."""
    bodies = [k[:-len("_pos")] for k in obs if k.endswith("_pos") and "_to_robot0_" not in k
              and not k.startswith("robot0_")]
    bodies += [k[:-len(FIXTURE_POS)] for k in obs if k.endswith(FIXTURE_POS)]
    owners = [b for b in bodies if name == b or name.startswith(b + "_")]
    return max(owners, key=len) if owners else name


def yaw_of(quat_xyzw: np.ndarray) -> float:
    """Rotation about world z (radians) of an orientation (x, y, z, w): the yaw of its
    z-y-x Euler angles."""
    return float(Rotation.from_quat(quat_xyzw).as_euler("ZYX")[0])


def on_circle(centre: np.ndarray, radius: float, angle: float, z: float) -> np.ndarray:
    """The point at ``angle`` (radians, about world z) on a horizontal circle."""
    return np.array([centre[0] + radius * np.cos(angle), centre[1] + radius * np.sin(angle), z])


def unit_xy(vector: np.ndarray) -> np.ndarray:
    """The horizontal unit vector along ``vector`` (zero when it has no horizontal part)."""
    flat = np.array([vector[0], vector[1], 0.0])
    norm = float(np.linalg.norm(flat))
    return flat / norm if norm > 1e-9 else flat


def move(eef: np.ndarray, goal: np.ndarray, gain: float, grip: float,
         limit: float = 1.0) -> np.ndarray:
    """The (7,) action towards ``goal`` with the hand's orientation held, each position
    component clipped to [-limit, limit]."""
    action = np.zeros(7)
    action[:3] = np.clip(gain * (goal - eef), -limit, limit)
    action[6] = grip
    return action


class Primitive:
    """What the state machines share: phases with a log, a tick counter per phase."""

    focus: Tuple[str, str] = ("", "")
    part = 0  # the part of the task acting (one primitive is one part)

    def reset(self) -> None:
        """Start a new episode."""
        self.phase = APPROACH
        self.phase_log: List[Tuple[int, str]] = []
        self._tick = 0
        self._ticks = 0
        self.done = False
        self._hand: Optional[np.ndarray] = None  # the hand orientation at the first tick

    def _rotation(self, obs: Obs, turn: float, gain: float) -> np.ndarray:
        """The orientation part (3,) of an action that turns the hand ``turn`` radians about
        world z from where it was at the first tick, and holds it there."""
        hand = quat_matrix(obs["robot0_eef_quat"])
        if self._hand is None:
            self._hand = hand
        return np.clip(gain * rotation_error(hand, yaw_matrix(turn) @ self._hand), -1.0, 1.0)

    def _turned_back(self, obs: Obs, tolerance: float = 0.1) -> bool:
        """Whether the hand is within ``tolerance`` radians of its first-tick orientation."""
        hand = quat_matrix(obs["robot0_eef_quat"])
        return self._hand is None or float(np.linalg.norm(rotation_error(hand, self._hand))) \
            < tolerance

    def valid_start(self, obs: Obs) -> bool:
        """Whether the sampled start lets this primitive run (default: always)."""
        return True

    def _enter(self, phase: str) -> None:
        self.phase, self._ticks = phase, 0
        self.phase_log.append((self._tick, phase))


# ------------------------------------------------------------------------------ turn on
@dataclass(frozen=True)
class KnobConfig:
    """Turning a knob that rotates about world z by pushing its pointer round with closed
    fingers (metres, radians, control ticks).

    radius: where the fingertips push, from the knob's axis (its pointer reaches ~4 cm).
    start_radius: where they come down, clear of the pointer (descending on it at 3.5 cm
    stalled on its top, 4.5 cm up: 0 of 1). height: grip-site height above the fixture's
    origin (the pointer's top is ~4.4 cm up, the fingertips ~1 cm below the grip site).
    start_behind / lead: the push starts this far behind the pointer's angle and aims this
    far ahead of it. on_angle: joint position that counts as done (LIBERO's flat stove is on
    from 0.5 rad; a margin against the knob springing back). gain, xy_tolerance: as the
    pick-and-place expert's. lost_radius: fingertips farther than this from the axis in the
    sweep have slipped off: approach again. stall_ticks: a sweep that turned the knob less
    than 0.05 rad in this many ticks is stuck (on the dial's arms, LIBERO-10 task 2 seed
    1000 stopped at 0.15 rad): approach again.
    """

    radius: float = 0.04
    start_radius: float = 0.065
    height: float = 0.03
    start_behind: float = 0.9
    lead: float = 0.6
    on_angle: float = 0.8
    stall_ticks: int = 15
    gain: float = 20.0
    xy_tolerance: float = 0.01
    lost_radius: float = 0.07
    hover: float = 0.06

    def __post_init__(self) -> None:
        check_positive(self, ("radius", "start_radius", "height", "start_behind", "lead",
                              "on_angle", "gain", "xy_tolerance", "lost_radius", "hover"))
        check_value("KnobConfig", "stall_ticks", self.stall_ticks, int, 1, None)


class TurnOnExpert(Primitive):
    """``(Turnon <fixture>)``: push the knob's pointer counter-clockwise (seen from above)
    until its joint passes ``on_angle``. The knob's axis is the fixture's ``button`` body,
    at the fixture's origin (LIBERO's flat stove; measured)."""

    def __init__(self, fixture: str, config: Optional[KnobConfig] = None):
        self.fixture, self.config = fixture, config or KnobConfig()
        self.joint = f"{fixture}_button"
        self.focus = (fixture, fixture)
        self.reset()

    def reset(self) -> None:
        """Start a new episode."""
        super().reset()
        self._angles: List[float] = []

    def act(self, obs: Obs) -> np.ndarray:
        """The (7,) action for this observation."""
        cfg = self.config
        eef = np.asarray(obs["robot0_eef_pos"], dtype=np.float64)
        centre = np.asarray(obs[self.fixture + FIXTURE_POS], dtype=np.float64)
        yaw = yaw_of(obs[self.fixture + FIXTURE_QUAT])
        angle = float(np.asarray(obs[self.joint + JOINT_QPOS]).reshape(-1)[0])
        z = centre[2] + cfg.height
        start = on_circle(centre, cfg.start_radius, yaw + angle - cfg.start_behind, z)
        self._ticks += 1
        self.done = angle >= cfg.on_angle
        if self.done and self.phase != RETREAT:
            self._enter(RETREAT)
        elif self.phase == APPROACH:
            if float(np.linalg.norm((start - eef)[:2])) < cfg.xy_tolerance:
                self._enter(DESCEND)
        elif self.phase == DESCEND and eef[2] < z + cfg.xy_tolerance:
            self._enter(SWEEP)
        elif self.phase == SWEEP:
            self._angles.append(angle)
            stuck = len(self._angles) > cfg.stall_ticks and \
                angle - self._angles[-cfg.stall_ticks - 1] < 0.05
            if float(np.linalg.norm((eef - centre)[:2])) > cfg.lost_radius or stuck:
                self._angles = []
                self._enter(APPROACH)
        self._tick += 1
        if self.phase == APPROACH:
            high = start + np.array([0.0, 0.0, cfg.hover])
            return move(eef, high, cfg.gain, GRIPPER_CLOSE)
        if self.phase == DESCEND:
            return move(eef, start, cfg.gain, GRIPPER_CLOSE)
        if self.phase == SWEEP:
            ahead = on_circle(centre, cfg.radius, yaw + angle + cfg.lead, z)
            return move(eef, ahead, cfg.gain, GRIPPER_CLOSE)
        return move(eef, np.array([eef[0], eef[1], z + 0.12]), cfg.gain, GRIPPER_CLOSE)


# ------------------------------------------------------------------------------ push
#: Inner radius of the rim of pushed objects, by a substring of the name (from the worker's
#: ``object_points``: LIBERO's plate is 16.4 cm across and 1.8 cm tall).
PUSH_RIM: Tuple[Tuple[str, float], ...] = (("plate", 0.065),)
DEFAULT_PUSH_RIM = 0.03


@dataclass(frozen=True)
class PushConfig:
    """Sliding a rimmed object (the plate) over the table with closed fingers set down inside
    it, against its rim on the goal's side (metres).

    The plate stands in front of the cabinet's handles in LIBERO-Goal: a pusher behind it,
    on the line to the region, had 3 cm and hit the handles (0 of 1); from inside, the hand
    only ever is above the plate. height: grip-site height above the object's origin (the
    fingertips reach ~1 cm below it: they press on the plate's floor; at 1.5 cm they passed
    over the rim). tolerance: object-to-region distance that ends the push.
    escape: hand-to-object distance (beyond the rim) that means the fingers left the plate.
    speed: the largest action while pushing (at full speed the fingers rode over the rim).
    """

    height: float = 0.008
    tolerance: float = 0.012
    escape: float = 0.03
    speed: float = 0.4
    gain: float = 20.0
    hover: float = 0.06
    xy_tolerance: float = 0.01

    def __post_init__(self) -> None:
        check_positive(self, ("height", "tolerance", "escape", "speed", "gain", "hover",
                              "xy_tolerance"))


class PushExpert(Primitive):
    """``(On <object> <table region>)`` for a rimmed object too wide to grasp (the plate):
    fingers down at its centre, then the hand leads it to the region by the inner rim."""

    def __init__(self, obj: str, region: str, config: Optional[PushConfig] = None):
        self.obj, self.region, self.config = obj, region, config or PushConfig()
        self.rim = next((r for key, r in PUSH_RIM if key in obj), DEFAULT_PUSH_RIM)
        self.focus = (obj, region)
        self.reset()

    def act(self, obs: Obs) -> np.ndarray:
        """The (7,) action for this observation."""
        cfg = self.config
        eef = np.asarray(obs["robot0_eef_pos"], dtype=np.float64)
        obj, goal = scene_pos(obs, self.obj), scene_pos(obs, self.region)
        centre = obj + np.array([0.0, 0.0, cfg.height])
        remaining = float(np.linalg.norm((goal - obj)[:2]))
        inside = float(np.linalg.norm((eef - obj)[:2])) < self.rim + cfg.escape
        self._ticks += 1
        self.done = remaining < cfg.tolerance
        if self.done and self.phase != RETREAT:
            self._enter(RETREAT)
        elif self.phase == APPROACH:
            if float(np.linalg.norm((centre - eef)[:2])) < cfg.xy_tolerance:
                self._enter(DESCEND)
        elif self.phase == DESCEND and eef[2] < centre[2] + cfg.xy_tolerance:
            self._enter(PUSH)
        elif self.phase == PUSH and not inside:
            self._enter(APPROACH)
        elif self.phase == RETREAT and remaining > 2 * cfg.tolerance:
            self._enter(APPROACH)
        self._tick += 1
        if self.phase == APPROACH:
            return move(eef, centre + np.array([0.0, 0.0, cfg.hover]), cfg.gain, GRIPPER_CLOSE)
        if self.phase == DESCEND:
            return move(eef, centre, cfg.gain, GRIPPER_CLOSE)
        if self.phase == PUSH:  # where the hand is when the rim it pushes has the plate there
            lead = goal + unit_xy(goal - obj) * self.rim
            action = move(eef, np.array([lead[0], lead[1], centre[2]]), cfg.gain, GRIPPER_CLOSE)
            action[:2] *= cfg.speed / max(cfg.speed, float(np.abs(action[:2]).max()))
            return action
        return move(eef, np.array([eef[0], eef[1], centre[2] + cfg.hover]), cfg.gain,
                    GRIPPER_CLOSE)


# ------------------------------------------------------------------------------ drawers
def quat_matrix(quat_xyzw: np.ndarray) -> np.ndarray:
    """The rotation matrix (3, 3) of a quaternion (x, y, z, w), normalised first."""
    return Rotation.from_quat(quat_xyzw).as_matrix()


def rotation_error(current: np.ndarray, goal: np.ndarray) -> np.ndarray:
    """The world-frame axis-angle (3,) that turns rotation matrix ``current`` into ``goal``
    (what robosuite's OSC applies as an orientation delta)."""
    return Rotation.from_matrix(goal @ current.T).as_rotvec()


def yaw_matrix(yaw: float) -> np.ndarray:
    """Rotation about world z by ``yaw`` radians."""
    return Rotation.from_euler("z", yaw).as_matrix()


#: A LIBERO cabinet drawer's handle relative to its region site, in the cabinet's frame, and
#: the direction it opens (measured on the wooden and the white cabinet: the same model).
DRAWER_HANDLE = np.array([-0.006, -0.113, -0.004])
DRAWER_OUT = np.array([0.0, -1.0, 0.0])
#: LIBERO's cabinets: open below -0.14, closed above 0.0 (joint range -0.16 .. 0.01); a
#: drawer pulled to -0.16 and let go settles at -0.141.
DRAWER_OPEN_BELOW, DRAWER_CLOSED_ABOVE = -0.14, 0.002
GRASP, PULL, RELEASE = "grasp", "pull", "release"


@dataclass(frozen=True)
class DrawerConfig:
    """Opening a drawer by its handle (grasped from above) or closing it by pushing its front
    with closed fingers, the hand turned ``close_yaw`` about z so that its long side lies along
    the cabinet's front (metres, radians, ticks).

    hover: height above the handle before descending. standoff: the push starts this far out
    from the handle. push_below: fingertips this far below the handle while pushing. lost:
    hand-to-handle distance in the pull that means the grip slipped. rot_gain: orientation
    action per radian of error (an action of 1 turns 0.5 rad).
    """

    gain: float = 20.0
    rot_gain: float = 4.0
    hover: float = 0.06
    standoff: float = 0.05
    push_below: float = 0.015
    lost: float = 0.04
    close_ticks: int = 8
    xy_tolerance: float = 0.01
    close_yaw: float = float(np.pi / 2)
    hook_depth: float = 0.017

    def __post_init__(self) -> None:
        check_positive(self, ("gain", "rot_gain", "hover", "standoff", "push_below", "lost",
                              "xy_tolerance", "close_yaw", "hook_depth"))
        check_value("DrawerConfig", "close_ticks", self.close_ticks, int, 1, None)


class DrawerExpert(Primitive):
    """``(Open <cabinet>_<level>_region)`` / ``(Close ...)`` of a LIBERO cabinet drawer (its
    joint is ``<cabinet>_<level>_level``)."""

    def __init__(self, region: str, opening: bool, config: Optional[DrawerConfig] = None):
        if not region.endswith("_region"):
            raise ValueError(f"not a drawer region: {region!r}")
        self.region, self.opening, self.config = region, opening, config or DrawerConfig()
        self.joint = region[:-len("_region")] + "_level"
        self.focus = (region, region)
        self.reset()

    def valid_start(self, obs: Obs) -> bool:
        """The drawer's joint is in the observation."""
        return self.joint + JOINT_QPOS in obs

    def act(self, obs: Obs) -> np.ndarray:
        """The (7,) action for this observation."""
        cfg = self.config
        eef = np.asarray(obs["robot0_eef_pos"], dtype=np.float64)
        fixture = body_of(obs, self.region)
        frame = yaw_matrix(yaw_of(obs[fixture + FIXTURE_QUAT]))
        handle = scene_pos(obs, self.region) + frame @ DRAWER_HANDLE
        out = frame @ DRAWER_OUT
        qpos = float(np.asarray(obs[self.joint + JOINT_QPOS]).reshape(-1)[0])
        self.holds = qpos < DRAWER_OPEN_BELOW if self.opening else qpos > DRAWER_CLOSED_ABOVE
        self._ticks += 1
        goal, grip = (self._open if self.opening else self._close)(eef, handle, out)
        self._tick += 1
        action = move(eef, goal, cfg.gain, grip)
        back = self.phase == RETREAT  # the next part expects the hand as it was
        action[3:6] = self._rotation(obs, 0.0 if back else cfg.close_yaw, cfg.rot_gain)
        self.done = self.holds and back and eef[2] > handle[2] + cfg.hover \
            and self._turned_back(obs)
        return action

    def _open(self, eef: np.ndarray, handle: np.ndarray,
              out: np.ndarray) -> Tuple[np.ndarray, float]:
        """Hook the closed fingers into the gap behind the handle's bar (1.8 cm between it
        and the drawer's front) and pull."""
        cfg = self.config
        hook = handle - out * cfg.hook_depth
        if self.holds and self.phase != RETREAT:
            self._enter(RETREAT)
        elif self.phase == APPROACH and np.linalg.norm((hook - eef)[:2]) < cfg.xy_tolerance / 2:
            self._enter(DESCEND)
        elif self.phase == DESCEND and (eef[2] - hook[2] < cfg.xy_tolerance / 2
                                        or self._ticks > 30):
            self._enter(PULL)
        elif self.phase == PULL and eef[2] - hook[2] > 2 * cfg.xy_tolerance:
            self._enter(APPROACH)  # the fingers are not behind the bar: line up again
        if self.phase == APPROACH:
            return hook + np.array([0.0, 0.0, cfg.hover]), GRIPPER_CLOSE
        if self.phase == DESCEND:
            return hook, GRIPPER_CLOSE
        if self.phase == PULL:
            return hook + out * cfg.standoff, GRIPPER_CLOSE
        return handle + out * cfg.standoff + np.array([0.0, 0.0, cfg.hover + 0.04]), \
            GRIPPER_CLOSE

    def _close(self, eef: np.ndarray, handle: np.ndarray,
               out: np.ndarray) -> Tuple[np.ndarray, float]:
        cfg = self.config
        start = handle + out * cfg.standoff - np.array([0.0, 0.0, cfg.push_below])
        if self.holds and self.phase != RETREAT:
            self._enter(RETREAT)
        elif self.phase == APPROACH and np.linalg.norm((start - eef)[:2]) < cfg.xy_tolerance:
            self._enter(DESCEND)
        elif self.phase == DESCEND and eef[2] - start[2] < cfg.xy_tolerance:
            self._enter(PUSH)
        elif self.phase == PUSH and abs(eef[2] - start[2]) > 3 * cfg.xy_tolerance:
            self._enter(APPROACH)  # lifted off the front: line up again
        if self.phase == APPROACH:
            return start + np.array([0.0, 0.0, cfg.hover]), GRIPPER_CLOSE
        if self.phase == DESCEND:
            return start, GRIPPER_CLOSE
        if self.phase == PUSH:
            return handle - out * cfg.standoff - np.array([0.0, 0.0, cfg.push_below]), \
                GRIPPER_CLOSE
        return eef + out * 0.05 + np.array([0.0, 0.0, 0.05]), GRIPPER_CLOSE
