"""The executor's measured state: the latest end-effector pose or joint state, whether it is
fresh, and the last one that was (what a hold latches on to).

No ROS imports. A Cartesian layout reads poses ``(position, unit quaternion, stamp)``, a
joint-space layout joint states ``(positions, stamp)``. A refused message (another frame,
non-finite, not a rotation) drops the previous state too: it must not stay fresh while the
robot reports nonsense. ``check`` runs once per tick: the state is stale when missing,
older than ``max_age_s`` or stamped more than ``max_future_s`` ahead of the clock; a fresh
one becomes ``fresh``, which a later stale tick keeps (a pose that arrives already old is
never a target to hold at). A JointState without all of the executor's joints (another
publisher's subset, or joints named otherwise than ``joint_names``) is skipped; while no
joint state has been taken, the hold detail says what such messages held. ``drop_after``
forgets what is stamped after a clock that stepped back (it belongs to the timeline before
the step).
"""
from __future__ import annotations

from typing import Any, Optional, Sequence, Tuple

import numpy as np

#: (position (3,), unit quaternion x y z w (4,), stamp s) or (joint positions (N,), stamp s)
State = Tuple[Any, ...]


class MeasuredState:
    """The latest pose (``cartesian``) or joint state (see the module docstring)."""

    def __init__(self, cartesian: bool) -> None:
        self.cartesian = cartesian
        self.what = "ee pose" if cartesian else "joint state"
        self.clear()

    def clear(self) -> None:
        self.latest: Optional[State] = None
        self.fresh: Optional[State] = None
        self.problem = ""  # why the last message was refused
        self.skipped = ""  # what the last JointState without the executor's joints held

    def take_pose(self, position: Sequence[float], quaternion: Sequence[float], stamp: float,
                  frame: str, base_frame: str) -> bool:
        """A measured pose; False (and the state dropped) when refused."""
        p, q = np.asarray(position, float), np.asarray(quaternion, float)
        if frame != base_frame:
            return self._refuse(f"ee pose in frame '{frame}', expected '{base_frame}'")
        if not (np.all(np.isfinite(p)) and np.all(np.isfinite(q)) and np.linalg.norm(q) > 0.5):
            return self._refuse("ee pose not finite / not a rotation")
        return self._take((p, q / np.linalg.norm(q), stamp))

    def take_joints(self, positions: Sequence[float], stamp: float) -> bool:
        """A measured joint state (the executor's joints, in order); False when refused."""
        q = np.asarray(positions, float)
        if not np.all(np.isfinite(q)):
            return self._refuse("joint state not finite")
        return self._take((q, stamp))

    def partial(self, names: Sequence[str], positions: int, wanted: Sequence[str]) -> None:
        """A JointState without a position for every one of the ``wanted`` joints."""
        missing = [j for j in wanted if j not in names]
        if not missing:
            self.skipped = f"JointStates arrive with {positions} positions for {len(names)} names"
            return
        self.skipped = (f"JointStates arrive without joints {missing[:3]}"
                        f"{' ...' if len(missing) > 3 else ''} of joint_names (the last one "
                        f"named {list(names)[:4]}{' ...' if len(names) > 4 else ''})")

    def _take(self, state: State) -> bool:
        self.latest, self.problem = state, ""
        return True

    def _refuse(self, problem: str) -> bool:
        self.latest, self.problem = None, problem
        return False

    def age(self, now: float) -> Optional[float]:
        return None if self.latest is None else now - self.latest[-1]

    def check(self, now: float, max_age_s: float, max_future_s: float) -> Optional[str]:
        """Why the state is stale now (the hold detail), or None (it is ``fresh``)."""
        age = self.age(now)
        if age is None:
            return self.problem or f"no {self.what} received" + (
                f"; {self.skipped}" if self.skipped else "")
        if age > max_age_s:
            return f"{self.what} is {age:.3f} s old"
        if -age > max_future_s:
            return f"{self.what} is stamped in the future ({-age:.3f} s ahead)"
        self.fresh = self.latest
        return None

    def drop_after(self, now: float) -> None:
        """The clock stepped back to ``now``: forget what is stamped after it."""
        if self.latest is not None and self.latest[-1] > now:
            self.latest = None
        self.fresh = None
