"""A fixed-rate control loop on a thread of its own, as an arm driver runs its servo loop.

The simulated arm used to tick from an rclpy timer under a MultiThreadedExecutor. With
commands arriving at 50 Hz (the executor's twists) that timer was starved: on an idle
2-core machine the bridge ticked about 5 times a second instead of 20, with gaps up to 1 s,
so the arm barely moved and the executor saw its pose go stale (issue #13). Subscriptions
only store the newest command; the loop here does the stepping, paced by the monotonic
clock, whatever the executor is busy with.
"""
from __future__ import annotations

import threading
import time
from typing import Callable, Optional


class ControlLoop:
    """Call ``tick`` every ``period_s`` seconds on a daemon thread until :meth:`stop`.

    A tick that overruns its period is not made up for: the next one starts at once and the
    schedule restarts from there (a late burst of catch-up ticks would move a real arm in a
    jump). Overruns are counted. An exception from ``tick`` ends the loop; it is kept in
    :attr:`error` and ``on_error`` is called with it (from the loop's thread).
    """

    def __init__(self, period_s: float, tick: Callable[[], None],
                 on_error: Optional[Callable[[BaseException], None]] = None,
                 name: str = "control_loop") -> None:
        if not period_s > 0:
            raise ValueError(f"period_s must be > 0, got {period_s}")
        self.period_s = float(period_s)
        self._tick, self._on_error = tick, on_error
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.ticks = 0
        self.overruns = 0
        self.error: Optional[BaseException] = None

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> bool:
        """Ask the loop to end after the tick in progress; True when the thread ended."""
        self._stop.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout_s)
        return not self._thread.is_alive()

    def running(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        deadline = time.monotonic()
        while not self._stop.is_set():
            try:
                self._tick()
            except BaseException as exc:  # reported, never lost with the thread
                self.error = exc
                if self._on_error is not None:
                    self._on_error(exc)
                return
            self.ticks += 1
            deadline += self.period_s
            late = time.monotonic() - deadline
            if late > 0:
                self.overruns += 1
                deadline = time.monotonic()
                continue
            self._stop.wait(-late)
