"""Process lifetime for the package's nodes: ordered shutdown on SIGINT / SIGTERM, and the
bring-up of the managed (lifecycle) nodes.

rclpy's own signal handlers shut the context down immediately, while a node's worker
thread may still be publishing into it (seen as a rare segfault at exit). Here a signal
only sets a flag; the main loop then stops the node's threads first, destroys the node,
and shuts rclpy down last.
"""
from __future__ import annotations

import os
import signal
import sys
import threading
import time
from typing import Any, Callable, List, Optional, Protocol, TypeVar

import rclpy
import rclpy.logging
from rclpy.executors import Executor, ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, TransitionCallbackReturn
from rclpy.signals import SignalHandlerOptions

_stop = threading.Event()


def request_stop(*_signal: object) -> None:
    """Ask the main loop to stop (from any thread); also the SIGINT / SIGTERM handler."""
    _stop.set()


def init(args: Optional[List[str]] = None) -> None:
    """rclpy.init without rclpy's signal handlers; SIGINT / SIGTERM request a stop."""
    _stop.clear()
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)


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


class StartupError(Exception):
    """A configuration or model problem that stops a node at start (clear message)."""


def bring_up(node: LifecycleNode, reason: Callable[[], str]) -> None:
    """configure, then activate ``node``; StartupError with ``reason()`` (or the name of the
    transition that failed) when one does not succeed."""
    for name, trigger in (("configure", node.trigger_configure),
                          ("activate", node.trigger_activate)):
        if trigger() != TransitionCallbackReturn.SUCCESS:
            raise StartupError(reason() or f"{name} failed")


class ManagedNode(Protocol):
    """What run_managed needs of a node besides rclpy's LifecycleNode."""

    @property
    def autostart(self) -> bool: ...

    def bring_up(self) -> None: ...

    def get_logger(self) -> Any: ...

    def destroy_node(self) -> None: ...


Managed = TypeVar("Managed", bound=ManagedNode)


def run_managed(args: Optional[List[str]], node_name: str, make_node: Callable[[], Managed],
                finish: Callable[[Managed], None], exit_at_once: bool = False) -> None:
    """The main loop of a managed node: build it, bring it up when its ``autostart``
    parameter says so (else wait for a lifecycle manager), spin until SIGINT / SIGTERM,
    then ``finish`` it (its ordered shutdown, while rclpy is up), destroy it and shut rclpy
    down.

    Exit code 0 after a stop; 1 when the node cannot start (StartupError from its
    constructor or from the bring-up, logged as "cannot start: <reason>"). With
    ``exit_at_once`` the process ends with os._exit once the output is flushed: the
    interpreter's teardown of torch / transformers takes seconds on a loaded machine, long
    enough for a launch's SIGINT to escalate to SIGTERM.
    """
    init(args)
    node: Optional[Managed] = None
    executor = SingleThreadedExecutor()
    code = 0
    try:
        node = make_node()
        executor.add_node(node)  # type: ignore[arg-type]
        if node.autostart:
            node.bring_up()
        else:
            node.get_logger().info("unconfigured: waiting for configure / activate "
                                   "(lifecycle services, or autostart:=true)")
        spin_until_stopped(executor)
    except StartupError as exc:
        rclpy.logging.get_logger(node_name).fatal(f"cannot start: {exc}")
        code = 1
    finally:
        if node is not None:
            finish(node)
        executor.shutdown()
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    if exit_at_once:
        os._exit(code)
    if code:
        sys.exit(code)
