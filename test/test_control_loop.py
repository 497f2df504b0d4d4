"""The simulated arm's fixed-rate control loop (ROS-free): pacing, no catch-up after an
overrun, errors reported and never lost with the thread, stop."""
import threading
import time
from typing import List

import pytest

from specprune_ros.sim.control_loop import ControlLoop

PERIOD_S = 0.02


def wait_for(predicate, timeout_s: float = 10.0) -> bool:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.005)
    return predicate()


def test_ticks_at_its_period_and_stops() -> None:
    times: List[float] = []
    loop = ControlLoop(PERIOD_S, lambda: times.append(time.monotonic()))
    loop.start()
    time.sleep(0.5)
    assert loop.stop() and not loop.running()
    n = len(times)
    time.sleep(3 * PERIOD_S)
    assert len(times) == n, "ticked after stop()"
    # never faster than its period (a loaded machine may make it slower)
    assert 2 <= n <= 0.5 / PERIOD_S + 2, n
    assert loop.ticks == n


def test_an_overrun_is_counted_and_not_made_up_with_a_burst() -> None:
    times: List[float] = []

    def tick() -> None:
        times.append(time.monotonic())
        if len(times) == 3:
            time.sleep(10 * PERIOD_S)  # one tick takes ten periods

    loop = ControlLoop(PERIOD_S, tick)
    loop.start()
    assert wait_for(lambda: len(times) >= 3)
    slow_end = times[2] + 10 * PERIOD_S
    time.sleep(20 * PERIOD_S)
    loop.stop()
    after = [t for t in times if slow_end <= t <= slow_end + 5 * PERIOD_S]
    # a loop that replays missed ticks would run ~10 at once here
    assert len(after) <= 5 + 2, [round(t - slow_end, 3) for t in after]
    assert loop.overruns >= 1


def test_an_error_ends_the_loop_and_is_reported_once() -> None:
    reported: List[BaseException] = []
    calls = []

    def tick() -> None:
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("renderer lost")

    done = threading.Event()
    loop = ControlLoop(PERIOD_S, tick, lambda exc: (reported.append(exc), done.set()))
    loop.start()
    assert done.wait(10.0)
    assert wait_for(lambda: not loop.running())
    assert len(calls) == 2 and loop.ticks == 1
    assert [str(e) for e in reported] == ["renderer lost"]
    assert isinstance(loop.error, RuntimeError)
    assert loop.stop()


@pytest.mark.parametrize("period", [0.0, -0.05, float("nan")])
def test_a_period_that_cannot_be_kept_is_refused(period: float) -> None:
    with pytest.raises(ValueError, match="period_s"):
        ControlLoop(period, lambda: None)
