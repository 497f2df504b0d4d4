"""The main job: the simulated arm and the policy node as two processes, one short episode.

Starts ``specprune_sim_arm`` and ``specprune_policy`` (the same parameter files the launch
files use), watches what crosses the wire (chunks, diagnostics, the end-effector pose),
runs part of the episode with SpecPrune and part unpruned (switched live through the
node's set_parameters service, as ``ros2 param set`` does), and prints a summary.
"""
from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseStamped
from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters
from rclpy.node import Node
from std_msgs.msg import Bool
from trajectory_msgs.msg import JointTrajectory

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclass
class Watch:
    """What the demo saw on the wire."""

    chunks: int = 0
    diagnostics: List[Dict[str, str]] = field(default_factory=list)
    first_pose: Optional[tuple] = None
    last_pose: Optional[tuple] = None
    success: bool = False


class DemoMonitor(Node):
    def __init__(self, chunk_topic: str) -> None:
        super().__init__("specprune_demo_monitor")
        self.watch = Watch()
        self._last_steps = 0
        self.create_subscription(JointTrajectory, chunk_topic, self._on_chunk, 10)
        self.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 10)
        self.create_subscription(PoseStamped, "/ee_pose", self._on_pose, 10)
        self.create_subscription(Bool, "/task_success", self._on_success, 10)
        self.params = self.create_client(SetParameters, "/specprune_policy/set_parameters")

    def _on_chunk(self, msg: JointTrajectory) -> None:
        self.watch.chunks += 1

    def _on_diag(self, msg: DiagnosticArray) -> None:
        """Keep one row per policy step (the node also sends heartbeats and faults)."""
        for status in msg.status:
            if "specprune_policy" not in status.name:
                continue
            values = {kv.key: kv.value for kv in status.values}
            steps = int(values.get("steps", "0"))
            if "step_ms" in values and steps > self._last_steps:
                self._last_steps = steps
                self.watch.diagnostics.append(values)

    def _on_pose(self, msg: PoseStamped) -> None:
        p = msg.pose.position
        self.watch.last_pose = (p.x, p.y, p.z)
        if self.watch.first_pose is None:
            self.watch.first_pose = self.watch.last_pose

    def _on_success(self, msg: Bool) -> None:
        self.watch.success = self.watch.success or bool(msg.data)

    def set_bool(self, name: str, value: bool, timeout: float = 10.0) -> bool:
        if not self.params.wait_for_service(timeout_sec=timeout):
            return False
        req = SetParameters.Request()
        req.parameters = [Parameter(name=name, value=ParameterValue(
            type=ParameterType.PARAMETER_BOOL, bool_value=value))]
        future = self.params.call_async(req)
        rclpy.spin_until_future_complete(self, future, timeout_sec=timeout)
        return bool(future.result() and future.result().results[0].successful)


def _start(args: List[str], env: Dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", *args], cwd=ROOT, env=env)


def _stop(proc: subprocess.Popen, timeout: float = 20.0) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.terminate()
            return proc.wait(timeout)
    return proc.returncode


def _spin_until(node: DemoMonitor, done, timeout: float, procs) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        rclpy.spin_once(node, timeout_sec=0.1)
        if done():
            return True
        if any(p.poll() is not None for p in procs):
            return False
    return False


def _median(rows: List[Dict[str, str]], key: str) -> float:
    vals = [float(r[key]) for r in rows if key in r and r[key] not in ("", "nan")]
    return statistics.median(vals) if vals else float("nan")


def _summary(pruned: List[Dict[str, str]], unpruned: List[Dict[str, str]], watch: Watch,
             seconds: float) -> str:
    modes = [r.get("mode", "?") for r in pruned]
    switches = sum(1 for a, b in zip(modes, modes[1:]) if a != b)
    moved = 0.0
    if watch.first_pose and watch.last_pose:
        moved = sum((a - b) ** 2 for a, b in zip(watch.first_pose, watch.last_pose)) ** 0.5
    step_p, step_u = _median(pruned, "step_ms"), _median(unpruned, "step_ms")
    return "\n".join([
        f"episode: {seconds:.0f} s wall, {watch.chunks} chunks published, "
        f"{len(pruned) + len(unpruned)} policy steps reported",
        f"median step latency: SpecPrune {step_p:.0f} ms, unpruned {step_u:.0f} ms "
        f"({step_u / step_p:.2f}x)" if pruned and unpruned else "median step latency: n/a",
        f"median LLM latency: SpecPrune {_median(pruned, 'llm_ms'):.0f} ms, "
        f"unpruned {_median(unpruned, 'llm_ms'):.0f} ms",
        f"visual tokens kept (SpecPrune, median): {_median(pruned, 'kept_visual_tokens'):.0f}"
        f" of {_median(pruned, 'visual_tokens_total'):.0f}",
        f"node overhead (image received -> chunk published, model excluded, median): "
        f"{_median(pruned + unpruned, 'node_overhead_ms'):.1f} ms",
        f"controller modes seen: {sorted(set(modes))}, mode switches: {switches}",
        f"end effector moved {100 * moved:.1f} cm; task success reported: {watch.success}",
    ])


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="oft-cpu", help="preset or checkpoint folder")
    parser.add_argument("--pruned-steps", type=int, default=10)
    parser.add_argument("--unpruned-steps", type=int, default=4)
    parser.add_argument("--timeout", type=float, default=600.0)
    args = parser.parse_args(argv)
    env = dict(os.environ)
    env.setdefault("ROS_DOMAIN_ID", str(50 + os.getpid() % 50))
    env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.update({k: env[k] for k in ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE")})
    bridge = _start(["specprune_ros.sim_bridge_node", "--ros-args", "--params-file",
                     "config/sim_arm.yaml"], env)
    policy = _start(["specprune_ros.policy_node", "--ros-args", "--params-file",
                     "config/policy.yaml", "-p", f"model:={args.model}"], env)
    rclpy.init()
    node = DemoMonitor("/specprune/action_chunk")
    start = time.monotonic()
    try:
        procs = (bridge, policy)
        ok = _spin_until(node, lambda: len(node.watch.diagnostics) >= args.pruned_steps,
                         args.timeout, procs)
        pruned = list(node.watch.diagnostics)
        unpruned: List[Dict[str, str]] = []
        if ok and node.set_bool("prune.enabled", False):
            node.watch.diagnostics.clear()
            _spin_until(node, lambda: len(node.watch.diagnostics) >= args.unpruned_steps + 1,
                        args.timeout, procs)
            unpruned = node.watch.diagnostics[1:]  # the first may predate the switch
        print(_summary(pruned, unpruned, node.watch, time.monotonic() - start))
        return 0 if ok and node.watch.chunks > 0 else 1
    finally:
        node.destroy_node()
        rclpy.shutdown()
        codes = [_stop(policy), _stop(bridge)]
        print(f"processes stopped (exit codes policy={codes[0]}, sim={codes[1]})")


if __name__ == "__main__":
    sys.exit(main())
