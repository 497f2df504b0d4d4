"""ROS 2 bridge of the simulated Panda: publishes what a real arm driver would, executes chunks.

Node ``specprune_sim_arm``. Every tick of a timer at ``control_rate_hz`` it steps the sim
with the next row of the newest action chunk, or a hold action, and publishes the joint
states, end-effector pose (+ /tf where tf2_msgs exists) and task success; the cameras are
rendered and published only on the ticks of ``camera_rate_hz`` (10 Hz: every 2nd tick of
20, as many frames as the policy node's at most 10 steps/s can use) and only while someone
subscribes to a view, as a simulator's camera plugin renders only for subscribers: on a CPU
renderer the two views cost ~3x a tick's physics. Run::

    python -m specprune_ros.sim.sim_bridge_node --ros-args --params-file config/sim_arm.yaml
    python -m specprune_ros.sim.sim_bridge_node --ros-args \
        --params-file config/libero_arm.yaml -p task:=libero_object:0

The arm is our robosuite one (``task`` pick_color or lift) or, for a task named
``<suite>:<index>``, that LIBERO task (libero_arm.LiberoArm over a worker in .venv-libero):
the same topics and services, LIBERO's 20 Hz, the protocol's 10 no-op ticks after every
reset, frames rotated 180 degrees as openvla-oft's policy sees them, the pose in LIBERO's
world frame (its datasets' frame, in which its OSC deltas are applied).

What it executes (``command_input``):

- ``chunk``: trajectory_msgs/JointTrajectory on ``action_chunk_topic``: joint_names are the
  action dimensions (ACTION_NAMES, any order), points[i].positions is the normalised OSC
  delta action of control tick i (time_from_start = (i + 1) / control_rate_hz; the bridge
  executes one row per tick and does not read the times).
- ``twist``: geometry_msgs/TwistStamped on ``twist_topic`` (base frame, m/s, rad/s), as a
  Cartesian velocity controller takes it from specprune_executor: converted back to the
  OSC delta action v dt / 0.05 m, w dt / 0.5 rad (robosuite's OSC_POSE output_max).
- ``pose``: geometry_msgs/PoseStamped targets on ``pose_target_topic`` (base frame), as a
  Cartesian impedance controller takes them: the OSC delta that puts the controller's goal
  on the target (clipped to one step's reach).

With ``twist`` and ``pose`` the gripper comes from std_msgs/Float64 on ``gripper_topic``
(-1 open .. 1 close), and a command older than ``command_timeout_s`` is not used (the arm
holds), as a real controller's own timeout does. ``publish_clock``: the bridge publishes
rosgraph_msgs/Clock on /clock with the simulated time (advanced by one control period per
tick, starting at the wall time of start-up) and stamps everything with it, so nodes run
with use_sim_time see the simulator's time when it runs slower than real time.
"""
from __future__ import annotations

import sys
import threading
import time
import traceback
import warnings
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import rclpy
import rclpy.logging
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # lark, pulled in by the msg packages
    from builtin_interfaces.msg import Time
    from geometry_msgs.msg import PoseStamped, TransformStamped
    from rcl_interfaces.msg import SetParametersResult
    from sensor_msgs.msg import Image, JointState
    from geometry_msgs.msg import TwistStamped
    from rosgraph_msgs.msg import Clock
    from std_msgs.msg import Bool, Float64, String
    from std_srvs.srv import Trigger
    from trajectory_msgs.msg import JointTrajectory
    try:  # tf2_msgs is not on PyPI: publish /tf only where a ROS 2 install provides it
        from tf2_msgs.msg import TFMessage
    except ImportError:
        TFMessage = None

from specprune_ros.node import lifecycle
from specprune_ros.node.lifecycle import StartupError
from specprune_ros.node.param_table import ParamSpec, declare_table
from specprune_ros.node.ros_image import rgb_to_image_msg
from specprune_ros.sim.bridge_commands import ActionQueue, CommandInput, parse_action_chunk
from specprune_ros.sim.control_loop import ControlLoop
from specprune_ros.sim.libero_arm import (CONTROL_RATE_HZ as LIBERO_RATE_HZ, TASK_NAME_FORMAT,
                                          LiberoArm, LiberoArmConfig, libero_task)
from specprune_ros.sim.libero_env import LiberoWorkerError
from specprune_ros.sim.libero_protocol import (GRIPPER_CONVENTIONS, INIT_STATES_PER_TASK,
                                               gripper_to_env)
from specprune_ros.sim.sim_arm import SimArm, SimArmConfig, SimObservation

NODE_NAME = "specprune_sim_arm"
#: robosuite camera rendered for each published view.
VIEWS: Dict[str, str] = {"agentview": "agentview", "wrist": "robot0_eye_in_hand"}
COMMAND_INPUTS = ("chunk", "twist", "pose")
_RATE_LOG_EVERY = 100
RESET_WAIT_S = 60.0  # ~/reset answers failure when no tick ran in this time


# ------------------------------------------------------------------------------ parameters
def _topic(name: str, default: str, what: str) -> ParamSpec:
    """A read-only topic-name parameter."""
    return ParamSpec(name, default, f"Topic of {what}.", read_only=True)


PARAMS: Tuple[ParamSpec, ...] = (
    ParamSpec("task", "pick_color", "Simulated task (specprune_ros.sim.sim_arm.TASKS): pick_color "
              "names one of three cubes per episode; lift has one red cube; or a LIBERO task "
              f"({TASK_NAME_FORMAT}; needs .venv-libero).", read_only=True),
    ParamSpec("instruction", "", "Language instruction published on instruction_topic; "
              "empty: the episode's own (e.g. 'pick up the green cube')."),
    ParamSpec("seed", 0, "Seed of the first episode; episode k uses seed + k; -1: random.",
              read_only=True, lo=-1, hi=2**31 - 1),
    ParamSpec("reset_seed", -1, "Seed of every episode started from now on (by ~/reset or "
              "at the horizon), e.g. to replay paired seeds; -1: seed + episode index.",
              lo=-1, hi=2**31 - 1),
    ParamSpec("reset_init_state", -1, "LIBERO tasks: every episode started from now on starts "
              "from the benchmark's fixed initial state with this index (the claim set); -1: "
              "off (development seeds).", lo=-1, hi=INIT_STATES_PER_TASK - 1),
    ParamSpec("camera_size", 224, "Square size in pixels of both camera images.",
              read_only=True, lo=16, hi=2048),
    ParamSpec("control_rate_hz", 20.0, "Control ticks per second (sim and wall clock); "
              "LIBERO tasks run at LIBERO's 20.", read_only=True, lo=1.0, hi=500.0),
    ParamSpec("camera_rate_hz", 10.0, "Camera frames per simulated second, rendered and "
              "published on every k-th tick (k = control rate / camera rate, rounded; ticks "
              "0, k, 2k.. of an episode) while a view has a subscriber; 0: every tick.",
              read_only=True, lo=0.0, hi=500.0),
    ParamSpec("horizon", 1000, "Ticks per episode; at the horizon the episode resets.",
              read_only=True, lo=1, hi=10**9),
    ParamSpec("fast_render", True, "Render without shadows, reflections, skybox, MSAA.",
              read_only=True),
    ParamSpec("base_frame_id", "panda_link0", "Frame of ee_pose and parent of the /tf.",
              read_only=True),
    ParamSpec("ee_frame_id", "panda_hand", "Child frame of the end-effector transform.",
              read_only=True),
    ParamSpec("agentview_frame_id", "agentview_camera", "frame_id of agentview images.",
              read_only=True),
    ParamSpec("wrist_frame_id", "wrist_camera", "frame_id of wrist camera images.",
              read_only=True),
    _topic("agentview_topic", "/camera/agentview/image_raw", "third-person images (rgb8)"),
    _topic("wrist_topic", "/camera/wrist/image_raw", "wrist camera images (rgb8)"),
    _topic("joint_states_topic", "/joint_states", "the 7 arm + 2 finger joint states"),
    _topic("ee_pose_topic", "/ee_pose", "the end-effector pose in base_frame_id"),
    _topic("tf_topic", "/tf", "base -> end-effector transforms (needs tf2_msgs)"),
    _topic("task_success_topic", "/task_success", "task success, every tick"),
    _topic("instruction_topic", "/instruction", "the instruction (transient local)"),
    _topic("action_chunk_topic", "/specprune/action_chunk", "incoming action chunks"),
    ParamSpec("command_input", "chunk", "What the arm executes: 'chunk' (action chunks, one "
              "row per tick), 'twist' (TwistStamped from specprune_executor) or 'pose' "
              "(PoseStamped targets from specprune_executor).", read_only=True,
              choices=COMMAND_INPUTS),
    ParamSpec("gripper_convention", "env", "Gripper value of the commands: 'env' (-1 open .. "
              "1 close) or 'openvla_oft' (0 close .. 1 open, OpenVLA-OFT's released LIBERO "
              "checkpoints; binarised as openvla-oft's process_action).", read_only=True,
              choices=GRIPPER_CONVENTIONS),
    _topic("twist_topic", "/specprune/ee_twist", "incoming TwistStamped commands"),
    _topic("pose_target_topic", "/specprune/ee_target_pose", "incoming PoseStamped targets"),
    _topic("gripper_topic", "/specprune/gripper", "incoming gripper commands (Float64)"),
    ParamSpec("command_timeout_s", 0.2, "A twist / pose command older than this is not "
              "executed (the arm holds).", read_only=True, lo=0.001, hi=10.0),
    ParamSpec("publish_clock", False, "Publish /clock with the simulated time and stamp "
              "everything with it (run the other nodes with use_sim_time).", read_only=True),
)


def sim_config(params: Dict[str, Any]) -> SimArmConfig:
    """The SimArmConfig described by the node's parameters."""
    seed = int(params["seed"])
    return SimArmConfig(task=params["task"], camera_size=int(params["camera_size"]),
                        control_rate_hz=float(params["control_rate_hz"]),
                        horizon=int(params["horizon"]), seed=None if seed < 0 else seed,
                        cameras=tuple(VIEWS.values()), fast_render=bool(params["fast_render"]))


def libero_config(params: Dict[str, Any]) -> Optional[LiberoArmConfig]:
    """The LiberoArmConfig of a LIBERO task (None for our own tasks); ValueError when the
    parameters ask for what LIBERO cannot do."""
    named = libero_task(str(params["task"]))
    if named is None:
        if int(params["reset_init_state"]) >= 0:
            raise ValueError(f"reset_init_state={params['reset_init_state']}: task "
                             f"{params['task']!r} has no fixed initial states")
        return None
    if float(params["control_rate_hz"]) != LIBERO_RATE_HZ:
        raise ValueError(f"control_rate_hz={params['control_rate_hz']}: LIBERO tasks run at "
                         f"{LIBERO_RATE_HZ:g} Hz (its robosuite control_freq)")
    return LiberoArmConfig(suite=named[0], task=named[1], camera_size=int(params["camera_size"]),
                           horizon=int(params["horizon"]))


def make_arm(params: Dict[str, Any]) -> Any:
    """The arm the parameters name: a SimArm, or a LiberoArm for a LIBERO task; StartupError
    saying why a LIBERO task cannot start (no .venv-libero, an unknown suite or task)."""
    config = libero_config(params)
    if config is None:
        return SimArm(sim_config(params))
    try:
        return LiberoArm(config)
    except (FileNotFoundError, LiberoWorkerError) as exc:
        raise StartupError(f"LIBERO task {params['task']!r}: {exc}") from exc


def camera_every(control_rate_hz: float, camera_rate_hz: float) -> int:
    """Ticks between rendered frames: 1 (every tick) when camera_rate_hz is 0 or above the
    control rate."""
    if camera_rate_hz <= 0.0:
        return 1
    return max(1, int(round(control_rate_hz / camera_rate_hz)))


def is_camera_tick(step: int, every: int) -> bool:
    """Whether tick ``step`` of an episode (0: the reset) renders the cameras: 0, every,
    2 every..., so frame stamps lie a whole number of camera periods after the episode's
    first."""
    return step % every == 0


# ------------------------------------------------------------------------------ messages
def joint_state_msg(obs: SimObservation, stamp: Time) -> JointState:
    """JointState of the 7 arm joints and 2 finger joints (positions, velocities)."""
    msg = JointState()
    msg.header.stamp = stamp
    msg.name = list(obs.joint_names)
    msg.position = obs.joint_positions.tolist()
    msg.velocity = obs.joint_velocities.tolist()
    return msg


def ee_pose_msg(obs: SimObservation, stamp: Time, frame_id: str) -> PoseStamped:
    """End-effector pose in the robot base frame, stamped ``frame_id``."""
    pos, quat = obs.eef_pose_in_base()
    msg = PoseStamped()
    msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    msg.pose.position.x, msg.pose.position.y, msg.pose.position.z = (float(v) for v in pos)
    o = msg.pose.orientation
    o.x, o.y, o.z, o.w = (float(v) for v in quat)
    return msg


def ee_transform_msg(pose: PoseStamped, child_frame_id: str) -> TransformStamped:
    """The pose as a base -> end-effector transform for /tf."""
    msg = TransformStamped()
    msg.header = pose.header
    msg.child_frame_id = child_frame_id
    p = pose.pose.position
    msg.transform.translation.x, msg.transform.translation.y = p.x, p.y
    msg.transform.translation.z = p.z
    msg.transform.rotation = pose.pose.orientation
    return msg


# ------------------------------------------------------------------------------ node
class SimBridgeNode(Node):
    """Steps a SimArm in a timer and speaks the topics of a real arm driver."""

    def __init__(self, context: Optional[Context] = None) -> None:
        super().__init__(NODE_NAME, context=context)
        self._p = declare_table(self, PARAMS)
        self._sim = make_arm(self._p)
        self._camera_every = camera_every(1.0 / self._sim.dt, self._p["camera_rate_hz"])
        self._queue = ActionQueue()
        self._command = CommandInput(self._p["command_input"], self._p["command_timeout_s"])
        self._clock_ns = time.time_ns() if self._p["publish_clock"] else None
        self._episode = 0
        self._rejected = 0
        self._rate_t0 = time.monotonic()
        # ~/reset is carried out by the tick (the one sim user) and answered once done
        self._reset_lock = threading.Lock()
        self._pending_resets: List[threading.Event] = []  # one new episode each, in order
        self._make_publishers()
        self._subscribe_commands()
        self.create_service(Trigger, "~/reset", self._on_reset)
        self.add_on_set_parameters_callback(self._validate_parameters)
        self.add_post_set_parameters_callback(self._on_parameters_set)
        self._start_episode()
        # the tick runs on its own thread, not an rclpy timer: see control_loop.py
        self._loop = ControlLoop(self._sim.dt, self._on_tick, self._on_tick_error,
                                 name="sim_tick")
        self._loop.start()
        self.get_logger().info(
            f"simulating '{self._p['task']}' at {1.0 / self._sim.dt:g} Hz, "
            f"{self._p['camera_size']}px cameras every {self._camera_every} tick(s) while "
            f"subscribed; "
            f"executing {self._p['command_input']} "
            f"commands{', publishing /clock' if self._clock_ns else ''}")

    def _subscribe_commands(self) -> None:
        """Subscribe to what command_input names (and the gripper beside twist / pose)."""
        p = self._p
        if p["command_input"] == "chunk":
            self.create_subscription(JointTrajectory, p["action_chunk_topic"], self._on_chunk,
                                     10)
            return
        if p["command_input"] == "twist":
            self.create_subscription(TwistStamped, p["twist_topic"], self._on_twist, 10)
        else:
            self.create_subscription(PoseStamped, p["pose_target_topic"],
                                     self._on_pose_target, 10)
        self.create_subscription(Float64, p["gripper_topic"],
                                 lambda msg: self._command.set_gripper(
                                     float(self._gripper_to_env(np.array([msg.data]))[0])), 10)

    # -------------------------------------------------------------------- setup
    def _make_publishers(self) -> None:
        """Create every publisher (the /tf one only where tf2_msgs exists)."""
        p = self._p
        self._image_pubs = {view: self.create_publisher(Image, p[f"{view}_topic"],
                                                        qos_profile_sensor_data)
                            for view in VIEWS}
        self._joint_pub = self.create_publisher(JointState, p["joint_states_topic"], 10)
        self._pose_pub = self.create_publisher(PoseStamped, p["ee_pose_topic"], 10)
        self._success_pub = self.create_publisher(Bool, p["task_success_topic"], 10)
        latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL,
                             reliability=ReliabilityPolicy.RELIABLE)
        self._instruction_pub = self.create_publisher(String, p["instruction_topic"], latched)
        self._clock_pub = self.create_publisher(Clock, "/clock", 10) if p["publish_clock"] \
            else None
        self._tf_pub = None
        if TFMessage is not None:
            self._tf_pub = self.create_publisher(TFMessage, p["tf_topic"], 100)
        else:
            self.get_logger().info(f"tf2_msgs is not importable: {p['tf_topic']} is not "
                                   f"published (use {p['ee_pose_topic']})")

    def stop_ticking(self) -> None:
        """End the control loop after the tick in progress: the simulator gets no new work."""
        if not self._loop.stop():
            self.get_logger().error("the control tick did not end within 5 s")

    @property
    def failed(self) -> bool:
        """The control loop ended on an error (reported by _on_tick_error)."""
        return self._loop.error is not None

    def close(self) -> None:
        """Free the simulator (call after the executor stopped running callbacks)."""
        self._sim.close()

    # -------------------------------------------------------------------- episodes
    def _episode_seed(self) -> Optional[int]:
        """reset_seed when set; else seed + episode index, or None (random) when the seed
        parameter is negative."""
        reset_seed = int(self.get_parameter("reset_seed").value)
        if reset_seed >= 0:
            return reset_seed
        seed = int(self._p["seed"])
        return None if seed < 0 else seed + self._episode

    def _start_episode(self) -> SimObservation:
        """Drop pending actions, reset the sim, publish the instruction and first state."""
        self._queue.clear()
        self._command.clear()
        init_state = int(self.get_parameter("reset_init_state").value)
        if init_state >= 0:  # only a LIBERO task accepts it (_validate_parameters)
            self._start_label = f"initial state {init_state}"
            obs = self._sim.reset_to_init_state(init_state)
        else:
            seed = self._episode_seed()
            self._start_label = f"seed {seed}"  # reported by ~/reset as it was applied
            obs = self._sim.reset(seed=seed)
        if self._episode:  # the new episode's state gets a stamp of its own, never the
            self._advance_clock()  # previous tick's (the policy drops repeated stamps)
        self._publish_instruction()
        self._publish_observation(obs)
        return obs

    def instruction(self) -> str:
        """The instruction parameter, or the task's own when it is empty."""
        text = str(self.get_parameter("instruction").value)
        return text if text else self._sim.instruction

    def _publish_instruction(self) -> None:
        """Publish the current instruction (latched)."""
        self._instruction_pub.publish(String(data=self.instruction()))

    # -------------------------------------------------------------------- callbacks
    def _on_tick(self) -> None:
        """The control loop's callback: one control tick."""
        try:
            self._tick()
        except Exception:
            if self.context.ok():
                raise
            # shutting down (SIGINT/SIGTERM): publishers died under this tick; nothing to do

    def _on_tick_error(self, exc: BaseException) -> None:
        """A tick raised: the simulation cannot go on; say why and stop the process."""
        trace = "".join(traceback.format_exception(exc)).rstrip()
        self.get_logger().fatal(f"simulation tick failed, stopping:\n{trace}")
        lifecycle.request_stop()

    def _tick(self) -> None:
        """Step the sim with the next action (or start a new episode) and publish."""
        with self._reset_lock:
            reset = self._pending_resets.pop(0) if self._pending_resets else None
        if reset is not None:  # ~/reset waits for this
            self._episode += 1
            self._start_episode()
            reset.set()
            return
        if self._sim.done:
            self._episode += 1
            self.get_logger().info(f"horizon reached: starting episode {self._episode}")
            self._start_episode()
            return
        self._advance_clock()
        obs = self._sim.step(self._next_action(),
                             render=self._renders(self._sim.last_observation.step + 1))
        self._publish_observation(obs)
        self._log_rate(obs.step)

    def _renders(self, step: int) -> bool:
        """Render on tick ``step``: a camera tick while someone subscribes to a view."""
        return is_camera_tick(step, self._camera_every) and any(
            pub.get_subscription_count() > 0 for pub in self._image_pubs.values())

    def _next_action(self) -> np.ndarray:
        """The next chunk row, or the twist / pose command converted to an OSC action."""
        if self._p["command_input"] == "chunk":
            return self._queue.next_action()
        pos, quat = self._sim.last_observation.eef_pose_in_base()
        return self._command.action(self._now(), self._sim.dt, pos, quat)

    def _advance_clock(self) -> None:
        """With publish_clock: one control period on, published on /clock."""
        if self._clock_ns is not None:
            self._clock_ns += int(round(self._sim.dt * 1e9))
            self._clock_pub.publish(Clock(clock=self._stamp()))

    def _now(self) -> float:
        """Seconds on the bridge's clock (the simulated one with publish_clock)."""
        if self._clock_ns is not None:
            return self._clock_ns * 1e-9
        return self.get_clock().now().nanoseconds * 1e-9

    def _stamp(self) -> Time:
        if self._clock_ns is not None:
            return Time(sec=self._clock_ns // 10 ** 9, nanosec=self._clock_ns % 10 ** 9)
        return self.get_clock().now().to_msg()

    def _on_twist(self, msg: TwistStamped) -> None:
        t = msg.twist
        self._command.set((t.linear.x, t.linear.y, t.linear.z),
                          (t.angular.x, t.angular.y, t.angular.z), self._now())

    def _on_pose_target(self, msg: PoseStamped) -> None:
        p, q = msg.pose.position, msg.pose.orientation
        self._command.set((p.x, p.y, p.z), (q.x, q.y, q.z, q.w), self._now())

    def _on_chunk(self, msg: JointTrajectory) -> None:
        """Queue a valid chunk in place of the executing one; warn about an invalid one."""
        try:
            actions = parse_action_chunk(msg.joint_names, [p.positions for p in msg.points])
        except ValueError as exc:
            self._rejected += 1
            self.get_logger().warning(f"rejected action chunk ({self._rejected} so far): {exc}",
                                      throttle_duration_sec=2.0)
            return
        self._queue.replace(self._gripper_to_env(actions))

    def _gripper_to_env(self, actions: np.ndarray) -> np.ndarray:
        """Actions (N, 7), or a (1,) gripper command, with the gripper (the last value) in
        the arm's convention."""
        if self._p["gripper_convention"] == "env":
            return actions
        return gripper_to_env(actions)

    def _on_reset(self, request: Trigger.Request, response: Trigger.Response
                  ) -> Trigger.Response:
        """~/reset: new episode with the next seed, chunk dropped, instruction republished
        (by the next tick; answered once it is done)."""
        done = threading.Event()
        with self._reset_lock:
            self._pending_resets.append(done)
        deadline = time.monotonic() + RESET_WAIT_S
        while not done.wait(0.05) and self._loop.running() \
                and time.monotonic() < deadline:
            pass
        with self._reset_lock:
            if done in self._pending_resets:
                self._pending_resets.remove(done)
        if not done.is_set():
            response.success = False
            response.message = (f"the simulation did not tick within {RESET_WAIT_S:g} s"
                                if self._loop.running() else "the simulation is stopping")
            return response
        response.success = True
        response.message = f"episode {self._episode} ({self._start_label})"
        self.get_logger().info(f"reset: {response.message}")
        return response

    def _validate_parameters(self, params: List[Parameter]) -> SetParametersResult:
        """Reject instructions with surrounding whitespace and fixed initial states of a task
        that has none (descriptors do the rest)."""
        for param in params:
            if (param.name == "reset_init_state" and param.value >= 0
                    and not isinstance(self._sim, LiberoArm)):
                return SetParametersResult(
                    successful=False, reason=f"task {self._p['task']!r} has no fixed initial "
                    f"states (LIBERO tasks, {TASK_NAME_FORMAT}, do)")
            if param.name == "instruction" and str(param.value).strip() != param.value:
                return SetParametersResult(
                    successful=False,
                    reason="instruction must not have leading/trailing whitespace "
                           "(use '' for the task's own)")
        return SetParametersResult(successful=True)

    def _on_parameters_set(self, params: List[Parameter]) -> None:
        """Republish the instruction when it changed."""
        if any(param.name == "instruction" for param in params):
            self._publish_instruction()

    # -------------------------------------------------------------------- publishing
    def _publish_observation(self, obs: SimObservation) -> None:
        """Publish images (when rendered), joints, ee pose (+ /tf) and success, all with one
        stamp: now."""
        stamp = self._stamp()
        for view, camera in VIEWS.items():
            if camera not in obs.images:
                continue
            self._image_pubs[view].publish(rgb_to_image_msg(
                obs.images[camera], "rgb8", stamp, self._p[f"{view}_frame_id"]))
        self._joint_pub.publish(joint_state_msg(obs, stamp))
        pose = ee_pose_msg(obs, stamp, self._p["base_frame_id"])
        self._pose_pub.publish(pose)
        if self._tf_pub is not None:
            self._tf_pub.publish(TFMessage(
                transforms=[ee_transform_msg(pose, self._p["ee_frame_id"])]))
        self._success_pub.publish(Bool(data=bool(obs.success)))

    def _log_rate(self, step: int) -> None:
        """Every 100 ticks, log the achieved tick rate at debug level."""
        if step % _RATE_LOG_EVERY:
            return
        now = time.monotonic()
        rate = _RATE_LOG_EVERY / max(now - self._rate_t0, 1e-9)
        self._rate_t0 = now
        self.get_logger().debug(f"achieved {rate:.1f} steps/s "
                                f"(target {self._p['control_rate_hz']:g}; "
                                f"{self._loop.overruns} overrun ticks so far)")


def main(args: Optional[List[str]] = None) -> None:
    """Run the bridge until SIGINT / SIGTERM, then free the simulator."""
    lifecycle.init(args)
    node: Optional[SimBridgeNode] = None
    # single-threaded: every callback only stores or waits for the tick, which has its own
    # thread. rclpy 9's MultiThreadedExecutor re-queues tasks that wait in its pool and
    # spins holding the GIL (ros2/rclpy#1452, fixed upstream by #1547), which starved the
    # tick here to ~1 Hz under 50 Hz twist commands.
    executor = SingleThreadedExecutor()
    code = 0
    try:
        node = SimBridgeNode()
        executor.add_node(node)
        lifecycle.spin_until_stopped(executor)
        code = 1 if node.failed else 0
    except (ValueError, StartupError) as exc:  # a parameter that cannot work
        rclpy.logging.get_logger(NODE_NAME).fatal(f"cannot start: {exc}")
        code = 1
    finally:
        if node is not None:
            node.stop_ticking()
        lifecycle.drain(executor)
        executor.shutdown()
        if node is not None:
            node.close()
            node.destroy_node()
        rclpy.try_shutdown()
    if code:
        sys.exit(code)


if __name__ == "__main__":
    main()
