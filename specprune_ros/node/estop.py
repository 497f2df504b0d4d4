"""The executor's e-stop input: a latch, the first signal, and an optional heartbeat.

No ROS imports. ``EstopMonitor`` takes every std_msgs/Bool of the e-stop topic with the
node-clock time it arrived and says, each tick, why the executor must hold (or nothing):

- a ``true`` latches until ``reset`` (refused while the input is still true);
- ``require_signal``: until a first ``false`` has arrived (the topic is not latched: an
  e-stop raised before the executor subscribed would otherwise go unseen);
- ``heartbeat_s`` > 0: unless a ``false`` arrived within the last ``heartbeat_s`` seconds
  (a dead e-stop publisher, or a cable pulled, stops the arm; a robot whose e-stop
  publisher repeats its state at a known rate wants this).
"""
from __future__ import annotations

from typing import Optional, Tuple


class EstopMonitor:
    """The state of the e-stop input (see the module docstring)."""

    def __init__(self) -> None:
        self.latched = False
        self.input = False  # the last value received
        self.forget()

    def forget(self) -> None:
        """A new subscription (cleanup) or a clock that stepped back: the signal and the
        heartbeat must be heard again; a latched e-stop stays latched."""
        self.heard = False  # a false received since
        self.last_false: Optional[float] = None

    def receive(self, value: bool, now: float, heartbeat_s: float = 0.0) -> Tuple[bool, bool]:
        """Take one message; (it latched the e-stop now, it ended a hold for the signal:
        the first false, or with ``heartbeat_s`` one after a silence longer than that)."""
        self.input = bool(value)
        if value:
            newly = not self.latched
            self.latched = True
            return newly, False
        silent = self.last_false is None or not 0.0 <= now - self.last_false <= heartbeat_s
        resumed = not self.heard or (heartbeat_s > 0.0 and silent)
        self.heard, self.last_false = True, now
        return False, resumed

    def clock_jumped(self) -> None:
        """The clock went back: a heartbeat from before proves nothing now."""
        self.last_false = None

    def reset(self) -> Tuple[bool, str]:
        """``~/reset_estop``: (success, message); success with a latch released means the
        caller starts again from rest."""
        if self.input:
            return False, "e-stop input is still true"
        if not self.latched:
            return True, "no e-stop latched"
        self.latched = False
        return True, "e-stop reset: ramping in"

    def problem(self, now: float, require_signal: bool, heartbeat_s: float) -> Optional[str]:
        """Why the executor must hold now (the hold detail), or None."""
        if self.latched:
            return "e-stop latched (~/reset_estop)"
        if require_signal and not self.heard:
            return "no e-stop signal received yet"
        if heartbeat_s > 0.0:
            if self.last_false is None:
                return f"no e-stop heartbeat (false) within {heartbeat_s:g} s"
            silent = now - self.last_false
            if not 0.0 <= silent <= heartbeat_s:
                return (f"no e-stop heartbeat (false) for {silent:.3f} s "
                        f"(estop_heartbeat_timeout_s {heartbeat_s:g})")
        return None
