"""ROS 2 lifecycle node ``specprune_executor``: action chunks -> smooth, limited robot commands.

Between the policy node and the robot. Run::

    python -m specprune_ros.node.executor_node --ros-args --params-file config/executor.yaml \
        -p autostart:=true

Every ``1 / control_rate_hz`` (of simulated time with use_sim_time, else of the steady clock:
a system clock stepped back must not stop the ticks) it takes
the point of each chunk that is due now (chunk_timing: points whose time has passed are
skipped, never replayed late), combines overlapping chunks by ``rule``, scales the
normalised action to SI units, passes it through the safety envelope (cartesian_motion,
safety_envelope; joint_limits for joint layouts) and commands the robot on one interface
(``output``: TwistStamped, PoseStamped target or JointTrajectory) plus the gripper
(std_msgs/Float64, only with a moving command). It holds when no chunk covers the tick,
when no chunk arrived for ``chunk_timeout_s`` (watchdog), when the measured state is stale
(or stamped in the future), after the clock stepped back (until a new chunk), from an
e-stop message until ``~/reset_estop``, until the e-stop topic has said false once
(``require_estop_signal``) and, with ``estop_heartbeat_timeout_s``, while no false arrived
within that time. A hold decelerates at the stop decelerations to a latched target (zero
twist / a pose or joint target that no longer follows the measured state) and commands
no gripper. Malformed, non-finite, too old or future chunks are refused. Every
intervention is counted on /diagnostics. ``dry_run`` computes and reports, commands
nothing (switched on while active, it first sends one final hold).

Lifecycle: configure subscribes and creates the outputs (a Cartesian layout with output
joint_trajectory is refused here, with the reason); activate starts commanding (speed
limits ramp in over ``ramp_in_s``); deactivate sends one final hold and stops commanding;
cleanup drops everything. ``autostart: true`` configures and activates at start.
"""
from __future__ import annotations

import math
import warnings
from typing import Any, Dict, List, Optional

from rclpy.clock import Clock, ClockType
from rclpy.duration import Duration
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.publisher import Publisher
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rclpy.service import Service
from rclpy.subscription import Subscription

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # lark, pulled in by the msg packages
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
    from geometry_msgs.msg import PoseStamped, TwistStamped
    from rcl_interfaces.msg import SetParametersResult
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Bool, Float64, String
    from std_srvs.srv import Trigger
    from trajectory_msgs.msg import JointTrajectory

from specprune_ros.node import executor_parameters as params
from specprune_ros.node import lifecycle
from specprune_ros.node.executor_core import Command, ExecutorCore
from specprune_ros.node.executor_messages import (pose_msg, status_msg, trajectory_msg,
                                                  twist_msg)
from specprune_ros.node.lifecycle import StartupError
from specprune_ros.node.param_table import coerce_parameters, declare_table, ros_value
from specprune_ros.node.tf_motion import pose_from_msg, stamp_seconds
from specprune_ros.node.time_jumps import watch_time_jumps

NODE_NAME = params.NODE_NAME
DIAG_NAME = f"{NODE_NAME}: safety"
_DIAG_PERIOD_S = 0.5
SHUTDOWN_ACK_TIMEOUT_S = 1.0  # at exit, how long the last hold may wait for acknowledgement
#: robot_state_publisher's robot_description: published once, kept for late subscribers
_LATCHED = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL,
                      reliability=ReliabilityPolicy.RELIABLE)
_LEVELS = (DiagnosticStatus.OK, DiagnosticStatus.WARN, DiagnosticStatus.ERROR)


def _kind(entity: Any) -> type:
    return next(k for k in (Subscription, Service, Publisher) if isinstance(entity, k))


def declare_parameters(node: LifecycleNode) -> Dict[str, Any]:
    """Declare the table (an integer override of a double is taken as a float); StartupError
    on an override of the wrong type, out of range or against the table's rules (all three
    checked by declare_table), or on inconsistent limits (an inverted workspace box, joint
    limits that do not fit joint_names)."""
    values = declare_table(node, params.PARAMS)
    try:
        params.limits_from(values)
        params.joint_limits_from(values)
    except (ValueError, TypeError) as exc:
        raise StartupError(str(exc)) from None
    return values


class ExecutorNode(LifecycleNode):
    """The chunk executor (see the module docstring): ROS entities around an
    ``ExecutorCore``, which makes every decision."""

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
        self.core = ExecutorCore(values, self.get_logger())
        self._entities: List[Any] = []
        self._timer: Any = None
        self._jump_handle: Any = None
        self._last_refusal = ""  # why configure was refused
        self._last_diag = -math.inf

    @property
    def autostart(self) -> bool:
        return bool(self.core.values["autostart"])

    def bring_up(self) -> None:
        """configure, then activate (``autostart``); StartupError with the reason."""
        lifecycle.bring_up(self, lambda: self._last_refusal)

    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _tick_clock(self) -> Optional[Clock]:
        """The clock the tick timer runs on: the node clock on simulated time (ticks follow
        /clock), else the steady clock. A timer on the system clock would stop ticking when
        that clock is stepped back (NTP / chrony) until it has caught up again: no holds, no
        watchdog; on the steady clock the ticks go on and see the step (tick_clock).
        use_sim_time is read here, at configure."""
        if self.get_parameter("use_sim_time").value:
            return None
        return Clock(clock_type=ClockType.STEADY_TIME)

    # -------------------------------------------------------------------- lifecycle
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        v = self.core.values
        problem = params.structure_problem(v)
        if problem:
            self.get_logger().error(f"configure refused: {problem}")
            self._last_refusal = problem
            return TransitionCallbackReturn.FAILURE
        sub, pub = self.create_subscription, self.create_publisher
        self._entities = [
            sub(JointTrajectory, v["action_chunk_topic"], self._on_chunk, 10),
            sub(PoseStamped, v["ee_pose_topic"], self._on_pose, 10),
            sub(JointState, v["joint_states_topic"], self._on_joints, 10),
            sub(Bool, v["estop_topic"], self._on_estop, 10),
            self.create_service(Trigger, "~/reset_estop", self._on_reset_estop),
        ]
        if not self.core.cartesian:
            self._entities.append(sub(String, v["robot_description_topic"],
                                      self._on_robot_description, _LATCHED))
        self._diag_pub = pub(DiagnosticArray, "/diagnostics", 10)
        self._gripper_pub = pub(Float64, v["gripper_topic"], 10)
        kind, topic = {"twist": (TwistStamped, "twist_topic"),
                       "pose": (PoseStamped, "pose_topic"),
                       "joint_trajectory": (JointTrajectory, "joint_trajectory_topic")}[
            v["output"]]
        self._command_pub = pub(kind, v[topic], 10)
        self._entities += [self._diag_pub, self._gripper_pub, self._command_pub]
        self._timer = self.create_timer(self.core.dt, self._on_tick, clock=self._tick_clock())
        self._jump_handle = watch_time_jumps(
            self, lambda reason: self.core.time_jumped(self._now(), reason))
        self.get_logger().info(f"configured: chunks on {v['action_chunk_topic']} -> "
                               f"{v['output']} on {v[topic]}, rule {v['rule']}, "
                               f"{v['control_rate_hz']:g} Hz")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._start_commanding(self._now())
        return super().on_activate(state)

    def _start_commanding(self, now: float) -> None:
        self.core.start(now)
        self.get_logger().info(f"active: commanding ({self.core.values['output']}"
                               f"{', dry run' if self.core.values['dry_run'] else ''})")
        self._publish_diagnostics(now)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._publish(self.core.final_hold("deactivated", self._now()))
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

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        """A transition raised (rclpy goes to unconfigured after this): stop commanding
        with one last hold where that still works, then drop the timer, subscriptions and
        publishers, as cleanup does. Without this the timer kept commanding while the
        node reported 'unconfigured'."""
        try:
            self.stop()
        except Exception as exc:  # noqa: BLE001 - the entities must go regardless
            self.get_logger().error(f"final hold after a failed transition: {exc!r}")
        finally:
            self.core.active = False
            self._destroy_entities()
        self.get_logger().error(f"transition from {state.label} failed: commanding stopped, "
                                "entities dropped; configure again")
        return TransitionCallbackReturn.SUCCESS

    def _destroy_entities(self) -> None:
        if self._timer is not None:
            self.destroy_timer(self._timer)
            self._timer = None
        if self._jump_handle is not None:
            self._jump_handle.unregister()
            self._jump_handle = None
        for entity in self._entities:
            destroy = {Subscription: self.destroy_subscription, Service: self.destroy_service,
                       Publisher: self.destroy_publisher}[_kind(entity)]
            destroy(entity)
        self._entities = []
        self.core.forget_inputs()

    def stop(self) -> None:
        """Process exit: one last hold (a velocity interface must not keep the last
        command), then no more ticks."""
        if self.core.active:
            self._publish(self.core.final_hold("shutdown", self._now()))
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
        self.core.take_chunk(msg.joint_names, [p.positions for p in msg.points],
                             [stamp_seconds(p.time_from_start) for p in msg.points],
                             stamp_seconds(msg.header.stamp), self._now())

    def _on_pose(self, msg: PoseStamped) -> None:
        position, quaternion, stamp = pose_from_msg(msg)
        self.core.take_pose(position, quaternion, stamp, msg.header.frame_id)

    def _on_joints(self, msg: JointState) -> None:
        self.core.take_joints(msg.name, msg.position, stamp_seconds(msg.header.stamp))

    def _on_robot_description(self, msg: String) -> None:
        self.core.take_robot_description(msg.data)

    def _on_estop(self, msg: Bool) -> None:
        now = self._now()
        if self.core.take_estop(bool(msg.data), now):
            self._publish_diagnostics(now)  # ERROR at once; the stop starts at the next tick

    def _on_reset_estop(self, request: Trigger.Request, response: Trigger.Response
                        ) -> Trigger.Response:
        response.success, response.message = self.core.reset_estop(self._now())
        return response

    # -------------------------------------------------------------------- the tick
    def _on_tick(self) -> None:
        now = self._now()
        if self.core.active:
            self._publish(self.core.tick(now))
        if now - self._last_diag >= _DIAG_PERIOD_S or now < self._last_diag:
            self._publish_diagnostics(now)

    def _publish(self, command: Optional[Command]) -> None:
        """Publish a core command (None: nothing) and its gripper value, if any."""
        if command is None:
            return
        frame, now = self.core.values["base_frame"], self._now()
        if command.output == "twist":
            msg = twist_msg(command.first, command.second, now, frame)
        elif command.output == "pose":
            msg = pose_msg(command.first, command.second, now, frame)
        else:  # stamped 0: joint_trajectory_controller starts it on receipt
            msg = trajectory_msg(self.core.joint_names, command.first, command.seconds, frame)
        self._command_pub.publish(msg)
        if command.gripper is not None:
            self._gripper_pub.publish(Float64(data=command.gripper))

    # -------------------------------------------------------------------- diagnostics
    def diagnostic_status(self) -> DiagnosticStatus:
        level, message, values = self.core.status()
        return status_msg(_LEVELS[level], DIAG_NAME, message, self.core.values["output"],
                          values)

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
        problem = params.check_values(values, self.core.values, self.core.joint_motion.urdf)
        return SetParametersResult(successful=problem is None, reason=problem or "")

    def _apply_parameters(self, changed: List[Parameter]) -> None:
        self._publish(self.core.set_values({p.name: ros_value(p.value) for p in changed},
                                           self._now()))


# ------------------------------------------------------------------------------ main
def main(args: Optional[List[str]] = None) -> None:
    """Run until SIGINT / SIGTERM (exit 0) and send one last hold; a parameter problem, or a
    refused configure / activate under autostart, exits with 1."""
    lifecycle.run_managed(args, NODE_NAME, ExecutorNode, ExecutorNode.stop)


if __name__ == "__main__":
    main()
