"""Process lifetime for the package's nodes: ordered shutdown on SIGINT / SIGTERM.

rclpy's own signal handlers shut the context down immediately, while a node's worker
thread may still be publishing into it (seen as a rare segfault at exit). Here a signal
only sets a flag; the main loop then stops the node's threads first, destroys the node,
and shuts rclpy down last.
"""
from __future__ import annotations

import signal
import threading
import time
from typing import List, Optional

import rclpy
from rclpy.executors import Executor, ExternalShutdownException
from rclpy.signals import SignalHandlerOptions

_stop = threading.Event()


def _request_stop(signum: int, frame: object) -> None:
    _stop.set()


def request_stop() -> None:
    """Ask the main loop to stop, as SIGINT / SIGTERM do (from any thread)."""
    _stop.set()


def init(args: Optional[List[str]] = None) -> None:
    """rclpy.init without rclpy's signal handlers; SIGINT / SIGTERM request a stop."""
    _stop.clear()
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    signal.signal(signal.SIGINT, _request_stop)
    signal.signal(signal.SIGTERM, _request_stop)


def spin_until_stopped(executor: Executor, period_s: float = 0.1) -> None:
    """Spin until a stop is requested or the context is shut down elsewhere."""
    try:
        while not _stop.is_set() and rclpy.ok():
            executor.spin_once(timeout_sec=period_s)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass


def drain(executor: Executor, seconds: float = 0.3, period_s: float = 0.05) -> None:
    """After a stop, keep dispatching for ``seconds`` before ``executor.shutdown()``.

    A MultiThreadedExecutor's shutdown destroys its guard condition before its threads run
    the callbacks already queued; a callback queued behind a busy one (a mutually exclusive
    group) then fails on the destroyed guard, and rclpy prints "The following exception was
    never retrieved: cannot use Destroyable ...". Stop the node's timers first, then drain:
    what is queued runs while the guard still exists.
    """
    end = time.monotonic() + seconds
    try:
        while rclpy.ok() and time.monotonic() < end:
            executor.spin_once(timeout_sec=period_s)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
