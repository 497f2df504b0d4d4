"""ROS 2 lifecycle node ``specprune_executor``: action chunks -> smooth, limited robot commands.

Between the policy node and the robot. Run::

    python -m specprune_ros.node.executor_node --ros-args --params-file config/executor.yaml \
        -p autostart:=true

Every ``1 / control_rate_hz`` of the node clock (simulated time with use_sim_time) it takes
the point of each chunk that is due now (chunk_timing: points whose time has passed are
skipped, never replayed late), combines overlapping chunks by ``rule``, scales the
normalised action to SI units, passes it through the safety envelope (safety_envelope)
and commands the robot on one interface (``output``: TwistStamped, PoseStamped target or
JointTrajectory) plus the gripper (std_msgs/Float64). It holds (zero twist / the measured
pose / the measured joints) when no chunk covers the tick, when no chunk arrived for
``chunk_timeout_s`` (watchdog), when the measured state is stale (or stamped in the
future), from an e-stop message until ``~/reset_estop``, and (``require_estop_signal``)
until the e-stop topic has said false once. Malformed or non-finite chunks are refused.
Every intervention is counted on /diagnostics. ``dry_run`` computes and reports, commands
nothing (switched on while active, it first sends one hold).

Lifecycle: configure subscribes and creates the outputs (a Cartesian layout with output
joint_trajectory is refused here, with the reason); activate starts commanding (speed
limits ramp in over ``ramp_in_s``); deactivate sends one hold and stops commanding;
cleanup drops everything. ``autostart: true`` configures and activates at start.
"""
from __future__ import annotations

import math
import warnings
from collections import Counter
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.publisher import Publisher
from rclpy.service import Service
from rclpy.subscription import Subscription
from rclpy.duration import Duration
from rclpy.time import Time

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # lark, pulled in by the msg packages
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
    from geometry_msgs.msg import PoseStamped, TwistStamped
    from rcl_interfaces.msg import SetParametersResult
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Bool, Float64
    from std_srvs.srv import Trigger
    from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from specprune.model.layouts import LAYOUTS
from specprune_ros.node import executor_parameters as params
from specprune_ros.node import lifecycle
from specprune_ros.node.lifecycle import StartupError
from specprune_ros.node.param_table import coerce_parameters, declare_table, ros_value
from specprune_ros.node.chunk_timing import ChunkCombiner, parse_chunk
from specprune_ros.node.safety_envelope import Envelope, PoseIntegrator, ramp_factor
from specprune_ros.node.tf_motion import duration, pose_from_msg, stamp_seconds

NODE_NAME = params.NODE_NAME
DIAG_NAME = f"{NODE_NAME}: safety"
_DIAG_PERIOD_S = 0.5
SHUTDOWN_ACK_TIMEOUT_S = 1.0  # at exit, how long the last hold may wait for acknowledgement
HOLD_REASONS = ("estop", "stale_state", "watchdog", "no_chunk")


def _kind(entity: Any) -> type:
    return next(k for k in (Subscription, Service, Publisher) if isinstance(entity, k))


def declare_parameters(node: LifecycleNode) -> Dict[str, Any]:
    """Declare the table (an integer override of a double is taken as a float); StartupError
    on an override of the wrong type, out of range or against the table's rules (all three
    checked by declare_table), or on inconsistent limits (an inverted workspace box)."""
    values = declare_table(node, params.PARAMS)
    try:
        params.limits_from(values)
    except (ValueError, TypeError) as exc:
        raise StartupError(str(exc)) from None
    return values


class ExecutorNode(LifecycleNode):
    """The chunk executor (see the module docstring)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        try:
            values = declare_parameters(self)
        except StartupError:
            self.destroy_node()
            raise
        self._setup(values)
        self.add_pre_set_parameters_callback(self._coerce_parameters)
        self.add_on_set_parameters_callback(self._validate_parameters)
        self.add_post_set_parameters_callback(self._apply_parameters)

    def _setup(self, values: Dict[str, Any]) -> None:
        """Everything but the ROS entities (the logic tests drive an instance from here)."""
        self._values = v = values
        self._layout = LAYOUTS[v["action_layout"]]
        self._cartesian = v["action_layout"] not in params.JOINT_LAYOUTS
        self._dt = 1.0 / float(v["control_rate_hz"])
        # read-only parameters: a joint trajectory's names and point time, built once
        self._joint_names = tuple(v["joint_names"])
        self._point_time = duration(self._dt)
        self._combiner = ChunkCombiner(v["rule"], v["ensemble_k"], v["crossfade_points"])
        self._envelope = Envelope(params.limits_from(v))
        self._integrator = PoseIntegrator()
        self.counters: Counter = Counter()
        self._entities: List[Any] = []
        self._timer: Any = None
        self._active = False
        self._activated_at: Optional[float] = None  # start of the ramp; None: no clock yet
        self._estop_latched = self._estop_input = False
        self._estop_heard = False  # a false received on estop_topic (require_estop_signal)
        self._pose: Optional[Tuple[np.ndarray, np.ndarray, float]] = None
        self._state_problem = ""  # why the last state message was refused
        self._last_chunk_at: Optional[float] = None  # node time of the last accepted chunk
        self._joints: Optional[Tuple[np.ndarray, float]] = None
        self._hold_reason: Optional[str] = None
        self._hold_detail = ""
        self._gripper = -1.0
        self._last_refusal = ""
        self._last_command: Dict[str, Any] = {}
        self._seq = 0
        self._last_diag = -math.inf

    @property
    def autostart(self) -> bool:
        return bool(self._values["autostart"])

    def bring_up(self) -> None:
        """configure, then activate (``autostart``); StartupError with the reason."""
        lifecycle.bring_up(self, lambda: self._last_refusal)

    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    # -------------------------------------------------------------------- lifecycle
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        problem = params.structure_problem(self._values)
        if problem:
            self.get_logger().error(f"configure refused: {problem}")
            self._last_refusal = problem
            return TransitionCallbackReturn.FAILURE
        v = self._values
        sub, pub = self.create_subscription, self.create_publisher
        self._entities = [
            sub(JointTrajectory, v["action_chunk_topic"], self._on_chunk, 10),
            sub(PoseStamped, v["ee_pose_topic"], self._on_pose, 10),
            sub(JointState, v["joint_states_topic"], self._on_joints, 10),
            sub(Bool, v["estop_topic"], self._on_estop, 10),
            self.create_service(Trigger, "~/reset_estop", self._on_reset_estop),
        ]
        self._diag_pub = pub(DiagnosticArray, "/diagnostics", 10)
        self._gripper_pub = pub(Float64, v["gripper_topic"], 10)
        kind, topic = {"twist": (TwistStamped, "twist_topic"),
                       "pose": (PoseStamped, "pose_topic"),
                       "joint_trajectory": (JointTrajectory, "joint_trajectory_topic")}[
            v["output"]]
        self._command_pub = pub(kind, v[topic], 10)
        self._entities += [self._diag_pub, self._gripper_pub, self._command_pub]
        self._timer = self.create_timer(self._dt, self._on_tick)
        self.get_logger().info(f"configured: chunks on {v['action_chunk_topic']} -> "
                               f"{v['output']} on {v[topic]}, rule {v['rule']}, "
                               f"{v['control_rate_hz']:g} Hz")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._start_commanding(self._now())
        return super().on_activate(state)

    def _start_commanding(self, now: float) -> None:
        self._combiner.reset()
        self._last_chunk_at = None  # the watchdog starts with the first chunk of this run
        self._from_rest(now)
        self._hold_reason = None
        self._active = True
        self.get_logger().info(f"active: commanding ({self._values['output']}"
                               f"{', dry run' if self._values['dry_run'] else ''})")
        self._publish_diagnostics(now)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        if self._active:
            self._hold("deactivated", self._now(), count=False)
        self._active = False
        self.get_logger().info("inactive: holding, chunks ignored")
        self._publish_diagnostics(self._now())
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._destroy_entities()
        return super().on_cleanup(state)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.stop()
        self._destroy_entities()
        return super().on_shutdown(state)

    def _destroy_entities(self) -> None:
        if self._timer is not None:
            self.destroy_timer(self._timer)
            self._timer = None
        for entity in self._entities:
            destroy = {Subscription: self.destroy_subscription, Service: self.destroy_service,
                       Publisher: self.destroy_publisher}[_kind(entity)]
            destroy(entity)
        self._entities = []
        self._combiner.reset()
        self._pose, self._joints = None, None
        self._state_problem = ""
        self._last_chunk_at = None
        self._estop_heard = False  # a new subscription must hear it again

    def stop(self) -> None:
        """Process exit: one last hold (a velocity interface must not keep the last
        command), then no more ticks."""
        if self._active:
            self._hold("shutdown", self._now(), count=False)
            self._active = False
            self._await_delivery()
        if self._timer is not None:
            self._timer.cancel()

    def _await_delivery(self) -> None:
        """Wait until the robot's side acknowledged what was published (reliable QoS): the
        process exits next, and a last hold lost with the publisher left the controller
        on the previous twist (seen under load)."""
        for pub in (self._command_pub, self._gripper_pub):
            if not pub.wait_for_all_acked(
                    Duration(seconds=SHUTDOWN_ACK_TIMEOUT_S)):
                self.get_logger().warning(
                    f"the last hold on {pub.topic_name} was not acknowledged by every "
                    f"subscriber within {SHUTDOWN_ACK_TIMEOUT_S:g} s")

    # -------------------------------------------------------------------- inputs
    def _on_chunk(self, msg: JointTrajectory) -> None:
        now = self._now()
        self.counters["chunks_received"] += 1
        self._seq += 1
        try:
            chunk = parse_chunk(msg.joint_names, [p.positions for p in msg.points],
                                [stamp_seconds(p.time_from_start) for p in msg.points],
                                self._layout.action_names, stamp_seconds(msg.header.stamp),
                                now, self._seq)
            age = now - chunk.stamp
            if abs(age) > self._values["max_chunk_age_s"]:
                raise ValueError(f"stamp is {age:+.3f} s from the node clock (limit "
                                 f"{self._values['max_chunk_age_s']:g} s)")
        except ValueError as exc:
            self.counters["chunks_refused"] += 1
            self._last_refusal = str(exc)
            self.get_logger().warning(f"refused chunk: {exc}", throttle_duration_sec=2.0)
            return
        if not self._active:
            self.counters["chunks_ignored_inactive"] += 1
            return
        if chunk.ends[-1] <= now:
            self.counters["chunks_late"] += 1
            self.counters["points_skipped_late"] += len(chunk.actions)
            return
        self._combiner.add(chunk)
        self._last_chunk_at = now

    def _on_pose(self, msg: PoseStamped) -> None:
        if not self._cartesian:
            return
        position, quaternion, stamp = pose_from_msg(msg)
        if msg.header.frame_id != self._values["base_frame"]:
            self._state_problem = (f"ee pose in frame '{msg.header.frame_id}', expected "
                                   f"'{self._values['base_frame']}'")
        elif not (np.all(np.isfinite(position)) and np.all(np.isfinite(quaternion))
                  and np.linalg.norm(quaternion) > 0.5):
            self._state_problem = "ee pose not finite / not a rotation"
        else:
            self._pose = (np.asarray(position, float), np.asarray(quaternion, float), stamp)
            self._state_problem = ""
            return
        self._pose = None
        self.counters["bad_state"] += 1

    def _on_joints(self, msg: JointState) -> None:
        if self._cartesian:
            return
        names = list(msg.name)
        try:
            q = np.array([msg.position[names.index(j)] for j in self._values["joint_names"]])
        except (ValueError, IndexError):
            return  # another publisher's subset of joints
        if np.all(np.isfinite(q)):
            self._joints = (q, stamp_seconds(msg.header.stamp))
            self._state_problem = ""
        else:  # the previous good state must not stay fresh: hold until a finite one
            self._joints = None
            self._state_problem = "joint state not finite"
            self.counters["bad_state"] += 1

    def _on_estop(self, msg: Bool) -> None:
        self._estop_input = bool(msg.data)
        if not msg.data and not self._estop_heard:
            self._estop_heard = True
            if self._values["require_estop_signal"]:
                self._restart_ramp(self._now())  # the hold ends: ramp in again
                self.get_logger().info("e-stop signal received (false): ramping in")
        if msg.data and not self._estop_latched:
            self._estop_latched = True
            self.counters["estops"] += 1
            self.get_logger().error("E-STOP: holding until ~/reset_estop")
            if self._active:
                self._hold("estop", self._now())
                self._publish_diagnostics(self._now())

    def _on_reset_estop(self, request: Trigger.Request, response: Trigger.Response
                        ) -> Trigger.Response:
        if self._estop_input:
            response.success, response.message = False, "e-stop input is still true"
        elif not self._estop_latched:
            response.success, response.message = True, "no e-stop latched"
        else:
            self._estop_latched = False
            self._from_rest(self._now())
            self._combiner.reset()  # chunks from before the stop do not resume
            response.success, response.message = True, "e-stop reset: ramping in"
            self.get_logger().warning(response.message)
        return response

    # -------------------------------------------------------------------- the tick
    def _on_tick(self) -> None:
        now = self._now()
        if self._active:
            self._tick(now)
        if now - self._last_diag >= _DIAG_PERIOD_S or now < self._last_diag:
            self._publish_diagnostics(now)

    def _from_rest(self, now: float) -> None:
        """The next motion starts from rest, from the measured pose, and ramps in from
        ``now`` (activation, e-stop reset, dry_run switched off)."""
        self._envelope.stop()
        self._integrator.reset()
        self._restart_ramp(now)

    def _restart_ramp(self, now: float) -> None:
        """The speed limits ramp in from ``now``; under use_sim_time before the first
        /clock message (now 0) from the first tick that has a clock."""
        self._activated_at = now if now > 0.0 else None

    def _since_activation(self, now: float) -> float:
        return 0.0 if self._activated_at is None else now - self._activated_at

    def _tick(self, now: float) -> None:
        self.counters["ticks"] += 1
        if self._activated_at is None and now > 0.0:
            self._activated_at = now
        reason = self._hold_check(now)
        if reason is None:
            sample = self._combiner.sample(now)
            self.counters["points_skipped_late"] += sample.skipped
            if sample.action is None:
                reason, self._hold_detail = "no_chunk", "no chunk covers this tick"
            else:
                self._hold_reason = None
                self._move(sample.action, now)
                return
        self._hold(reason, now)

    def _hold_check(self, now: float) -> Optional[str]:
        """The reason to hold this tick (before looking at chunks), or None."""
        if self._estop_latched:
            self._hold_detail = "e-stop latched (~/reset_estop)"
            return "estop"
        if self._values["require_estop_signal"] and not self._estop_heard:
            self._hold_detail = "no e-stop signal received yet"
            return "estop"
        age, limit = self._state_age(now), self._values["max_state_age_s"]
        if age is None or abs(age) > limit:  # a stamp from the future is no fresher
            what = "ee pose" if self._cartesian else "joint state"
            if age is None:
                self._hold_detail = self._state_problem or f"no {what} received"
            elif age > 0.0:
                self._hold_detail = f"{what} is {age:.3f} s old"
            else:
                self._hold_detail = f"{what} is stamped in the future ({-age:.3f} s ahead)"
            return "stale_state"
        last = self._last_chunk_at
        if last is not None and now - last > self._values["chunk_timeout_s"]:
            # until a new chunk arrives (the policy may be dead), whatever held in between
            self._hold_detail = f"no chunk for {now - last:.3f} s"
            self._combiner.reset()  # what is left of it does not resume later
            return "watchdog"
        return None

    def _state_age(self, now: float) -> Optional[float]:
        if self._cartesian:
            return None if self._pose is None else now - self._pose[2]
        return None if self._joints is None else now - self._joints[1]

    def _hold(self, reason: str, now: float, count: bool = True) -> None:
        """Command a hold: zero twist, the measured pose, or the measured joints."""
        if reason != self._hold_reason:
            if count:
                self.counters[f"hold_{reason}"] += 1
            if reason in ("watchdog", "stale_state", "estop"):
                self.get_logger().warning(f"holding ({reason}): {self._hold_detail}",
                                          throttle_duration_sec=1.0)
            self._hold_reason = reason
        self.counters["hold_ticks"] += 1
        self._combiner.forget_last()  # no crossfade from an action from before the hold
        command = self._hold_command(now)
        if command is not None:
            self._send(*command)

    def _hold_command(self, now: float) -> Optional[Tuple[Any, Optional[float]]]:
        """(message, gripper) of a hold, None when there is nothing measured to hold at;
        the next motion starts from rest and from the measured pose."""
        self._envelope.stop()
        v = self._values
        if v["output"] == "twist":
            return self._twist(np.zeros(3), np.zeros(3), now), self._gripper
        if v["output"] == "pose":
            if self._pose is None:
                self._integrator.reset()  # nothing measured: no target to hold at
                return None
            position, orientation = self._integrator.hold(self._pose[0], self._pose[1])
            return self._pose_msg(position, orientation, now), self._gripper
        return None if self._joints is None else (self._trajectory(self._joints[0], now), None)

    def _move(self, action: np.ndarray, now: float) -> None:
        if not self._cartesian:
            self._move_joints(action, now)
            return
        v = self._values
        clipped = np.clip(action, -1.0, 1.0)
        if np.any(clipped != action):
            self.counters["action_out_of_range"] += 1
        position, orientation, _ = self._pose
        limited = self._envelope.limit(clipped[:3] * v["linear_scale"],
                                       clipped[3:6] * v["angular_scale"], position, self._dt,
                                       self._since_activation(now))
        notes = list(limited.interventions)
        if v["output"] == "twist":
            msg = self._twist(limited.linear, limited.angular, now)
        else:
            target, quat, more = self._integrator.step(limited.linear, limited.angular,
                                                       self._dt, position, orientation,
                                                       self._envelope.limits)
            notes += more
            msg = self._pose_msg(target, quat, now)
        for note in notes:
            self.counters[note] += 1
        self._gripper = float(clipped[6])
        self._last_command = {"linear_speed": float(np.linalg.norm(limited.linear)),
                              "angular_speed": float(np.linalg.norm(limited.angular)),
                              "gripper": self._gripper}
        self._send(msg, self._gripper)

    def _move_joints(self, action: np.ndarray, now: float) -> None:
        q = self._joints[0]
        ramp = ramp_factor(self._envelope.limits.ramp_in_s, self._since_activation(now))
        step = self._values["max_joint_speed"] * ramp * self._dt
        target = np.clip(action, q - step, q + step)
        if np.any(target != action):  # as in the envelope: ramp_in while it binds
            self.counters["ramp_in" if ramp < 1.0 else "joint_speed"] += 1
        self._last_command = {"max_joint_step": float(np.abs(target - q).max())}
        self._send(self._trajectory(target, now), None)

    # -------------------------------------------------------------------- outputs
    def _send(self, msg: Any, gripper: Optional[float]) -> None:
        if self._values["dry_run"]:
            self.counters["dry_run_commands"] += 1
            return
        self._publish(msg, gripper)

    def _publish(self, msg: Any, gripper: Optional[float]) -> None:
        self._command_pub.publish(msg)
        if gripper is not None:
            self._gripper_pub.publish(Float64(data=gripper))
        self.counters["commands"] += 1

    def _header(self, msg: Any, now: float) -> Any:
        msg.header.stamp = Time(nanoseconds=int(round(now * 1e9))).to_msg()
        msg.header.frame_id = self._values["base_frame"]
        return msg

    def _twist(self, linear: np.ndarray, angular: np.ndarray, now: float) -> TwistStamped:
        msg = self._header(TwistStamped(), now)
        t = msg.twist
        t.linear.x, t.linear.y, t.linear.z = (float(x) for x in linear)
        t.angular.x, t.angular.y, t.angular.z = (float(x) for x in angular)
        return msg

    def _pose_msg(self, position: np.ndarray, quaternion: np.ndarray, now: float
                  ) -> PoseStamped:
        msg = self._header(PoseStamped(), now)
        p, o = msg.pose.position, msg.pose.orientation
        p.x, p.y, p.z = (float(x) for x in position)
        o.x, o.y, o.z, o.w = (float(x) for x in quaternion)
        return msg

    def _trajectory(self, positions: np.ndarray, now: float) -> JointTrajectory:
        msg = self._header(JointTrajectory(joint_names=self._joint_names), now)
        msg.points.append(JointTrajectoryPoint(positions=[float(v) for v in positions],
                                               time_from_start=self._point_time))
        return msg

    # -------------------------------------------------------------------- diagnostics
    def diagnostic_status(self) -> DiagnosticStatus:
        v = self._values
        level, message = DiagnosticStatus.OK, "inactive: commanding nothing"
        if self._active:
            if self._hold_reason in ("estop",):
                level = DiagnosticStatus.ERROR
            elif self._hold_reason in ("watchdog", "stale_state"):
                level = DiagnosticStatus.WARN
            message = (f"holding ({self._hold_reason}): {self._hold_detail}"
                       if self._hold_reason else f"executing chunks ({v['rule']})")
        elif self._estop_latched:
            level, message = DiagnosticStatus.ERROR, "inactive, e-stop latched"
        if v["dry_run"]:
            message = "DRY RUN: " + message
        values: Dict[str, Any] = {
            "active": self._active, "output": v["output"], "rule": v["rule"],
            "dry_run": v["dry_run"], "estop_latched": self._estop_latched,
            "estop_signal": self._estop_heard,
            "holding": self._hold_reason or "", "last_refusal": self._last_refusal}
        values.update(self._last_command)
        names = ["ticks", "commands", "dry_run_commands", "chunks_received", "chunks_refused",
                 "chunks_late", "chunks_ignored_inactive", "points_skipped_late", "hold_ticks",
                 "estops", "bad_state", "action_out_of_range", "joint_speed"]
        names += [f"hold_{r}" for r in HOLD_REASONS]
        names += ["ramp_in", "linear_speed", "angular_speed", "linear_accel", "angular_accel",
                  "workspace", "pose_lead"]
        values.update({f"count_{n}": self.counters[n] for n in names})
        return DiagnosticStatus(
            level=level, name=DIAG_NAME, message=message, hardware_id=v["output"],
            values=[KeyValue(key=k, value=f"{x:.4f}" if isinstance(x, float) else str(x))
                    for k, x in values.items()])

    def _publish_diagnostics(self, now: float) -> None:
        if not self._entities:
            return
        msg = DiagnosticArray(status=[self.diagnostic_status()])
        msg.header.stamp = self.get_clock().now().to_msg()
        self._diag_pub.publish(msg)
        self._last_diag = now

    # -------------------------------------------------------------------- parameters
    def _coerce_parameters(self, changed: List[Parameter]) -> List[Parameter]:
        """Before validation: an integer for a double (list) becomes that float (list)."""
        return coerce_parameters(params.BY_NAME, changed)

    def _validate_parameters(self, changed: List[Parameter]) -> SetParametersResult:
        values = {p.name: ros_value(p.value) for p in changed}
        problem = params.check_values(values, self._values)
        return SetParametersResult(successful=problem is None, reason=problem or "")

    def _apply_parameters(self, changed: List[Parameter]) -> None:
        names = {p.name for p in changed}
        was_dry_run = self._values["dry_run"]
        self._values.update({p.name: ros_value(p.value) for p in changed})
        v = self._values
        if names & set(params.LIMIT_FIELDS):
            self._envelope.limits = params.limits_from(v)
        if names & set(params.COMBINE):
            self._combiner.set_rule(v["rule"], v["ensemble_k"], v["crossfade_points"])
        if v["dry_run"] and not was_dry_run and self._active:
            # the controller would keep the last (moving) command: one hold, sent directly
            command = self._hold_command(self._now())
            if command is not None:
                self._publish(*command)
        if was_dry_run and not v["dry_run"] and self._active:
            # the arm held while the envelope and the pose target followed commands that
            # were never sent: start again from rest and from the measured pose, ramping in
            self._from_rest(self._now())
            self._combiner.forget_last()


# ------------------------------------------------------------------------------ main
def main(args: Optional[List[str]] = None) -> None:
    """Run until SIGINT / SIGTERM (exit 0) and send one last hold; a parameter problem, or a
    refused configure / activate under autostart, exits with 1."""
    lifecycle.run_managed(args, NODE_NAME, ExecutorNode, ExecutorNode.stop)


if __name__ == "__main__":
    main()
