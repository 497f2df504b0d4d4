"""An ExecutorNode outside any ROS graph, and a toy arm for it to drive (no rclpy.init()).

``Bare`` builds an active ExecutorNode without joining a ROS graph: its publishers are
recorders, its clock is ``t`` (set by the test). ``ToyArm`` is a kinematic arm that
executes what the executor publishes, on the same clock: a twist moves it at the
commanded velocity (after ``lag_s``, a controller's delay, and with ``velocity_tau_s`` a
first-order lag), a pose or joint target pulls
it there with the time constant ``tau_s`` and settles ``offset`` away (an arm that
sags under gravity). ``ToyLoop`` runs the two together: physics in 1 ms steps, the
executor's timer every ``tick_s`` and the measured state fed back ``state_age_s`` old.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, List, Optional, Sequence, Tuple

import numpy as np
from geometry_msgs.msg import PoseStamped
from rclpy.parameter import Parameter
from rclpy.time import Time
from sensor_msgs.msg import JointState
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from specprune_ros.node import executor_parameters as xp
from specprune_ros.node.executor_node import ExecutorNode
from specprune_ros.node.tf_motion import duration

PERIOD = 0.05  # the chunks' point period (20 Hz)
T0 = 1000.0  # the clock at start


def stamp(seconds: float) -> Any:
    return Time(nanoseconds=int(round(seconds * 1e9))).to_msg()


def chunk_msg(names: Sequence[str], rows: Sequence[Sequence[float]],
              stamp_s: float) -> JointTrajectory:
    """A chunk as the policy node publishes it: point i at (i + 1) * PERIOD."""
    msg = JointTrajectory(joint_names=list(names))
    msg.header.stamp = stamp(stamp_s)
    for i, row in enumerate(rows):
        point = JointTrajectoryPoint(positions=[float(v) for v in row])
        point.time_from_start = duration((i + 1) * PERIOD)
        msg.points.append(point)
    return msg


class Recorder:
    """Stands in for a publisher and for the node's logger."""

    def __init__(self) -> None:
        self.sent: list = []

    def publish(self, msg) -> None:
        self.sent.append(msg)

    def __getattr__(self, level):  # info / warning / error / wait_for_all_acked: ignored
        return lambda *args, **kwargs: None


class Bare:
    """An active ExecutorNode outside any ROS graph: ``node`` runs the real tick, hold,
    input and parameter code; ``t`` is its clock; ``out`` what it published."""

    def __init__(self, **overrides) -> None:
        values = {s.name: s.default for s in xp.PARAMS}
        values.update(ramp_in_s=0.0, require_estop_signal=False)
        values.update(overrides)
        self.t = T0
        self.out, self.gripper, self.log = Recorder(), Recorder(), Recorder()
        node = self.node = ExecutorNode.__new__(ExecutorNode)
        node.get_logger = lambda: self.log
        node._setup(values)
        node._now = lambda: self.t
        node._command_pub, node._gripper_pub = self.out, self.gripper
        node._start_commanding(self.t)

    def pose(self, stamp_s: Optional[float] = None, x: float = 0.5,
             position: Optional[Sequence[float]] = None,
             quaternion: Sequence[float] = (0.0, 0.0, 0.0, 1.0)) -> None:
        msg = PoseStamped()
        msg.header.stamp = stamp(self.t if stamp_s is None else stamp_s)
        msg.header.frame_id = self.node.core.values["base_frame"]
        p = msg.pose.position
        p.x, p.y, p.z = (float(v) for v in (position if position is not None
                                            else (x, 0.0, 0.2)))
        o = msg.pose.orientation
        o.x, o.y, o.z, o.w = (float(v) for v in quaternion)
        self.node._on_pose(msg)

    def joints(self, q, stamp_s: Optional[float] = None) -> None:
        msg = JointState(name=list(self.node.core.values["joint_names"]),
                         position=[float(v) for v in q])
        msg.header.stamp = stamp(self.t if stamp_s is None else stamp_s)
        self.node._on_joints(msg)

    def chunk(self, row, points: int = 8, stamp_s: Optional[float] = None) -> None:
        """A chunk message stamped now (or ``stamp_s``), every point ``row`` (executor
        dimension order), handed to the node as its subscription would."""
        self.node._on_chunk(chunk_msg(self.node.core.layout.action_names, [list(row)] * points,
                                      self.t if stamp_s is None else stamp_s))

    def tick(self, dt: float = 0.02) -> None:
        self.t += dt
        self.node._on_tick()

    def set(self, **values) -> None:
        self.node._apply_parameters([Parameter(k, value=v) for k, v in values.items()])

    def last_twist(self) -> np.ndarray:
        t = self.out.sent[-1].twist
        return np.array([t.linear.x, t.linear.y, t.linear.z])

    def gripper_values(self) -> List[float]:
        return [m.data for m in self.gripper.sent]


# ------------------------------------------------------------------------------ the toy arm
def _position(msg: Any) -> np.ndarray:
    p = msg.pose.position
    return np.array([p.x, p.y, p.z])


@dataclass
class ToyArm:
    """A kinematic arm (see the module docstring). ``position`` is the end effector, ``q``
    the joints; ``history`` holds (time, position, q) after every physics step."""

    position: np.ndarray
    quaternion: np.ndarray = field(default_factory=lambda: np.array([0.0, 0.0, 0.0, 1.0]))
    q: np.ndarray = field(default_factory=lambda: np.zeros(14))
    lag_s: float = 0.0
    velocity_tau_s: float = 0.0
    tau_s: float = 0.05
    offset: np.ndarray = field(default_factory=lambda: np.zeros(3))
    joint_offset: float = 0.0
    twists: List[Tuple[float, np.ndarray]] = field(default_factory=list)
    target: Optional[np.ndarray] = None
    joint_target: Optional[np.ndarray] = None
    history: List[Tuple[float, np.ndarray, np.ndarray]] = field(default_factory=list)
    moving: np.ndarray = field(default_factory=lambda: np.zeros(3))  # its velocity

    def command(self, t: float, msg: Any) -> None:
        """Take what the executor published at time ``t``."""
        if hasattr(msg, "twist"):
            lin = msg.twist.linear
            self.twists.append((t, np.array([lin.x, lin.y, lin.z])))
        elif hasattr(msg, "pose"):
            self.target = _position(msg)
        else:
            self.joint_target = np.array(msg.points[-1].positions)

    def velocity(self, t: float) -> np.ndarray:
        """The commanded velocity the arm executes at ``t`` (sent at or before t - lag)."""
        v = np.zeros(3)
        for sent, twist in self.twists:
            if sent > t - self.lag_s + 1e-12:
                break
            v = twist
        return v

    def step(self, t: float, dt: float) -> None:
        """Advance from ``t`` to ``t + dt``."""
        pull = 1.0 - math.exp(-dt / self.tau_s)
        if self.target is not None:
            self.position = self.position + (self.target + self.offset - self.position) * pull
        else:
            wanted = self.velocity(t)
            if self.velocity_tau_s > 0.0:  # a first-order velocity lag
                wanted = self.moving + (wanted - self.moving) * (
                    1.0 - math.exp(-dt / self.velocity_tau_s))
            self.moving = wanted
            self.position = self.position + wanted * dt
        if self.joint_target is not None:
            self.q = self.q + (self.joint_target + self.joint_offset - self.q) * pull
        self.history.append((t + dt, self.position.copy(), self.q.copy()))

    def at(self, t: float) -> Tuple[np.ndarray, np.ndarray]:
        """(position, q) at the last physics step at or before ``t``."""
        for when, p, q in reversed(self.history):
            if when <= t + 1e-9:
                return p, q
        return self.history[0][1], self.history[0][2]


class ToyLoop:
    """The executor (``bare``) driving ``arm``: the executor's timer every ``tick_s``,
    physics in 1 ms steps, the measured state ``state_age_s`` old at every tick."""

    def __init__(self, bare: Bare, arm: ToyArm, tick_s: float = 0.02,
                 state_age_s: float = 0.0, cartesian: bool = True) -> None:
        self.bare, self.arm = bare, arm
        self.tick_s, self.state_age_s, self.cartesian = tick_s, state_age_s, cartesian
        self.seen = 0  # commands already handed to the arm
        arm.history.append((bare.t, arm.position.copy(), arm.q.copy()))

    def feed(self) -> None:
        """The measured state as of ``state_age_s`` ago, stamped with its own time."""
        when = self.bare.t - self.state_age_s
        p, q = self.arm.at(when)
        if self.cartesian:
            self.bare.pose(stamp_s=when, position=p, quaternion=self.arm.quaternion)
        else:
            self.bare.joints(q, stamp_s=when)

    def run(self, seconds: float, row: Optional[Sequence[float]] = None,
            every_tick=None) -> None:
        """``seconds`` of ticks; ``row``: a fresh chunk of it every 0.1 s."""
        end = self.bare.t + seconds
        next_chunk = self.bare.t
        while self.bare.t < end - 1e-9:
            t0 = self.bare.t
            steps = int(round(self.tick_s / 0.001))
            for i in range(steps):
                self.arm.step(t0 + i * 0.001, 0.001)
            self.bare.t = t0 + self.tick_s
            self.feed()
            if row is not None and self.bare.t >= next_chunk - 1e-9:
                self.bare.chunk(row, points=8)
                next_chunk = self.bare.t + 0.1
            if every_tick is not None:
                every_tick(self)
            self.bare.node._on_tick()
            for msg in self.bare.out.sent[self.seen:]:
                self.arm.command(self.bare.t, msg)
            self.seen = len(self.bare.out.sent)

    def positions(self, since: float = -math.inf) -> np.ndarray:
        return np.array([p for when, p, _ in self.arm.history if when >= since])
