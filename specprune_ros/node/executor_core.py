"""The chunk executor's decisions, without ROS: what to command each tick, and why to hold.

``ExecutorCore`` takes what arrives (chunks, measured state, e-stop messages, the URDF,
clock jumps, parameter changes) as plain values with the node-clock time, and answers each
tick with a ``Command`` for the node to publish, or None. Per tick, in this order:

1. the tick period (tick_clock), and a clock that went back: a reset (``time_jumped``);
2. the holds, by priority: ``estop`` (estop.EstopMonitor: latched, no signal yet, no
   heartbeat), ``stale_state`` (measured_state), ``clock_jump`` (until a new chunk),
   ``watchdog`` (no chunk for ``chunk_timeout_s``), then ``no_chunk`` (no chunk covers
   the tick);
3. otherwise the combined action (chunk_timing), clipped to [-1, 1] (Cartesian layouts;
   counted per dimension with the largest excess), scaled, and limited
   (cartesian_motion / joint_limits).

A hold decelerates at the stop decelerations to a latched target and never commands the
gripper; ``final_hold`` is the last command when nothing follows (deactivate, exit,
dry_run switched on). With ``dry_run`` nothing is returned for publishing (counted as
``dry_run_commands``).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np

from specprune.model.layouts import LAYOUTS
from specprune_ros.node import executor_parameters as params
from specprune_ros.node.cartesian_motion import CartesianMotion
from specprune_ros.node.chunk_timing import ChunkCombiner, parse_chunk
from specprune_ros.node.estop import EstopMonitor
from specprune_ros.node.joint_limits import JointMotion, parse_urdf_limits
from specprune_ros.node.measured_state import MeasuredState
from specprune_ros.node.safety_envelope import ramp_factor
from specprune_ros.node.tick_clock import TickClock

HOLD_REASONS = ("estop", "stale_state", "clock_jump", "watchdog", "no_chunk")
COUNTERS = ("ticks", "commands", "dry_run_commands", "chunks_received", "chunks_refused",
            "chunks_late", "chunks_ignored_inactive", "points_skipped_late", "hold_ticks",
            "estops", "bad_state", "clock_jumps", "action_out_of_range", "ramp_in",
            "linear_speed", "angular_speed", "linear_accel", "angular_accel", "stop_decel",
            "workspace", "orientation", "pose_lead", "joint_speed", "joint_accel",
            "joint_position", "joint_lead", "bad_robot_description", "chunks_before_estop",
            "joint_states_partial")
OK, WARN, ERROR = 0, 1, 2  # diagnostic levels


@dataclass
class Command:
    """One command to publish: ``first`` / ``second`` are (linear, angular) for
    ``twist``, (position, quaternion) for ``pose``, (positions, None) for
    ``joint_trajectory`` (one point ``seconds`` ahead); ``gripper`` only with motion."""

    output: str
    first: np.ndarray
    second: Optional[np.ndarray] = None
    seconds: float = 0.0
    gripper: Optional[float] = None


class ExecutorCore:
    """The executor's state and decisions (see the module docstring). ``values``: the
    parameter table's values; ``logger``: info / warning / error like an rclpy logger."""

    def __init__(self, values: Dict[str, Any], logger: Any) -> None:
        self.values = v = values
        self.log = logger
        self.layout = LAYOUTS[v["action_layout"]]
        self.cartesian = v["action_layout"] not in params.JOINT_LAYOUTS
        self.dt = 1.0 / float(v["control_rate_hz"])
        self.joint_names = tuple(v["joint_names"])  # read-only
        self.combiner = ChunkCombiner(v["rule"], v["ensemble_k"], v["crossfade_points"])
        self.joint_motion = JointMotion(self.joint_names, params.joint_limits_from(v))
        self.ticks = TickClock(self.dt)
        # a twist stays in force until the next tick, which may come as late as the tick
        # clock's longest period: the workspace box plans with that (a target does not move)
        self.motion = CartesianMotion(params.limits_from(v), v["output"],
                                      horizon=self.ticks.longest)
        self.period = self.dt  # the actual tick period (tick_clock)
        self.estop = EstopMonitor()
        self.measured = MeasuredState(self.cartesian)
        self.counters: Counter = Counter()
        self.excess: Dict[str, float] = {}  # largest |action| - 1 per dimension
        self.active = False
        self.activated_at: Optional[float] = None  # start of the ramp; None: no clock yet
        self.last_chunk_at: Optional[float] = None  # node time of the last accepted chunk
        self.jumped = ""  # the clock stepped back (how): hold until a new chunk arrives
        self.limits_source = "parameters"  # where the joint limits come from
        self.hold_reason: Optional[str] = None
        self.hold_detail = ""
        self.gripper_sent: Optional[float] = None
        self.last_refusal = ""
        self.estop_at = float("-inf")  # node time of the last e-stop latch
        self.last_command: Dict[str, Any] = {}
        self._seq = 0

    # -------------------------------------------------------------------- activation
    def start(self, now: float) -> None:
        """Start commanding: no chunk yet, from rest, ramping in."""
        self.combiner.reset()
        self.last_chunk_at = None  # the watchdog starts with the first chunk of this run
        self.jumped = ""
        self.from_rest(now)
        self.hold_reason = None
        self.active = True

    def forget_inputs(self) -> None:
        """The subscriptions are gone (cleanup): chunks, state and the e-stop signal."""
        self.combiner.reset()
        self.measured.clear()
        self.last_chunk_at = None
        self.estop.forget()  # a new subscription must hear it again

    def from_rest(self, now: float) -> None:
        """The next motion starts from rest, from the measured state, and ramps in from
        ``now`` (activation, e-stop reset, dry_run switched off)."""
        self.motion.reset()
        self.joint_motion.reset()
        self.restart_ramp(now)

    def restart_ramp(self, now: float) -> None:
        """The speed limits ramp in from ``now``; under use_sim_time before the first
        /clock message (now 0) from the first tick that has a clock."""
        self.activated_at = now if now > 0.0 else None

    def since_activation(self, now: float) -> float:
        return 0.0 if self.activated_at is None else now - self.activated_at

    # -------------------------------------------------------------------- inputs
    def take_chunk(self, names: Sequence[str], rows: Sequence[Sequence[float]],
                   times: Sequence[float], stamp: float, now: float) -> None:
        """A chunk message's fields: refused (counted, with the reason), ignored while
        inactive, dropped when all its points have passed, else kept."""
        v = self.values
        self.counters["chunks_received"] += 1
        self._seq += 1
        try:
            chunk = parse_chunk(names, rows, times, self.layout.action_names, stamp, now,
                                self._seq)
            age = now - chunk.stamp
            if age > v["max_chunk_age_s"]:
                raise ValueError(f"stamp is {age:.3f} s old (max_chunk_age_s "
                                 f"{v['max_chunk_age_s']:g})")
            if -age > v["max_future_stamp_s"]:
                raise ValueError(f"stamp is {-age:.3f} s in the future of the node clock "
                                 f"(max_future_stamp_s {v['max_future_stamp_s']:g})")
        except ValueError as exc:
            self.counters["chunks_refused"] += 1
            self.last_refusal = str(exc)
            self.log.warning(f"refused chunk: {exc}", throttle_duration_sec=2.0)
            return
        if not self.active:
            self.counters["chunks_ignored_inactive"] += 1
            return
        if chunk.stamp <= self.estop_at:  # its observation predates the stop: after
            self.counters["chunks_before_estop"] += 1  # ~/reset_estop it must not resume
            return
        if chunk.ends[-1] <= now:
            self.counters["chunks_late"] += 1
            self.counters["points_skipped_late"] += len(chunk.actions)
            return
        self.combiner.add(chunk)
        self.last_chunk_at = now
        self.jumped = ""

    def take_pose(self, position: Sequence[float], quaternion: Sequence[float], stamp: float,
                  frame: str) -> None:
        if self.cartesian and not self.measured.take_pose(position, quaternion, stamp, frame,
                                                          self.values["base_frame"]):
            self.counters["bad_state"] += 1

    def take_joints(self, names: Sequence[str], positions: Sequence[float],
                    stamp: float) -> None:
        """A JointState's fields (any order, a superset of the executor's joints)."""
        if self.cartesian:
            return
        names = list(names)
        try:
            q = [positions[names.index(j)] for j in self.joint_names]
        except (ValueError, IndexError):  # another publisher's subset, or misnamed joints
            self.counters["joint_states_partial"] += 1
            self.measured.partial(names, len(positions), self.joint_names)
            return
        # a non-finite one drops the previous good state: hold until a finite one
        if not self.measured.take_joints(q, stamp):
            self.counters["bad_state"] += 1

    def take_robot_description(self, urdf: str) -> None:
        """The URDF's joint limits narrow the parameters' (joint_limits)."""
        try:
            limits = parse_urdf_limits(urdf)
            found = {n: limits[n] for n in self.joint_names if n in limits}
            self.joint_motion.urdf = found  # checks them: ValueError, nothing changed
        except ValueError as exc:
            kept = ("parameters + an earlier robot_description" if self.joint_motion.urdf
                    else "parameters")  # the setter changed nothing
            self.limits_source = f"{kept} (robot_description refused: {exc})"
            self.counters["bad_robot_description"] += 1
            self.log.warning(f"robot_description refused, joint limits from the {kept} "
                             f"only: {exc}")
            return
        missing = [n for n in self.joint_names if n not in found]
        self.limits_source = (f"parameters + robot_description ({len(found)} of "
                              f"{len(self.joint_names)} joints)")
        (self.log.warning if missing else self.log.info)(
            f"joint limits: {self.limits_source}"
            + (f"; not in the URDF: {missing}" if missing else ""))

    def take_estop(self, value: bool, now: float) -> bool:
        """An e-stop message; True when it latched the e-stop now. The controlled stop
        starts at the next tick (a hold sent here as well would brake twice within one
        tick period)."""
        v = self.values
        latched, resumed = self.estop.receive(value, now, v["estop_heartbeat_timeout_s"])
        if resumed and (v["require_estop_signal"] or v["estop_heartbeat_timeout_s"] > 0.0):
            self.restart_ramp(now)  # the hold ends: ramp in again
            self.log.info("e-stop signal received (false): ramping in")
        if latched:
            self.estop_at = now
            self.counters["estops"] += 1
            self.log.error("E-STOP: holding until ~/reset_estop")
        return latched

    def reset_estop(self, now: float) -> Tuple[bool, str]:
        """``~/reset_estop``: (success, message); a released latch starts from rest."""
        was_latched = self.estop.latched
        success, message = self.estop.reset()
        if was_latched and not self.estop.latched:
            self.from_rest(now)
            self.combiner.reset()  # chunks from before the stop do not resume
            self.log.warning(message)
        return success, message

    def time_jumped(self, now: float, what: str) -> None:
        """The clock went back to ``now``: chunks, the watchdog, the ramp, the commanded
        velocities and the measured state from before belong to another timeline. Drop
        them, hold until a new chunk arrives, and ramp in again. The pose and joint targets
        are dropped too (a hold latches at the next fresh state); the commanded speeds are
        kept, so a moving arm is still stopped at the stop decelerations."""
        self.ticks.reset(now)
        self.counters["clock_jumps"] += 1
        self.combiner.reset()
        self.estop_at = float("-inf")  # stamps of the new timeline are not comparable
        self.last_chunk_at = None
        self.motion.forget_target()  # a pose / joint target of the old timeline would drag
        self.joint_motion.forget_target()  # a reset arm back to it
        self.estop.clock_jumped()
        self.measured.drop_after(now)
        self.restart_ramp(now)
        self.jumped = f"{what} (to {now:.3f} s): chunks dropped, waiting for a new one"
        self.log.warning(f"time jump: {self.jumped}", throttle_duration_sec=1.0)

    # -------------------------------------------------------------------- the tick
    def tick(self, now: float) -> Optional[Command]:
        """This tick's command (None: nothing to publish)."""
        self.counters["ticks"] += 1
        self.period, jumped = self.ticks.tick(now)
        if jumped:
            self.time_jumped(now, "the clock stepped back")
        if self.activated_at is None and now > 0.0:
            self.activated_at = now
        reason = self._hold_check(now)
        if reason is None:
            sample = self.combiner.sample(now)
            self.counters["points_skipped_late"] += sample.skipped
            if sample.action is not None:
                self.hold_reason = None
                return self._send(self._move(sample.action, now))
            reason, self.hold_detail = "no_chunk", "no chunk covers this tick"
        return self.hold(reason, now)

    def _hold_check(self, now: float) -> Optional[str]:
        """The reason to hold this tick (before looking at chunks), or None."""
        v = self.values
        problem = self.estop.problem(now, v["require_estop_signal"],
                                     v["estop_heartbeat_timeout_s"])
        if problem:
            self.hold_detail = problem
            return "estop"
        stale = self.measured.check(now, v["max_state_age_s"], v["max_future_stamp_s"])
        if stale:
            self.hold_detail = stale
            return "stale_state"
        if self.jumped:
            self.hold_detail = self.jumped
            return "clock_jump"
        last = self.last_chunk_at
        if last is not None and now - last > v["chunk_timeout_s"]:
            # until a new chunk arrives (the policy may be dead), whatever held in between
            self.hold_detail = f"no chunk for {now - last:.3f} s"
            self.combiner.reset()  # what is left of it does not resume later
            return "watchdog"
        return None

    def hold(self, reason: str, now: float, count: bool = True,
             final: bool = False) -> Optional[Command]:
        """A hold tick (decelerating to a latched target; ``final``: the last command, at
        rest at once), never with a gripper command; None with nothing to hold at."""
        if reason != self.hold_reason:
            if count:
                self.counters[f"hold_{reason}"] += 1
            if reason in ("watchdog", "stale_state", "estop", "clock_jump"):
                self.log.warning(f"holding ({reason}): {self.hold_detail}",
                                 throttle_duration_sec=1.0)
            self.hold_reason = reason
        self.counters["hold_ticks"] += 1
        self.combiner.forget_last()  # no crossfade from an action from before the hold
        return self._send(self.hold_command(now, final))

    def hold_command(self, now: float, final: bool = False) -> Optional[Command]:
        """The command of a hold (see ``hold``), not counted, dry_run or not."""
        fresh, output = self.measured.fresh, self.values["output"]
        if self.cartesian:
            command = (self.motion.final_hold(fresh) if final
                       else self.motion.hold(fresh, now, self.period))
            return None if command is None else Command(output, *command)
        measured = None if fresh is None else fresh[0]
        if final:
            rest = self.joint_motion.final_hold(measured)
            return None if rest is None else Command(output, rest[0],
                                                     seconds=max(rest[1], self.dt))
        target = self.joint_motion.hold(measured, self.period)
        return None if target is None else Command(output, target, seconds=self.period)

    def _clip_action(self, action: np.ndarray) -> np.ndarray:
        """``action`` clipped to [-1, 1]; every clipped dimension counted with its largest
        excess (1.01 and 10 are told apart on /diagnostics)."""
        excess = np.abs(action) - 1.0
        over = np.nonzero(excess > 0.0)[0]
        if over.size:
            self.counters["action_out_of_range"] += 1
        for i in over:
            name = self.layout.action_names[i]
            self.counters[f"out_of_range_{name}"] += 1
            self.excess[name] = max(self.excess.get(name, 0.0), float(excess[i]))
        return np.clip(action, -1.0, 1.0)

    def _move(self, action: np.ndarray, now: float) -> Command:
        v, state = self.values, self.measured.latest
        if not self.cartesian:
            ramp = ramp_factor(v["ramp_in_s"], self.since_activation(now))
            target, notes = self.joint_motion.move(action, state[0], self.period, ramp)
            self.counters.update(notes)
            self.last_command = {"max_joint_step": float(np.abs(target - state[0]).max())}
            return Command(v["output"], target, seconds=self.period)
        clipped = self._clip_action(action)
        command, notes = self.motion.move(
            clipped[:3] * v["linear_scale"], clipped[3:6] * v["angular_scale"], state, now,
            self.period, self.since_activation(now))
        self.counters.update(notes)
        linear, angular = self.motion.speeds()
        gripper = float(clipped[6])
        self.last_command = {"linear_speed": linear, "angular_speed": angular,
                             "gripper": gripper}
        return Command(v["output"], *command, gripper=gripper)

    def _send(self, command: Optional[Command]) -> Optional[Command]:
        """``command`` to publish (counted), or None in dry run."""
        if command is None:
            return None
        if self.values["dry_run"]:
            self.counters["dry_run_commands"] += 1
            return None
        return self.sent(command)

    def sent(self, command: Command) -> Command:
        """Count ``command`` as published."""
        self.counters["commands"] += 1
        if command.gripper is not None:
            self.gripper_sent = command.gripper
        return command

    def final_hold(self, reason: str, now: float) -> Optional[Command]:
        """The last command before commanding stops (deactivate, exit): at rest at once."""
        if not self.active:
            return None
        try:
            return self.hold(reason, now, count=False, final=True)
        finally:
            self.active = False  # even if building the hold failed: no tick commands again

    # -------------------------------------------------------------------- parameters
    def set_values(self, changed: Dict[str, Any], now: float) -> Optional[Command]:
        """Apply (checked) parameter changes; a hold to publish at once when dry_run was
        switched on while active (the controller would keep the last moving command)."""
        names = set(changed)
        was_dry_run = self.values["dry_run"]
        self.values.update(changed)
        v = self.values
        if names & set(params.LIMIT_FIELDS):
            self.motion.limits = params.limits_from(v)
        if names & set(params.JOINT_LIMIT_FIELDS):
            self.joint_motion.limits = params.joint_limits_from(v)
        if names & set(params.COMBINE):
            self.combiner.set_rule(v["rule"], v["ensemble_k"], v["crossfade_points"])
        if not self.active or v["dry_run"] == was_dry_run:
            return None
        if v["dry_run"]:
            command = self.hold_command(now, final=True)
            return None if command is None else self.sent(command)
        # the arm held while the envelope and the pose target followed commands that were
        # never sent: start again from rest and from the measured state, ramping in
        self.from_rest(now)
        self.combiner.forget_last()
        return None

    # -------------------------------------------------------------------- diagnostics
    def status(self) -> Tuple[int, str, Dict[str, Any]]:
        """(level, message, values) for /diagnostics: the state and every counter."""
        v = self.values
        level, message = OK, "inactive: commanding nothing"
        if self.active:
            if self.hold_reason == "estop":
                level = ERROR
            elif self.hold_reason in ("watchdog", "stale_state", "clock_jump"):
                level = WARN
            message = (f"holding ({self.hold_reason}): {self.hold_detail}"
                       if self.hold_reason else f"executing chunks ({v['rule']})")
        elif self.estop.latched:
            level, message = ERROR, "inactive, e-stop latched"
        if not self.cartesian and "refused" in self.limits_source:
            level = max(level, WARN)
            message += f"; joint limits from {self.limits_source}"
        if v["dry_run"]:
            message = "DRY RUN: " + message
        values: Dict[str, Any] = {
            "active": self.active, "output": v["output"], "rule": v["rule"],
            "dry_run": v["dry_run"], "estop_latched": self.estop.latched,
            "estop_signal": self.estop.heard,
            "holding": self.hold_reason or "", "last_refusal": self.last_refusal,
            "gripper_sent": "" if self.gripper_sent is None else self.gripper_sent}
        if not self.cartesian:
            values["joint_limits"] = self.limits_source
        values.update(self.last_command)
        names = list(COUNTERS) + [f"hold_{r}" for r in HOLD_REASONS]
        values.update({f"count_{n}": self.counters[n] for n in names})
        for name in self.layout.action_names:
            if name in self.excess:
                values[f"out_of_range_{name}"] = self.counters[f"out_of_range_{name}"]
                values[f"max_excess_{name}"] = self.excess[name]
        return level, message, values
