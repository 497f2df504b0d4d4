"""Measure the policy node's own overhead and whether it keeps up with 30 Hz cameras.

Starts ``specprune_ros.node.policy_node`` as a process (on its own ROS domain, localhost only),
feeds it two 224x224 rgb8 cameras, joint states and an ee pose at ``--rate`` Hz, and reads
back its chunks and diagnostics::

    python -m specprune_ros.eval.overhead_probe --model tiny --seconds 20 --rate 30

Reported (medians, p95):
- node overhead: newest image received -> chunk published, minus the model step and minus
  any time the worker was busy or rate-limited (the node's diagnostics ``node_overhead_ms``);
- latency: image received -> chunk published (``latency_ms``), and chunk age at the
  receiver (now - chunk stamp) early vs late in the run: a backlog would make it grow.
"""
from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from typing import Dict, List, Optional, Sequence

import numpy as np
import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # lark, pulled in by the msg packages
    from diagnostic_msgs.msg import DiagnosticArray
    from geometry_msgs.msg import PoseStamped
    from sensor_msgs.msg import Image, JointState
    from trajectory_msgs.msg import JointTrajectory

from specprune_ros.eval.eval_ros import simulated_policy_command
from specprune_ros.node.policy_messages import DIAG_NAME
from specprune_ros.node.ros_image import rgb_to_image_msg
from specprune_ros.node.tf_motion import stamp_seconds

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CAMERAS = ("/camera/agentview/image_raw", "/camera/wrist/image_raw")
JOINTS = [f"panda_joint{i}" for i in range(1, 8)] + [f"panda_finger_joint{i}" for i in (1, 2)]


class Feeder(Node):
    """Publishes the inputs at a fixed rate and records chunks and diagnostics."""

    def __init__(self, context: Context, rate: float) -> None:
        super().__init__("specprune_overhead_probe", context=context)
        self.cams = [self.create_publisher(Image, t, qos_profile_sensor_data) for t in CAMERAS]
        self.joints = self.create_publisher(JointState, "/joint_states", 10)
        self.pose = self.create_publisher(PoseStamped, "/ee_pose", 10)
        rng = np.random.default_rng(0)
        self.frames = [rng.integers(0, 255, (224, 224, 3), dtype=np.uint8) for _ in CAMERAS]
        self.chunk_ages: List[float] = []  # seconds, receipt time - chunk stamp
        self.diags: List[Dict[str, str]] = []
        self.sent = 0
        self.create_subscription(JointTrajectory, "/specprune/action_chunk", self._on_chunk, 10)
        self.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 50)
        self.create_timer(1.0 / rate, self._publish)

    def _publish(self) -> None:
        now = self.get_clock().now()
        stamp = now.to_msg()
        for pub, frame in zip(self.cams, self.frames):
            pub.publish(rgb_to_image_msg(frame, "rgb8", stamp))
        self.joints.publish(JointState(header=_header(stamp), name=JOINTS,
                                       position=[0.0] * 7 + [0.04, 0.04]))
        pose = PoseStamped(header=_header(stamp))
        pose.pose.position.x = 0.4 + 0.1 * np.sin(now.nanoseconds * 1e-9)
        pose.pose.orientation.w = 1.0
        self.pose.publish(pose)
        self.sent += 1

    def _on_chunk(self, msg: JointTrajectory) -> None:
        self.chunk_ages.append(self.get_clock().now().nanoseconds * 1e-9
                               - stamp_seconds(msg.header.stamp))

    def _on_diag(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name == DIAG_NAME:
                self.diags.append({kv.key: kv.value for kv in status.values})


def _header(stamp):
    from std_msgs.msg import Header
    return Header(stamp=stamp, frame_id="panda_link0")


def _stats(values: Sequence[float]) -> str:
    if not values:
        return "n/a"
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
    return f"median {statistics.median(ordered):.1f}, p95 {p95:.1f} (n={len(ordered)})"


def _column(diags: List[Dict[str, str]], key: str) -> List[float]:
    return [float(d[key]) for d in diags if key in d]


def _start_node(args: argparse.Namespace, env: Dict[str, str], log_path: str
                ) -> subprocess.Popen:
    """The policy node, brought up by itself; a preset model (random weights) is allowed:
    the inputs are synthetic and nothing moves."""
    cmd = [sys.executable, "-m"] + simulated_policy_command(
        args.model, f"inference_rate_hz:={args.inference_rate:.1f}",
        "instruction:=pick up the red cube")
    with open(log_path, "wb") as log:
        return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def run(args: argparse.Namespace) -> int:
    domain = 150 + os.getpid() % 80
    log_dir = tempfile.mkdtemp(prefix="specprune_probe_")
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
               ROS_LOG_DIR=log_dir)
    env.setdefault("HOME", log_dir)
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    log_path = os.path.join(log_dir, "policy_node.log")
    proc = _start_node(args, env, log_path)
    context = Context()
    rclpy.init(context=context, domain_id=domain)
    feeder = Feeder(context, args.rate)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(feeder)
    try:
        deadline = time.monotonic() + 180.0
        while not feeder.chunk_ages and time.monotonic() < deadline and proc.poll() is None:
            executor.spin_once(timeout_sec=0.05)
        if not feeder.chunk_ages:
            with open(log_path, errors="replace") as log:
                tail = log.read()[-3000:]
            state = "running" if proc.poll() is None else f"exited with {proc.returncode}"
            print(f"the node published no chunk ({state}); its log ({log_path}):\n{tail}",
                  file=sys.stderr)
            return 1
        feeder.chunk_ages.clear()
        feeder.diags.clear()
        sent0, t0 = feeder.sent, time.monotonic()
        while time.monotonic() - t0 < args.seconds:
            executor.spin_once(timeout_sec=0.05)
        _report(args, feeder, (feeder.sent - sent0) / (time.monotonic() - t0))
        return 0
    finally:
        executor.shutdown()
        feeder.destroy_node()
        rclpy.try_shutdown(context=context)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)


def _report(args: argparse.Namespace, feeder: Feeder, sent_rate: float) -> None:
    diags = feeder.diags
    ages = [a * 1e3 for a in feeder.chunk_ages]
    third = max(1, len(ages) // 3)
    print(f"model {args.model}, cameras at {sent_rate:.1f} Hz (target {args.rate:g}), "
          f"inference_rate_hz {args.inference_rate:g}, {args.seconds:g} s")
    print(f"chunks: {len(ages)} ({len(ages) / args.seconds:.1f} Hz)")
    print(f"model step ms:          {_stats(_column(diags, 'step_ms'))}")
    print(f"node overhead ms:       {_stats(_column(diags, 'node_overhead_ms'))}")
    print(f"image->chunk ms:        {_stats(_column(diags, 'latency_ms'))}")
    print(f"chunk age at receiver:  first third {_stats(ages[:third])}; "
          f"last third {_stats(ages[-third:])}")


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rate", type=float, default=30.0, help="camera rate, Hz")
    parser.add_argument("--inference-rate", type=float, default=0.0,
                        help="the node's inference_rate_hz (0: as fast as it can)")
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
