"""Shared helpers of the multi-process ROS tests: node processes, an in-test probe node.

Processes run on a per-test-run ROS domain with discovery limited to this host and their
logs in a temporary folder; they are stopped with SIGINT / SIGTERM (never SIGKILL, which
leaves /dev/shm/fastdds_* behind). Waits are on conditions with deadlines, never blind
sleeps.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence

import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # lark, pulled in by the msg packages
    from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
    from rcl_interfaces.srv import SetParameters

REPO = Path(__file__).resolve().parents[1]


def domain_id(offset: int) -> int:
    """A ROS domain for this test run (pid-based; ``offset`` separates test modules)."""
    return 1 + (os.getpid() * 7 + offset) % 100


def ros_environment(log_dir: Path, domain: int) -> Dict[str, str]:
    """Environment of a node process: own domain, localhost discovery, logs in log_dir."""
    env = dict(os.environ)
    env.update(ROS_DOMAIN_ID=str(domain), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
               ROS_LOG_DIR=str(log_dir), PYTHONUNBUFFERED="1")
    env.setdefault("HOME", str(log_dir))
    env.setdefault("MUJOCO_GL", "egl")
    return env


class NodeProcess:
    """``python -m <module> <args>`` in the repository root, output captured to a file."""

    def __init__(self, module: str, args: Sequence[str], log_dir: Path, domain: int,
                 name: str) -> None:
        log_dir.mkdir(parents=True, exist_ok=True)
        self.output = log_dir / f"{name}.log"
        self._out = self.output.open("wb")
        self.started = time.monotonic()
        self.proc = subprocess.Popen([sys.executable, "-m", module, *args], cwd=REPO,
                                     env=ros_environment(log_dir, domain), stdout=self._out,
                                     stderr=subprocess.STDOUT)

    def log(self, tail: int = 6000) -> str:
        return self.output.read_text(errors="replace")[-tail:]

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait(self, timeout: float) -> Optional[int]:
        """Exit code within ``timeout`` seconds, or None."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, sig: int = signal.SIGINT, timeout: float = 20.0) -> Optional[int]:
        """Send ``sig`` (then SIGTERM) and return the exit code, None if it would not stop."""
        for current in (sig, signal.SIGTERM):
            if self.proc.poll() is None:
                self.proc.send_signal(current)
                if self.wait(timeout) is not None:
                    break
        if not self._out.closed:
            self._out.close()
        return self.proc.poll()


class Probe:
    """An rclpy node in its own context (domain ``domain``) driven by ``spin_until``."""

    def __init__(self, name: str, domain: int) -> None:
        saved = os.environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE")
        os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"  # read by rclpy.init
        try:
            self.context = Context()
            rclpy.init(context=self.context, domain_id=domain)
        finally:
            if saved is None:
                os.environ.pop("ROS_AUTOMATIC_DISCOVERY_RANGE")
            else:
                os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = saved
        self.node = Node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.every: List[Callable[[], None]] = []  # called on each spin (e.g. publishers)

    def now(self) -> Any:
        return self.node.get_clock().now()

    def spin_until(self, done: Callable[[], bool], timeout: float,
                   alive: Optional[Callable[[], bool]] = None) -> bool:
        """Spin (running ``every``) until ``done()``; False on timeout or when ``alive()``
        turns False."""
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() > deadline or (alive is not None and not alive()):
                return False
            for action in self.every:
                action()
            self.executor.spin_once(timeout_sec=0.01)
        return True

    def spin_for(self, seconds: float) -> None:
        """Keep spinning (and publishing through ``every``) for an observation window."""
        end = time.monotonic() + seconds
        self.spin_until(lambda: time.monotonic() >= end, seconds + 1.0)

    def call(self, srv_type: Any, name: str, request: Any, timeout: float = 20.0,
             server: Optional[NodeProcess] = None, resend_s: Optional[float] = None) -> Any:
        """Call a service; with ``server`` (the process that offers it) give up as soon as
        it exits, and put its state and log's tail in the failure.

        ``resend_s`` (for queries only, which are safe to repeat): send the request again
        every ``resend_s`` until an answer comes. A service answers over a topic of its own,
        and a response sent before the server has matched a new client's response reader
        is dropped ("failed to send response (timeout)", ros2/ros2#1253), so on a loaded
        machine the first request of a new client can go unanswered."""
        client = self.node.create_client(srv_type, name)
        alive = server.alive if server is not None else None
        try:
            if not self.spin_until(client.service_is_ready, timeout, alive):
                raise AssertionError(f"{name} never became available{_server_state(server)}")
            deadline = time.monotonic() + timeout
            futures = [client.call_async(request)]
            while True:
                wait = deadline - time.monotonic()
                if resend_s is not None:
                    wait = min(wait, resend_s)
                if self.spin_until(lambda: any(f.done() for f in futures), max(wait, 0.0),
                                   alive):
                    return next(f for f in futures if f.done()).result()
                if time.monotonic() >= deadline or (alive is not None and not alive()):
                    raise AssertionError(f"{name} did not answer{_server_state(server)}")
                futures.append(client.call_async(request))
        finally:
            self.node.destroy_client(client)

    def set_parameters(self, node_name: str, values: Dict[str, Any]) -> List[Any]:
        """Call /<node>/set_parameters (what `ros2 param set` does); the per-parameter results."""
        request = SetParameters.Request(
            parameters=[Parameter(name=k, value=parameter_value(v)) for k, v in values.items()])
        return list(self.call(SetParameters, f"/{node_name}/set_parameters", request).results)

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)


def _server_state(server: Optional[NodeProcess]) -> str:
    """What a failed call's message adds about the process behind the service."""
    if server is None:
        return ""
    return f" ({'running' if server.alive() else 'exited'}); its log:\n{server.log()}"


def parameter_value(value: Any) -> ParameterValue:
    """A Python value as an rcl_interfaces ParameterValue (bool, int, float, str, lists)."""
    if isinstance(value, bool):
        return ParameterValue(type=ParameterType.PARAMETER_BOOL, bool_value=value)
    if isinstance(value, int):
        return ParameterValue(type=ParameterType.PARAMETER_INTEGER, integer_value=value)
    if isinstance(value, float):
        return ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=value)
    if isinstance(value, str):
        return ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=value)
    if isinstance(value, list) and all(isinstance(v, int) for v in value):
        return ParameterValue(type=ParameterType.PARAMETER_INTEGER_ARRAY,
                              integer_array_value=value)
    if isinstance(value, list) and all(isinstance(v, float) for v in value):
        return ParameterValue(type=ParameterType.PARAMETER_DOUBLE_ARRAY,
                              double_array_value=value)
    if isinstance(value, list):
        return ParameterValue(type=ParameterType.PARAMETER_STRING_ARRAY,
                              string_array_value=[str(v) for v in value])
    raise TypeError(f"no ParameterValue for {value!r}")


def probe_fixture(name: str, domain: int) -> Iterator[Probe]:
    """Generator body of a fixture yielding a Probe (closed afterwards)."""
    probe = Probe(name, domain)
    try:
        yield probe
    finally:
        probe.close()
