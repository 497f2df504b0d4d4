"""Turn timestamped sensor samples into one consistent policy Observation, or say why not.

Pure Python + numpy (no rclpy): the node feeds camera frames, joint states and end-effector
poses as they arrive (any thread), and its inference worker asks ``build(now, instruction)``
for an observation. ``build`` checks every input and returns the full list of faults
(stale or missing views, views out of sync, a bad frame, missing / non-finite / stale joint
state, a missing or jumping end-effector pose, a pose in another frame than
``base_frame``). A non-finite position of any configured arm joint (``joint_names``, read by
the policy or not) or gripper finger is a sensor fault: no observation until the arm reports
finite positions again (the ee pose is forward kinematics of those same joints).

Inputs are paired by header stamp, never by arrival (``stamp_matcher``): the views come
from the newest set whose stamps match within ``max_view_skew_s`` and that no earlier
observation used (so a slow model step never works through a backlog), and the joint
state and ee pose are read at view 0's stamp (exactly, or interpolated between the samples
around it; until a sample at or after that stamp arrives the build waits, without a fault).

Proprioception layouts:
- ``libero``: ee position (3) + axis-angle of the ee quaternion (3) + the two gripper finger
  positions (2), i.e. OpenVLA-OFT's LIBERO state (LIBERO's ``quat2axisangle``: no hemisphere
  flip, zeros for the identity).
- ``joints``: the positions of the configured joint names, in that order.

End-effector motion (``ee_motion.MotionEstimator``) comes from finite differences of
timestamped poses; the checks' thresholds and faults are in ``input_faults``.
"""
from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from specprune import EEMotion, Observation
from specprune_ros.node.ee_motion import MotionEstimator, PoseSample
from specprune_ros.node.input_faults import Fault, Limits
from specprune_ros.node.quaternions import quat_to_axis_angle
from specprune_ros.node.stamp_matcher import SampleHistory, StampMatcher, Stamped

LAYOUT_LIBERO = "libero"
LAYOUT_JOINTS = "joints"
LAYOUTS = (LAYOUT_LIBERO, LAYOUT_JOINTS)
NO_NEW_FRAMES = "no new frame of every view"  # BuildResult.waiting: nothing to do yet


# ------------------------------------------------------------------------------ settings
@dataclass(frozen=True)
class StateLayout:
    """How proprio is assembled: ``kind`` is LAYOUT_LIBERO or LAYOUT_JOINTS."""

    kind: str = LAYOUT_LIBERO
    joint_names: Tuple[str, ...] = tuple(f"panda_joint{i}" for i in range(1, 8))
    gripper_names: Tuple[str, ...] = ("panda_finger_joint1", "panda_finger_joint2")

    def __post_init__(self) -> None:
        if self.kind not in LAYOUTS:
            raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, got {self.kind!r}")
        if self.kind == LAYOUT_LIBERO and len(self.gripper_names) != 2:
            raise ValueError(f"layout libero needs 2 gripper joint names, "
                             f"got {list(self.gripper_names)}")
        if self.kind == LAYOUT_JOINTS and not self.joint_names:
            raise ValueError("layout joints needs at least one joint name")

    @property
    def needs_pose(self) -> bool:
        return self.kind == LAYOUT_LIBERO

    @property
    def proprio_dim(self) -> int:
        return 8 if self.kind == LAYOUT_LIBERO else len(self.joint_names)

    @property
    def required_joints(self) -> Tuple[str, ...]:
        return self.gripper_names if self.kind == LAYOUT_LIBERO else self.joint_names

    @property
    def watched_joints(self) -> Tuple[str, ...]:
        """Every configured joint of the arm and gripper, read by the policy or not: a
        non-finite position in any of them (when present) means the arm state cannot be
        trusted. Other joints on the topic (a mobile base, a pan-tilt head) are ignored."""
        return tuple(dict.fromkeys(self.required_joints + self.joint_names + self.gripper_names))


# ------------------------------------------------------------------------------ samples
@dataclass(frozen=True)
class Frame:
    image: np.ndarray
    stamp: float  # header stamp, seconds
    received: float  # time.monotonic() at arrival
    header_stamp: Any = None  # the message's own stamp object, carried through untouched


@dataclass
class _JointState:
    positions: Dict[str, float]
    stamp: float


@dataclass
class BuildResult:
    """``observation`` when consistent and new; otherwise None with ``faults`` (maybe empty:
    nothing wrong, just no new complete set of frames yet)."""

    observation: Optional[Observation] = None
    faults: List[Fault] = field(default_factory=list)
    received: float = 0.0  # arrival (monotonic) of the newest frame used
    header_stamp: Any = None  # view 0's message stamp
    images: List[np.ndarray] = field(default_factory=list)
    waiting: str = ""  # no observation and no fault: what the build waits for


# ------------------------------------------------------------------------------ builder
def _blend_joints(a: "_JointState", b: "_JointState", fraction: float) -> "_JointState":
    names = a.positions.keys() & b.positions.keys()
    return _JointState({n: a.positions[n] + fraction * (b.positions[n] - a.positions[n])
                        for n in names}, a.stamp + fraction * (b.stamp - a.stamp))


class ObservationBuilder:
    """Camera frames, joint states and ee poses -> consistent Observation (thread-safe).

    ``views`` names the camera views (their topics) for the messages. ``measure_motion``:
    attach the measured EEMotion (False: ee_motion=None, the policy uses its own actions).
    ``base_frame``: the frame every ee pose must be in (empty: not checked).
    """

    def __init__(self, views: Sequence[str], layout: StateLayout = StateLayout(),
                 limits: Limits = Limits(), measure_motion: bool = True,
                 base_frame: str = "") -> None:
        if not views:
            raise ValueError("at least one camera view is needed")
        self.views = tuple(views)
        self.layout = layout
        self.base_frame = base_frame
        self._limits = limits
        self.measure_motion = measure_motion
        self._lock = threading.Lock()
        self._errors: List[Optional[str]] = [None] * len(self.views)  # last frame rejected
        self._frames: StampMatcher[Frame] = StampMatcher(
            len(self.views), limits.max_view_skew_s, reset_after_s=limits.max_image_age_s)
        self._joints: Optional[_JointState] = None  # the newest
        self._joint_history: SampleHistory[_JointState] = SampleHistory(
            reset_after_s=limits.max_joint_state_age_s)
        self._joint_error: Optional[str] = None
        self._joint_stamps: Dict[str, float] = {}  # each joint's last message stamp
        self._motion = MotionEstimator(limits)

    # ---------------------------------------------------------------- configuration
    @property
    def limits(self) -> Limits:
        return self._limits

    def set_limits(self, limits: Limits) -> None:
        with self._lock:
            self._limits = limits
            self._motion.limits = limits
            self._motion.history.reset_after_s = limits.max_pose_age_s
            self._frames.max_skew_s = limits.max_view_skew_s
            self._frames.reset_after_s = limits.max_image_age_s
            self._joint_history.reset_after_s = limits.max_joint_state_age_s

    def set_measure_motion(self, measure: bool) -> None:
        with self._lock:
            self.measure_motion = measure

    def reset_motion(self) -> None:
        """Forget the pose history (e.g. the pose source changed)."""
        with self._lock:
            self._motion.reset()

    def time_jumped(self) -> None:
        """The clock went back (a /clock reset, a restarted simulator or bag): forget every
        buffered frame, joint state and pose, so that samples of two timelines are never
        paired or blended (a step back shorter than the age limits would otherwise be taken
        for out-of-order arrival)."""
        with self._lock:
            self._frames.clear()
            self._joints = None
            self._joint_stamps.clear()
            self._joint_history.clear()
            self._motion.reset()

    def new_episode(self, stamp: float) -> None:
        """A new episode starts at ``stamp`` (the stamps' clock): no frame taken before it is
        used, buffered or still in transit (counted late when it arrives); the buffered ones
        still count as the views' newest for the age checks. Joint states and poses stay:
        they are read at the new frames' stamps."""
        with self._lock:
            self._frames.spend_until(float(stamp))

    def match_counters(self) -> Dict[str, int]:
        """Frames dropped on arrival (duplicate / late) and clock resets so far."""
        with self._lock:
            return self._frames.counters.as_dict()

    # ---------------------------------------------------------------- inputs
    def add_frame(self, view: int, image: np.ndarray, stamp: float,
                  received: Optional[float] = None, header_stamp: Any = None) -> None:
        """Buffer a frame of ``view``; a frame of the wrong size is rejected."""
        problem = self._frame_problem(image)
        if problem is not None:
            self.reject_frame(view, problem)
            return
        with self._lock:
            arrival = time.monotonic() if received is None else received
            self._errors[view] = None
            self._frames.add(view, float(stamp), Frame(image, float(stamp), arrival,
                                                       header_stamp))

    def _frame_problem(self, image: np.ndarray) -> Optional[str]:
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 \
                or image.shape[2] != 3:
            return f"image must be (H, W, 3) uint8, got {getattr(image, 'shape', image)}"
        lim = self._limits
        height, width = image.shape[:2]
        if (lim.image_width and width != lim.image_width) or (
                lim.image_height and height != lim.image_height):
            want_w = lim.image_width or "any"
            want_h = lim.image_height or "any"
            return f"image is {width}x{height}, expected {want_w}x{want_h}"
        return None

    def reject_frame(self, view: int, reason: str) -> None:
        """A frame of ``view`` could not be used (bad encoding, size...): a fault until the
        next good frame of that view."""
        with self._lock:
            self._errors[view] = reason

    def set_joint_state(self, names: Sequence[str], positions: Sequence[float],
                        stamp: float) -> None:
        with self._lock:
            if len(names) != len(positions):
                self._joint_error = (f"joint state has {len(names)} names but "
                                     f"{len(positions)} positions")
                return
            self._joint_error = None
            stamp = float(stamp)
            new = {str(n): float(p) for n, p in zip(names, positions)}
            prev = self._joints
            if prev is not None and stamp >= prev.stamp - self._limits.max_joint_state_age_s:
                # several publishers on one topic (an arm's and a gripper's): each message
                # updates its own joints, the others keep their last values and stamps
                new = {**prev.positions, **new}
            else:  # the first message, or the clock went back: start over
                self._joint_stamps.clear()
            self._joint_stamps.update({str(n): stamp for n in names})
            self._joints = _JointState(new, stamp)
            self._joint_history.add(stamp, self._joints)

    def add_pose(self, position: Sequence[float], quaternion: Sequence[float],
                 stamp: float, frame_id: Optional[str] = None) -> None:
        """A timestamped end-effector pose (x, y, z; quaternion x, y, z, w) in ``frame_id``
        (None: a source in ``base_frame`` by construction, the TF lookup). A pose in another
        frame is refused, never used: a fault until the next good pose."""
        with self._lock:
            if frame_id is not None and self.base_frame and frame_id != self.base_frame:
                self._motion.error = (f"ee pose rejected: frame_id '{frame_id}' is not "
                                      f"base_frame '{self.base_frame}'")
                return
            self._motion.add(position, quaternion, stamp)

    def pose_unavailable(self, reason: str) -> None:
        """The pose source failed (e.g. a TF lookup): a fault until the next pose."""
        with self._lock:
            self._motion.error = reason

    # ---------------------------------------------------------------- output
    def build(self, now: float, instruction: str) -> BuildResult:
        """Check everything at time ``now`` (seconds, the stamps' clock)."""
        with self._lock:
            faults = self._camera_faults(now) + self._joint_faults(now)
            faults += self._pose_faults(now)
            if not instruction.strip():
                faults.append(Fault("instruction_missing", "no instruction yet (parameter "
                                    "instruction is empty and none was received since the "
                                    "start, or since ~/reset with reset_forgets_instruction)"))
            if faults:
                return BuildResult(faults=faults)
            match = self._frames.match()
            if match is None:
                if self._frames.pending():
                    return BuildResult(faults=self._skew_faults())
                return BuildResult(waiting=NO_NEW_FRAMES)
            return self._observation([m.item for m in match], instruction)

    def _observation(self, frames: List[Frame], instruction: str) -> BuildResult:
        stamp = frames[0].stamp
        state = self._state_at(stamp)
        if isinstance(state, BuildResult):
            return state
        proprio, motion = state
        self._frames.mark_used([Stamped(f.stamp, f) for f in frames])
        obs = Observation(images=[f.image for f in frames], instruction=instruction,
                          proprio=proprio, ee_motion=motion if self.measure_motion else None,
                          stamp=stamp)
        return BuildResult(observation=obs, received=max(f.received for f in frames),
                           header_stamp=frames[0].header_stamp, images=list(obs.images))

    def _state_at(self, stamp: float
                  ) -> "Tuple[np.ndarray, Optional[EEMotion]] | BuildResult":
        """(proprio, ee motion) at the image ``stamp``; a BuildResult that waits (the samples
        of that instant have not all arrived) or reports a fault otherwise."""
        joints = self._joint_history.at(stamp, _blend_joints)
        if joints is None:
            newest = self._joint_history.newest
            return self._missing_at(stamp, newest is not None and newest.stamp >= stamp,
                                    "joint state", self._limits.max_joint_state_age_s,
                                    newest.stamp if newest else None)
        fault = self._nonfinite_fault(joints, " at the image stamp")
        if fault is not None:  # a sample around the stamp had one, the newest has none
            return BuildResult(faults=[fault])
        pose: Optional[PoseSample] = None
        motion: Optional[EEMotion] = None
        if self.layout.needs_pose or self.measure_motion:
            pose, motion, arrived = self._motion.at(stamp)
            newest = self._motion.pose.stamp if self._motion.pose else None
            if pose is None:
                return self._missing_at(stamp, arrived, "ee pose", self._limits.max_pose_age_s,
                                        newest)
            if self.measure_motion and motion is None:
                return BuildResult(faults=[Fault("ee_motion_missing", (
                    f"no ee velocity at the image stamp {stamp:.3f} (the pose there follows "
                    f"a rejected jump or is the first pose)"))])
            if self._motion.jumped_at(stamp):
                return BuildResult(faults=[Fault("ee_jump", (
                    f"the ee pose at the image stamp {stamp:.3f} comes from a jump: not "
                    f"used as proprio"))])
        proprio = self._proprio(joints, pose)
        if not np.all(np.isfinite(proprio)):
            return BuildResult(faults=[Fault("joint_state_nonfinite", (
                f"proprio at the image stamp is not finite: {proprio.tolist()}"))])
        return proprio, motion

    def _missing_at(self, stamp: float, arrived: bool, what: str, max_age: float,
                    newest: Optional[float]) -> BuildResult:
        """No ``what`` sample around the image ``stamp``: wait for it, unless the newest
        sample is more than ``max_age`` older than the image, or the history starts after
        it (then this set of frames can never be used: the next one will)."""
        key = "joint_state" if what == "joint state" else "ee_pose"
        if arrived and newest is not None and newest - stamp > max_age:
            return BuildResult(faults=[Fault(f"{key}_ahead", (
                f"{what} history starts after the image stamp: it reaches back {max_age:g} s "
                f"(its age limit) from the newest {what}, stamped {newest - stamp:.3f} s "
                f"after the image; the frames arrive later than that after their stamp "
                f"(raise the age limit above the camera latency), or the {what} is stamped "
                f"ahead of the cameras' clock"))])
        if arrived:  # the first samples came after these frames: the next ones will do
            return BuildResult(waiting=f"{what} history starts after the image stamp")
        if newest is not None and stamp - newest > max_age:
            return BuildResult(faults=[Fault(f"{key}_behind", (
                f"{what} lags the cameras: newest {stamp - newest:.2f} s older than the "
                f"image stamp > {max_age:g} s"))])
        return BuildResult(waiting=f"{what} at the image stamp")

    def _camera_faults(self, now: float) -> List[Fault]:
        faults: List[Fault] = []
        lim = self._limits
        for view, name in enumerate(self.views):
            newest = self._frames.newest(view)
            if self._errors[view] is not None:
                faults.append(Fault(f"camera_bad:{name}", f"camera {name}: {self._errors[view]}"))
            elif newest is None:
                faults.append(Fault(f"camera_missing:{name}", f"camera {name}: no image yet"))
            elif now - newest.stamp > lim.max_image_age_s:
                faults.append(Fault(f"camera_stale:{name}", (
                    f"camera {name} stale: {now - newest.stamp:.2f} s > "
                    f"{lim.max_image_age_s:g} s")))
        return faults

    def _skew_faults(self) -> List[Fault]:
        """Every view has a new frame, yet no set within max_view_skew_s."""
        oldest, newest, skew = self._frames.newest_spread()
        return [Fault("cameras_out_of_sync", (
            f"cameras out of sync: {self.views[oldest]} is {skew:.3f} s behind "
            f"{self.views[newest]} > max_view_skew_s {self._limits.max_view_skew_s:g} s"))]

    def _joint_faults(self, now: float) -> List[Fault]:
        if self._joint_error is not None:
            return [Fault("joint_state_bad", self._joint_error)]
        if self._joints is None:
            return [Fault("joint_state_missing", "no joint state received yet")]
        js = self._joints
        missing = [n for n in self.layout.required_joints if n not in js.positions]
        if missing:
            return [Fault("joint_state_incomplete", f"joint state lacks {', '.join(missing)}")]
        fault = self._nonfinite_fault(js)
        if fault is not None:
            return [fault]
        limit = self._limits.max_joint_state_age_s
        stale = {n: now - self._joint_stamps[n] for n in self.layout.required_joints
                 if now - self._joint_stamps[n] > limit}
        if stale:
            oldest = max(stale.values())
            fresh = any(now - t <= limit for t in self._joint_stamps.values())
            whose = f" ({', '.join(stale)}, published apart from the others)" if fresh else ""
            return [Fault("joint_state_stale", (
                f"joint state stale: {oldest:.2f} s > {limit:g} s{whose}"))]
        return []

    def _nonfinite_fault(self, joints: _JointState, where: str = "") -> Optional[Fault]:
        """A sensor fault when any watched joint present in ``joints`` is not finite."""
        bad = [n for n in self.layout.watched_joints
               if n in joints.positions and not math.isfinite(joints.positions[n])]
        if not bad:
            return None
        return Fault("joint_state_nonfinite", f"joint state{where} has non-finite positions: "
                                              f"{', '.join(bad)} (sensor fault)")

    def _pose_faults(self, now: float) -> List[Fault]:
        if self.measure_motion:
            return self._motion.motion_faults(now)
        if not self.layout.needs_pose:
            self._motion.unreported_jump = None  # no pose is read at all
            return []
        # the pose is proprio: a jump makes it as wrong as it makes a velocity
        return self._motion.pose_faults(now) + self._motion.jump_faults()

    def _proprio(self, joints: _JointState, pose: Optional[PoseSample]) -> np.ndarray:
        positions: Mapping[str, float] = joints.positions
        missing = [n for n in self.layout.required_joints if n not in positions]
        if missing:  # names changed between the two samples around the stamp
            return np.full(self.layout.proprio_dim, np.nan)
        if self.layout.kind == LAYOUT_JOINTS:
            return np.array([positions[n] for n in self.layout.joint_names])
        fingers = [positions[n] for n in self.layout.gripper_names]
        return np.concatenate([pose.position, quat_to_axis_angle(pose.quaternion), fingers])


# ------------------------------------------------------------------------------ from parameters
#: the policy node's parameters that set Limits (same names as its fields)
LIMIT_PARAMS = ("max_image_age_s", "max_view_skew_s", "max_joint_state_age_s",
                "max_pose_age_s", "max_ee_speed", "max_ee_angular_speed", "image_width",
                "image_height")


def limits_from(values: Dict[str, Any]) -> Limits:
    return Limits(**{name: values[name] for name in LIMIT_PARAMS})


def make_builder(values: Dict[str, Any], proprio_dim: int) -> ObservationBuilder:
    """The observation builder the parameter ``values`` describe, for a model taking
    ``proprio_dim`` values (the node's, and specprune-replay's on a recording); ValueError
    with the reason when they do not fit."""
    layout = StateLayout(values["layout"], tuple(values["joint_names"]),
                         tuple(values["gripper_joint_names"]))
    if layout.proprio_dim != proprio_dim:
        raise ValueError(f"layout {values['layout']!r} gives {layout.proprio_dim} proprio "
                         f"values, the model takes {proprio_dim}")
    return ObservationBuilder(values["camera_topics"], layout, limits_from(values),
                              measure_motion=values["ee_motion_source"] != "policy",
                              base_frame=values["base_frame"])
