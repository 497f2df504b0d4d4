"""The simulated arm's command inputs, as OSC delta actions: action chunks (queued rows),
twist and pose targets (converted per tick, with a timeout). Pure numpy, no rclpy: the
bridge node feeds these from its subscriptions; the executor's jerk probe converts twists
with the same function the bridge uses."""
from __future__ import annotations

import math
import threading
from collections import deque
from typing import Deque, Optional, Sequence, Tuple

import numpy as np

from specprune_ros.node.quaternions import rotation_between
from specprune_ros.sim.sim_arm import ACTION_DIM, ACTION_NAMES, GRIPPER_OPEN

MAX_CHUNK_ROWS = 1000
#: robosuite 1.5 OSC_POSE (controllers/config/default/parts/osc_pose.json, the Panda's
#: default): an action of 1 moves the controller's goal by this much in one control step.
OSC_MAX_TRANSLATION_M = 0.05
OSC_MAX_ROTATION_RAD = 0.5


def parse_action_chunk(names: Sequence[str], rows: Sequence[Sequence[float]]) -> np.ndarray:
    """(N, 7) actions in ACTION_NAMES order from named rows; ValueError saying what is wrong."""
    names = list(names)
    if sorted(names) != sorted(ACTION_NAMES):
        raise ValueError(f"joint_names must be a permutation of {list(ACTION_NAMES)}, "
                         f"got {names}")
    if not 1 <= len(rows) <= MAX_CHUNK_ROWS:
        raise ValueError(f"a chunk needs 1 to {MAX_CHUNK_ROWS} points, got {len(rows)}")
    bad = [i for i, row in enumerate(rows) if len(row) != ACTION_DIM]
    if bad:
        raise ValueError(f"points {bad[:5]} do not have {ACTION_DIM} positions")
    actions = np.array([list(row) for row in rows], dtype=np.float64)
    if not np.all(np.isfinite(actions)):
        raise ValueError(f"non-finite positions in points "
                         f"{np.nonzero(~np.isfinite(actions).all(axis=1))[0][:5].tolist()}")
    return actions[:, [names.index(name) for name in ACTION_NAMES]]


class ActionQueue:
    """Thread-safe rows of the newest chunk; holds position (gripper unchanged) when empty."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rows: Deque[np.ndarray] = deque()
        self._gripper = GRIPPER_OPEN

    def replace(self, actions: np.ndarray) -> None:
        """Drop whatever is pending and execute ``actions`` (N, 7) from the next tick on."""
        with self._lock:
            self._rows = deque(np.array(row) for row in actions)

    def clear(self) -> None:
        """Drop pending rows and reopen the gripper (new episode)."""
        with self._lock:
            self._rows.clear()
            self._gripper = GRIPPER_OPEN

    def pending(self) -> int:
        """Rows still to execute."""
        with self._lock:
            return len(self._rows)

    def next_action(self) -> np.ndarray:
        """The next row, or zeros with the last gripper command when the chunk is spent."""
        with self._lock:
            if self._rows:
                row = self._rows.popleft()
                self._gripper = float(np.clip(row[-1], -1.0, 1.0))
                return row
            hold = np.zeros(ACTION_DIM)
            hold[-1] = self._gripper
            return hold


def twist_to_action(linear: Sequence[float], angular: Sequence[float], gripper: float,
                    dt: float) -> np.ndarray:
    """The OSC delta action that moves the goal by ``linear`` dt, ``angular`` dt (base
    frame), clipped to [-1, 1]; ValueError on non-finite input."""
    raw = np.concatenate([np.asarray(linear, float) * dt / OSC_MAX_TRANSLATION_M,
                          np.asarray(angular, float) * dt / OSC_MAX_ROTATION_RAD, [gripper]])
    if raw.shape != (ACTION_DIM,) or not np.all(np.isfinite(raw)):
        raise ValueError(f"twist command is not 6 finite numbers: {raw.tolist()}")
    return np.clip(raw, -1.0, 1.0)


def pose_to_action(target_pos: Sequence[float], target_quat: Sequence[float],
                   pos: np.ndarray, quat: np.ndarray, gripper: float) -> np.ndarray:
    """The OSC delta action that puts the goal on the target pose (base frame, quaternions
    x y z w), clipped to one step's reach; ValueError on a non-finite or zero quaternion."""
    target_pos, target_quat = np.asarray(target_pos, float), np.asarray(target_quat, float)
    if not (np.all(np.isfinite(target_pos)) and np.all(np.isfinite(target_quat))
            and np.linalg.norm(target_quat) > 0.5 and math.isfinite(gripper)):
        raise ValueError("pose target is not a finite position and rotation")
    rot = rotation_between(quat, target_quat / np.linalg.norm(target_quat))
    raw = np.concatenate([(target_pos - pos) / OSC_MAX_TRANSLATION_M,
                          rot / OSC_MAX_ROTATION_RAD, [gripper]])
    return np.clip(raw, -1.0, 1.0)


class CommandInput:
    """The newest twist or pose command and gripper command, with their arrival times."""

    def __init__(self, kind: str, timeout_s: float) -> None:
        self.kind, self.timeout_s = kind, timeout_s
        self._lock = threading.Lock()
        self._command: Optional[Tuple[np.ndarray, np.ndarray, float]] = None
        self._gripper = GRIPPER_OPEN
        self.rejected = 0

    def set(self, a: Sequence[float], b: Sequence[float], now: float) -> None:
        """A twist (linear, angular) or a pose (position, quaternion) received at ``now``."""
        with self._lock:
            self._command = (np.asarray(a, float), np.asarray(b, float), now)

    def set_gripper(self, value: float) -> None:
        if math.isfinite(value):
            with self._lock:
                self._gripper = float(np.clip(value, -1.0, 1.0))

    def clear(self) -> None:
        """Forget the command, reopen the gripper (new episode)."""
        with self._lock:
            self._command, self._gripper = None, GRIPPER_OPEN

    def action(self, now: float, dt: float, pos: np.ndarray, quat: np.ndarray) -> np.ndarray:
        """This tick's OSC action: the fresh command converted, else hold (zero deltas)."""
        with self._lock:
            command, gripper = self._command, self._gripper
        hold = np.zeros(ACTION_DIM)
        hold[-1] = gripper
        if command is None or now - command[2] > self.timeout_s:
            return hold
        try:
            if self.kind == "twist":
                return twist_to_action(command[0], command[1], gripper, dt)
            return pose_to_action(command[0], command[1], pos, quat, gripper)
        except ValueError:
            self.rejected += 1
            return hold
