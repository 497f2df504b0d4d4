"""The executor's view of its own ticks: the actual period, and the clock stepping back.

No ROS imports. The executor's timer runs on the node clock; on simulated time it fires on
/clock updates, so a 50 Hz timer on the bridge's 20 Hz clock ticks every 50 ms, and a late
tick (a loaded machine) comes later still. ``TickClock.tick`` returns the period to plan
with: the time since the previous tick, at least the nominal one and at most
``max(2 * nominal, 0.1 s)`` (a stall does not turn into one large acceleration step), and
whether the clock went back since (a simulator reset, a bag looped, a /clock restarted
at a small value): the executor then starts over (drops its chunks and timed state, holds,
ramps in again). ROS 2 reports the same through time-jump callbacks
(``Clock.create_jump_callback``); ``reset`` takes that report.
"""
from __future__ import annotations

from typing import Optional, Tuple


class TickClock:
    """Tick periods and backward steps (see the module docstring)."""

    def __init__(self, nominal: float) -> None:
        self.nominal = nominal
        self.longest = max(2.0 * nominal, 0.1)
        self.last: Optional[float] = None

    def tick(self, now: float) -> Tuple[float, bool]:
        """(period to plan this tick with, the clock went back since the last tick)."""
        last, self.last = self.last, now
        if last is None:
            return self.nominal, False
        if now < last:
            return self.nominal, True
        return min(max(now - last, self.nominal), self.longest), False

    def reset(self, now: float) -> None:
        """The clock jumped to ``now`` (a jump callback): the next tick is no jump."""
        self.last = now
