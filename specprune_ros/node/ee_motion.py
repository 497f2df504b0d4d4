"""End-effector motion from timestamped poses, for the action-aware controller.

Velocity comes from finite differences of poses (linear m/s; angular rad/s from the relative
rotation; both in the poses' frame). A pair of poses that implies a speed above the limits
is a jump: reported once, no motion from it. Poses are kept by stamp so the builder can
read the pose and velocity at a camera frame's stamp (interpolated between samples).
Pure numpy (no rclpy)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np

from specprune import EEMotion
from specprune_ros.node.input_faults import Fault, Limits
from specprune_ros.node.quaternions import quat_multiply, rotation_vector
from specprune_ros.node.stamp_matcher import SampleHistory


@dataclass(frozen=True)
class PoseSample:
    position: np.ndarray  # (3,)
    quaternion: np.ndarray  # (4,) x, y, z, w, unit
    stamp: float


def velocity(prev: PoseSample, new: PoseSample) -> Tuple[np.ndarray, np.ndarray]:
    """(linear m/s, angular rad/s) between two poses, in the poses' (base) frame.

    The angular velocity is the rotation vector of q_new * q_prev^-1 over dt.
    """
    dt = new.stamp - prev.stamp
    linear = (new.position - prev.position) / dt
    inverse = prev.quaternion * np.array([-1.0, -1.0, -1.0, 1.0])
    angular = rotation_vector(quat_multiply(new.quaternion, inverse)) / dt
    return linear, angular


def blend_poses(a: "PoseSample", b: "PoseSample", fraction: float) -> "PoseSample":
    """The pose ``fraction`` of the way from ``a`` to ``b``: position linear, rotation by
    normalised linear interpolation of the quaternions on the short arc (close to slerp over
    the few milliseconds between samples)."""
    qb = b.quaternion if float(np.dot(a.quaternion, b.quaternion)) >= 0.0 else -b.quaternion
    quat = (1.0 - fraction) * a.quaternion + fraction * qb
    return PoseSample(a.position + fraction * (b.position - a.position),
                      quat / np.linalg.norm(quat), a.stamp + fraction * (b.stamp - a.stamp))


def _check_pose(position: Sequence[float], quaternion: Sequence[float]
                ) -> Tuple[np.ndarray, np.ndarray]:
    pos = np.asarray(position, dtype=np.float64).reshape(3)
    quat = np.asarray(quaternion, dtype=np.float64).reshape(4)
    if not (np.all(np.isfinite(pos)) and np.all(np.isfinite(quat))):
        raise ValueError(f"non-finite pose {pos.tolist()} {quat.tolist()}")
    norm = float(np.linalg.norm(quat))
    if not 0.5 < norm < 1.5:
        raise ValueError(f"quaternion {quat.tolist()} is not a rotation (norm {norm:.3f})")
    return pos, quat / norm


@dataclass(frozen=True)
class _PoseEntry:
    pose: PoseSample
    motion: Optional[EEMotion]  # velocity over the interval ending at this pose
    after_jump: bool = False  # the interval ending at this pose was a jump


class MotionEstimator:
    """End-effector pose history -> velocity, with jump rejection. Not thread-safe.

    ``pose`` / ``motion`` are the newest; ``at(stamp)`` reads both at an earlier stamp."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.reset()

    def reset(self) -> None:
        self.pose: Optional[PoseSample] = None
        self.motion: Optional[EEMotion] = None
        self.motion_stamp = 0.0
        self.error: Optional[str] = None  # the source is failing (e.g. TF lookup)
        self.jump: Optional[Fault] = None  # the last pair of poses was a jump
        self.unreported_jump: Optional[Fault] = None  # a jump no build has reported yet
        self.history: SampleHistory[_PoseEntry] = SampleHistory(
            reset_after_s=self.limits.max_pose_age_s)

    def add(self, position: Sequence[float], quaternion: Sequence[float], stamp: float) -> None:
        try:
            pos, quat = _check_pose(position, quaternion)
        except ValueError as exc:
            self.error = f"ee pose rejected: {exc}"
            return
        sample = PoseSample(pos, quat, float(stamp))
        self.error = None
        prev, self.pose = self.pose, sample
        if prev is not None and sample.stamp < prev.stamp - self.limits.max_pose_age_s:
            self.reset()  # the stamps' clock went back (simulator restarted, bag looped)
            self.pose, prev = sample, None
        if prev is None:
            self.history.add(sample.stamp, _PoseEntry(sample, None))
            return
        if sample.stamp <= prev.stamp:  # a repeated (TF polled faster than it changes) or
            self.pose = prev  # out-of-order sample carries no motion
            return
        self._update(prev, sample)
        jumped = self.jump is not None
        self.history.add(sample.stamp, _PoseEntry(sample, None if jumped else self.motion,
                                                  after_jump=jumped))

    def _update(self, prev: PoseSample, sample: PoseSample) -> None:
        linear, angular = velocity(prev, sample)
        speed, spin = float(np.linalg.norm(linear)), float(np.linalg.norm(angular))
        lim = self.limits
        if speed > lim.max_ee_speed or spin > lim.max_ee_angular_speed:
            self.motion = None
            self.jump = self.unreported_jump = Fault("ee_jump", (
                f"ee pose jumped: {speed:.2f} m/s, {spin:.2f} rad/s over "
                f"{sample.stamp - prev.stamp:.3f} s exceeds max_ee_speed {lim.max_ee_speed:g} "
                f"m/s / max_ee_angular_speed {lim.max_ee_angular_speed:g} rad/s"))
            return
        self.jump = None
        self.motion = EEMotion(linear=linear, angular=angular)
        self.motion_stamp = sample.stamp

    def at(self, stamp: float) -> Tuple[Optional[PoseSample], Optional[EEMotion], bool]:
        """(pose at ``stamp``, velocity over the pose interval holding it, whether a pose
        at or after ``stamp`` has arrived yet). The pose is None before the history."""
        before, after = self.history.around(stamp)
        if after is None:
            return None, None, False
        if before is None:
            return None, None, True
        if before is after:
            return before.item.pose, before.item.motion, True
        fraction = (stamp - before.stamp) / (after.stamp - before.stamp)
        return blend_poses(before.item.pose, after.item.pose, fraction), after.item.motion, True

    def jumped_at(self, stamp: float) -> bool:
        """Whether the pose at ``stamp`` comes from a jump: it is, or is blended towards, a
        pose that arrived as a jump (its own value, or the one before it, is wrong)."""
        _, after = self.history.around(stamp)
        return after is not None and after.item.after_jump

    def jump_faults(self) -> List[Fault]:
        """The last jump, while the newest pair of poses is one or until a check reported it
        (a jump is reported at least once even when a consistent pair came before any
        check)."""
        jump = self.jump or self.unreported_jump
        self.unreported_jump = None
        return [] if jump is None else [jump]

    def pose_faults(self, now: float) -> List[Fault]:
        """Faults of the pose itself (for proprio)."""
        if self.error is not None:
            return [Fault("ee_pose_error", self.error)]
        if self.pose is None:
            return [Fault("ee_pose_missing", "no end-effector pose received yet")]
        age = now - self.pose.stamp
        if age > self.limits.max_pose_age_s:
            return [Fault("ee_pose_stale", f"ee pose stale: {age:.2f} s > "
                                           f"{self.limits.max_pose_age_s:g} s")]
        return []

    def motion_faults(self, now: float) -> List[Fault]:
        """Faults of the velocity estimate, pose faults included. A jump stays a fault until
        the next consistent pair of poses, and is reported at least once even when that pair
        came before any check."""
        faults = self.pose_faults(now) + self.jump_faults()
        if not faults and self.motion is None:
            faults.append(Fault("ee_motion_missing",
                                "ee velocity not available yet (needs two consecutive poses)"))
        return faults
