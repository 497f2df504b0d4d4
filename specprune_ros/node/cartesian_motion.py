"""Cartesian commands of the executor (``twist`` and ``pose`` outputs): moves and holds.

No ROS imports. ``CartesianMotion`` owns the envelope (safety_envelope.Envelope), the pose
target (PoseIntegrator) and the history of commanded velocities, and answers three
questions per tick:

- ``move``: the command for a twist a chunk asks for. The workspace box is checked from
  the position at command time: the measured position plus what the commands since its
  stamp (and ``controller_lag_s`` before it, still on their way through the controller)
  moved it (twist), or the pose target itself (pose); a twist is planned to stop in time
  even if the next tick comes as late as ``horizon`` (the tick clock's longest period).
- ``hold``: the command of a hold tick: the twist comes down to zero at the stop
  decelerations (``max_*_stop_decel``), the pose target stays latched (it moves only
  by that decelerating twist).
- ``final_hold``: the last command, when no tick follows it (deactivate, exit, dry_run
  switched on): zero twist at once (a velocity interface must not keep the last command),
  or the pose where the decelerating target comes to rest.
"""
from __future__ import annotations

from typing import List, Optional, Tuple

import numpy as np

from specprune_ros.node.quaternions import quat_multiply, rotvec_to_quat
from specprune_ros.node.safety_envelope import (CommandHistory, Envelope, Limited, Limits,
                                                PoseIntegrator, not_outward,
                                                orientation_not_outward)

#: a measured pose: (position (3,), unit quaternion x y z w (4,), stamp s)
Pose = Tuple[np.ndarray, np.ndarray, float]
#: a command: (linear, angular) for twist, (position, quaternion) for pose
Command = Tuple[np.ndarray, np.ndarray]


class CartesianMotion:
    """Twist or pose commands inside the envelope (see the module docstring)."""

    def __init__(self, limits: Limits, output: str, horizon: float = 0.0) -> None:
        self.output = output
        # the latest the next tick may come: a twist stays in force until then, so the box
        # plans with it; a pose target stays where it is
        self.horizon = horizon if output == "twist" else 0.0
        self.envelope = Envelope(limits)
        self.integrator = PoseIntegrator()
        self.history = CommandHistory()  # commanded linear velocities
        self.turns = CommandHistory()  # and angular ones (for the orientation cone)

    @property
    def limits(self) -> Limits:
        return self.envelope.limits

    @limits.setter
    def limits(self, limits: Limits) -> None:
        self.envelope.limits = limits

    def reset(self) -> None:
        """From rest, from the measured pose (activation, e-stop reset, dry_run off)."""
        self.envelope.stop()
        self.forget_target()

    def forget_target(self) -> None:
        """The pose target belongs to another timeline (the clock stepped back: a simulator
        reset moves the arm): the next hold latches at the next fresh measured pose. The
        commanded twist is kept, so a moving arm is still brought to rest at the stop
        decelerations, not in one step."""
        self.integrator.reset()
        self.history.clear()
        self.turns.clear()

    def _position_now(self, pose: Optional[Pose], now: float) -> Optional[np.ndarray]:
        if self.output == "pose" and self.integrator.position is not None:
            return self.integrator.position
        if pose is None:
            return None
        start = pose[2] - self.limits.controller_lag_s
        return pose[0] + self.history.displacement(start, now)

    def _orientation_now(self, pose: Optional[Pose], now: float) -> Optional[np.ndarray]:
        """As ``_position_now``: the pose target's, or the measured orientation turned by
        the commands since (their rotation vectors summed: a few ticks of rotation, where
        the error of summing is second order)."""
        if self.output == "pose" and self.integrator.orientation is not None:
            return self.integrator.orientation
        if pose is None:
            return None
        start = pose[2] - self.limits.controller_lag_s
        return quat_multiply(rotvec_to_quat(self.turns.displacement(start, now)), pose[1])

    def _limit(self, linear: np.ndarray, angular: np.ndarray, pose: Optional[Pose],
               now: float, period: float, since_activation: float, hold: bool) -> Limited:
        limited = self.envelope.limit(linear, angular, self._position_now(pose, now), period,
                                      since_activation, hold=hold, horizon=self.horizon,
                                      orientation=self._orientation_now(pose, now))
        self.history.add(now, limited.linear)
        self.turns.add(now, limited.angular)
        return limited

    def move(self, linear: np.ndarray, angular: np.ndarray, pose: Pose, now: float,
             period: float, since_activation: float) -> Tuple[Command, List[str]]:
        """The command for the twist (``linear``, ``angular``) a chunk asks for, from the
        fresh measured ``pose``; (command, interventions)."""
        limited = self._limit(linear, angular, pose, now, period, since_activation, False)
        if self.output == "twist":
            return (limited.linear, limited.angular), limited.interventions
        target, quat, more = self.integrator.step(limited.linear, limited.angular, period,
                                                  pose[0], pose[1], self.limits)
        return (target, quat), limited.interventions + more

    def hold(self, pose: Optional[Pose], now: float, period: float) -> Optional[Command]:
        """A hold tick from the last fresh ``pose`` (None: none); None when there is
        nothing to hold at."""
        limited = self._limit(np.zeros(3), np.zeros(3), pose, now, period, 0.0, True)
        if self.output == "twist":
            return limited.linear, limited.angular
        if self.integrator.position is None:
            if pose is None:
                return None
            self.integrator.latch(pose[0], pose[1])
        return self.integrator.coast(limited.linear, limited.angular, period, self.limits)

    def final_hold(self, pose: Optional[Pose]) -> Optional[Command]:
        """The last command (see the module docstring); None with nothing to hold at."""
        v, w = self.envelope.linear, self.envelope.angular
        self.envelope.stop()
        self.history.clear()
        self.turns.clear()
        if self.output == "twist":
            return np.zeros(3), np.zeros(3)
        if self.integrator.position is None:
            if pose is None:
                return None
            self.integrator.latch(pose[0], pose[1])
        lim = self.limits
        travel = v * np.linalg.norm(v) / (2.0 * lim.linear_stop)
        turn = w * np.linalg.norm(w) / (2.0 * lim.angular_stop)
        here = self.integrator.position
        self.integrator.position = not_outward(here + travel, lim.workspace_min,
                                               lim.workspace_max, here)
        q = quat_multiply(rotvec_to_quat(turn), self.integrator.orientation)
        self.integrator.orientation, _ = orientation_not_outward(
            q / np.linalg.norm(q), lim, self.integrator.orientation)
        return self.integrator.position.copy(), self.integrator.orientation.copy()

    def speeds(self) -> Tuple[float, float]:
        """(linear, angular) speed of the last command."""
        return (float(np.linalg.norm(self.envelope.linear)),
                float(np.linalg.norm(self.envelope.angular)))
