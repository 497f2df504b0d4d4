"""What the policy node's input checks report, and the thresholds they check against.

``Fault`` is one reason there is no observation (or no motion estimate); ``Limits`` holds
the thresholds; ``FaultTracker`` turns a stream of fault lists into began / cleared events
so each fault is logged once per occurrence. Pure Python (no rclpy, no numpy)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple


@dataclass(frozen=True)
class Limits:
    """Thresholds of the consistency checks (seconds, m/s, rad/s, pixels; 0 size = any)."""

    max_image_age_s: float = 0.5
    max_view_skew_s: float = 0.1
    max_joint_state_age_s: float = 0.5
    max_pose_age_s: float = 0.5
    max_ee_speed: float = 3.0
    max_ee_angular_speed: float = 20.0
    image_width: int = 224
    image_height: int = 224


@dataclass(frozen=True)
class Fault:
    """Why no observation: ``key`` identifies the kind of fault (stable across repeats, for
    log-once bookkeeping), ``message`` says what exactly is wrong right now."""

    key: str
    message: str
    severe: bool = False  # an ERROR (model / internal) rather than a WARN (input)


class FaultTracker:
    """Which faults are active: report each once per episode (until it clears and recurs)."""

    def __init__(self) -> None:
        self._active: Dict[str, Fault] = {}

    @property
    def active(self) -> List[Fault]:
        return list(self._active.values())

    def update(self, faults: Sequence[Fault]) -> Tuple[List[Fault], List[Fault]]:
        """Replace the active set; return (faults that just began, faults that just cleared)."""
        current = {f.key: f for f in faults}
        started = [f for k, f in current.items() if k not in self._active]
        cleared = [f for k, f in self._active.items() if k not in current]
        self._active = current
        return started, cleared
