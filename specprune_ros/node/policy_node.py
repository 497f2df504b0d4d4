"""ROS 2 managed node ``specprune_policy``: cameras + joint state + ee motion -> SpecPrune
policy -> action chunks, diagnostics and a kept-patch overlay. Run::

    python -m specprune_ros.node.policy_node --ros-args --params-file config/policy.yaml \
        -p model:=/path/to/checkpoint -p autostart:=true

A lifecycle node (rclpy.lifecycle): it starts 'unconfigured' and waits for its manager
(a launch file, ``ros2 lifecycle set``, the ``~/change_state`` service) unless
``autostart`` is true. Without a model (``model`` empty, the default) it stays
unconfigured even with ``autostart``: its parameter services answer, it publishes no chunk,
it logs once what to do next (set ``model``, then configure and activate) and says the
same on /diagnostics. ``model``, ``device``, ``dtype``, ``action_layout`` and
``torch_threads`` can be set while unconfigured and are refused once configured.
configure: refuses an empty model or a random-weight preset (unless
``allow_preset_model``), loads the model, checks layer lists against its depth, subscribes
and starts the worker; activate: steps and publishes chunks; deactivate: stops both (a step
in flight finishes first); cleanup: unsubscribes and frees the model.

Subscription callbacks only decode and store samples (ObservationBuilder, which pairs the
views and the state by header stamp); a worker thread runs the model on the newest matched
observation, so a slow step never queues stale frames. Bad input (stale / missing /
unsynchronised views, wrong encoding or size, NaN joint state, a missing or jumping ee
pose, non-finite model output) publishes no chunk: it is logged once per occurrence and
reported on /diagnostics, with the skipped iterations counted per reason. Parameters:
config/policy.yaml (generated from specprune_ros/node/parameters.py); ``prune.*`` and the
thresholds are live; an integer is accepted for every double. Services: ``~/reset``
(std_srvs/Trigger, new episode: also published as std_msgs/String on EPISODE_TOPIC, the
episode boundary a recording keeps), ``~/enable`` (std_srvs/SetBool), and the lifecycle ones.
No step of a new episode uses an observation built before its ~/reset; with
``reset_forgets_instruction`` none uses the instruction received before it either (the
node waits for the next one on instruction_topic; the diagnostics row of every step names
the instruction it was computed with).
"""
from __future__ import annotations

import gc
import sys
import threading
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # lark, pulled in by the msg packages
    from diagnostic_msgs.msg import DiagnosticArray
    from geometry_msgs.msg import PoseStamped
    from rcl_interfaces.msg import SetParametersResult
    from sensor_msgs.msg import CompressedImage, Image, JointState
    from std_msgs.msg import String
    from std_srvs.srv import SetBool, Trigger
    from trajectory_msgs.msg import JointTrajectory

from specprune import (CheckpointError, NonFiniteActionError, Observation, PruneConfig,
                       StepStats, load_policy)
from specprune.model.presets import PRESETS
from specprune_ros.node import lifecycle
from specprune_ros.node.bag_topics import EPISODE_ACTIVATE, EPISODE_RESET
from specprune_ros.node.lifecycle import StartupError
from specprune_ros.node import parameters as params
from specprune_ros.node.param_table import coerce_parameters, declare_table, ros_value
from specprune_ros.node.input_faults import Fault, FaultTracker
from specprune_ros.node.observation_builder import (LIMIT_PARAMS, NO_NEW_FRAMES, BuildResult,
                                                    ObservationBuilder, limits_from,
                                                    make_builder)
from specprune_ros.node.policy_messages import (Counters, StepReport, chunk_msg,
                                                diagnostic_status, next_steps, overlay_image,
                                                unconfigured_status)
from specprune_ros.node.ros_image import compressed_msg_to_rgb, image_msg_to_rgb, rgb_to_image_msg
from specprune_ros.node.time_jumps import watch_time_jumps
from specprune_ros.node.tf_motion import (TfPoseSource, pose_from_msg,
                                          stamp_seconds, tf_unavailable_reason)

NODE_NAME = params.NODE_NAME
#: each successful ~/reset publishes "reset" here (reliable), each activation "activate":
#: the episode boundaries that specprune-record keeps and specprune-replay resets the
#: policy at
EPISODE_TOPIC = "/specprune/episode"
_FAULT_DIAG_PERIOD_S = 0.25  # most frequent diagnostics while skipping
_HEARTBEAT_S = 1.0  # diagnostics at least this often
_WAKE_PERIOD_S = 0.1  # re-check inputs this often without new frames (staleness)


# ------------------------------------------------------------------------------ parameters
def startup_checks(values: Dict[str, Any]) -> PruneConfig:
    """The start-up checks beyond the table's own (declare_table applied those); the
    PruneConfig the values describe."""
    if values["ee_motion_source"] == "tf" and tf_unavailable_reason():
        raise StartupError(f"ee_motion_source 'tf' rejected: {tf_unavailable_reason()}")
    try:
        return params.prune_config(values)
    except ValueError as exc:
        raise StartupError(f"invalid prune.* parameters: {exc}") from None


def model_refusal(values: Dict[str, Any]) -> Optional[str]:
    """Why configure must not load ``values['model']`` (none named, or a random-weight
    preset without allow_preset_model), or None."""
    model = str(values["model"])
    if not model:
        return ("no model named: set the parameter model to an OpenVLA-OFT checkpoint folder "
                "(a preset name needs allow_preset_model:=true)")
    if model in PRESETS and not values["allow_preset_model"]:
        return (f"model {model!r} is a preset with random weights (random motion on a robot); "
                f"name a trained checkpoint folder, or set allow_preset_model:=true (tests, "
                f"simulator)")
    return None


# ------------------------------------------------------------------------------ the node
@dataclass
class _Shared:
    """State shared between the executor thread and the worker (guarded by ``lock``)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    topic_instruction: str = ""
    enabled: bool = True
    report: Optional[StepReport] = None
    counters: Counters = field(default_factory=Counters)
    step_fault: Optional[Fault] = None


class PolicyNode(LifecycleNode):
    """The SpecPrune policy as a managed ROS 2 node (see the module docstring)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        try:
            self._values = declare_table(self, params.PARAMS)
            self._prune = startup_checks(self._values)
        except StartupError:
            self.destroy_node()
            raise
        self.error = ""  # why the last transition failed
        self._policy: Any = None
        self._builder: Optional[ObservationBuilder] = None
        self._shared = _Shared()
        self._faults = FaultTracker()
        self._policy_lock = threading.Lock()  # step vs reset vs deactivate / cleanup
        self._episode = 0  # ~/reset count (under _policy_lock): a build of an older one is
        # never stepped on
        self._tf: Optional[TfPoseSource] = None
        self._jump_handle: Any = None
        self._subscriptions_made: List[Any] = []
        self._managed_pubs: List[Any] = []
        self._active = threading.Event()
        self._wake, self._stop = threading.Event(), threading.Event()
        self._worker: Optional[threading.Thread] = None
        self._waiting_for_state = False  # wake the worker on joint states / poses
        # diagnostics also report 'inactive' / 'unconfigured': not a managed publisher
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_service(Trigger, "~/reset", self._on_reset)
        self._episode_pub = self.create_publisher(String, EPISODE_TOPIC, 10)
        self.create_service(SetBool, "~/enable", self._on_enable)
        self.add_pre_set_parameters_callback(self._coerce_parameters)
        self.add_on_set_parameters_callback(self._validate_parameters)
        self.add_post_set_parameters_callback(self._apply_parameters)
        self.create_timer(_HEARTBEAT_S, self._unconfigured_diagnostics)
        if not self._values["model"]:
            self.get_logger().warning(next_steps(self.get_fully_qualified_name()))

    @property
    def autostart(self) -> bool:
        return bool(self._values["autostart"])

    def bring_up(self) -> None:
        """configure, then activate (``autostart``); StartupError with the reason. Without
        a model it stays unconfigured (the constructor said what to do next)."""
        if self._values["model"]:
            lifecycle.bring_up(self, lambda: self.error)

    # -------------------------------------------------------------------- lifecycle
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Load the model, subscribe, start the worker (which steps only while active)."""
        try:
            self._configure()
        except StartupError as exc:
            self.error = str(exc)
            self.get_logger().error(f"configure failed: {exc}")
            self._release()
            return TransitionCallbackReturn.FAILURE
        self.error = ""
        self.get_logger().info(
            f"configured: model {self._values['model']!r}, views "
            f"{self._values['camera_topics']}, chunks on {self._values['action_chunk_topic']}, "
            f"ee motion from {self._values['ee_motion_source']}")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        result = super().on_activate(state)  # enables the managed publishers
        with self._policy_lock:  # a new start: no look-back frames, global scores or
            # controller mode from before an inactive spell (which may have lasted minutes),
            # and no frame taken before it; the instruction stays (unlike ~/reset's option)
            if self._policy is not None:
                self._policy.reset()
            self._episode += 1
            if self._builder is not None:
                self._builder.new_episode(self._now())
            self._episode_pub.publish(String(data=EPISODE_ACTIVATE))
        self._active.set()
        self._wake.set()
        self.get_logger().info("active: stepping and publishing chunks (policy reset)")
        return result

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._active.clear()
        with self._policy_lock:  # a step in flight ends (and publishes) before we return
            pass
        self.get_logger().info("inactive: no steps, no chunks")
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        self.get_logger().info("unconfigured: model freed, inputs unsubscribed")
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def _configure(self) -> None:
        refusal = model_refusal(self._values)
        if refusal:
            raise StartupError(refusal)
        self._policy = self._load_policy()
        problem = params.check_layers(self._values, self._policy.model.num_layers)
        if problem:
            raise StartupError(problem)
        self._builder = self._make_builder()
        self._faults = FaultTracker()
        self._make_publishers()
        self._make_subscriptions()
        self._start_motion_source()
        self._jump_handle = watch_time_jumps(self, self._on_time_jump)
        self._stop.clear()
        self._worker = threading.Thread(target=self._run_worker, name="specprune_inference",
                                        daemon=True)
        self._worker.start()

    def _release(self) -> None:
        """Stop the worker, drop subscriptions, managed publishers, TF and the model."""
        self._active.clear()
        self.shutdown()
        if self._tf is not None:
            self._tf.destroy()
            self._tf = None
        if self._jump_handle is not None:
            self._jump_handle.unregister()
            self._jump_handle = None
        for sub in self._subscriptions_made:
            self.destroy_subscription(sub)
        for pub in self._managed_pubs:
            self.destroy_lifecycle_publisher(pub)
        self._subscriptions_made, self._managed_pubs = [], []
        with self._policy_lock:
            freed, self._policy, self._builder = self._policy is not None, None, None
        if freed:
            gc.collect()
            if "torch" in sys.modules and sys.modules["torch"].cuda.is_available():
                sys.modules["torch"].cuda.empty_cache()

    # -------------------------------------------------------------------- setup
    def _load_policy(self) -> Any:
        v = self._values
        if v["torch_threads"] > 0:
            import torch
            torch.set_num_threads(v["torch_threads"])
        try:
            policy = load_policy(v["model"], device=v["device"], dtype=v["dtype"],
                                 prune_config=self._prune, layout=v["action_layout"] or None)
        except (FileNotFoundError, CheckpointError, ValueError, OSError) as exc:
            raise StartupError(f"cannot load model {v['model']!r}: {exc}") from None
        if len(v["camera_topics"]) != policy.layout.num_images:
            raise StartupError(f"model {v['model']!r} takes {policy.layout.num_images} views "
                               f"but camera_topics lists {len(v['camera_topics'])}")
        return policy

    def _make_builder(self) -> ObservationBuilder:
        try:
            return make_builder(self._values, self._policy.layout.proprio_dim)
        except ValueError as exc:
            raise StartupError(str(exc)) from None

    def _make_publishers(self) -> None:
        v = self._values
        self._chunk_pub = self.create_lifecycle_publisher(JointTrajectory,
                                                          v["action_chunk_topic"], 10)
        self._overlay_pub = self.create_lifecycle_publisher(Image, v["overlay_topic"],
                                                            qos_profile_sensor_data)
        self._managed_pubs = [self._chunk_pub, self._overlay_pub]

    def _make_subscriptions(self) -> None:
        v = self._values
        compressed = v["camera_transport"] == "compressed"
        subs = [self.create_subscription(
            CompressedImage if compressed else Image,
            f"{topic}/compressed" if compressed else topic,
            lambda msg, view=view: self._on_image(view, msg), qos_profile_sensor_data)
            for view, topic in enumerate(v["camera_topics"])]
        subs.append(self.create_subscription(JointState, v["joint_states_topic"],
                                             self._on_joints, 10))
        subs.append(self.create_subscription(PoseStamped, v["ee_pose_topic"], self._on_pose, 10))
        latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL,
                             reliability=ReliabilityPolicy.RELIABLE)
        subs.append(self.create_subscription(String, v["instruction_topic"],
                                             self._on_instruction, latched))
        self._subscriptions_made = subs

    def _start_motion_source(self) -> None:
        """Create the TF lookups when the source is 'tf' (tf2_ros was checked before)."""
        if self._values["ee_motion_source"] != "tf" or self._tf is not None \
                or self._builder is None:
            return
        v = self._values
        self._tf = TfPoseSource(self, v["base_frame"], v["ee_frame"], v["tf_rate_hz"],
                                self._on_tf_pose, self._on_tf_error)

    def shutdown(self) -> None:
        """Stop the worker (waits for a running step) before the node is destroyed."""
        self._stop.set()
        self._wake.set()
        if self._worker is not None and self._worker.is_alive():
            self._worker.join(timeout=30.0)
        self._worker = None

    # -------------------------------------------------------------------- inputs
    def _on_image(self, view: int, msg: Any) -> None:
        received = time.monotonic()
        try:
            rgb = compressed_msg_to_rgb(msg) if isinstance(msg, CompressedImage) \
                else image_msg_to_rgb(msg)
        except ValueError as exc:
            self._builder.reject_frame(view, str(exc))
        else:
            self._builder.add_frame(view, rgb, stamp_seconds(msg.header.stamp), received,
                                    msg.header.stamp)
        self._wake.set()

    def _on_joints(self, msg: JointState) -> None:
        self._builder.set_joint_state(list(msg.name), list(msg.position),
                                      stamp_seconds(msg.header.stamp))
        if self._waiting_for_state:  # the last build waited for the image instant's state
            self._wake.set()

    def _on_pose(self, msg: PoseStamped) -> None:
        if self._values["ee_motion_source"] != "tf":
            self._builder.add_pose(*pose_from_msg(msg), frame_id=msg.header.frame_id)
            if self._waiting_for_state:
                self._wake.set()

    def _on_tf_pose(self, position: Any, quaternion: Any, stamp: float) -> None:
        if self._values["ee_motion_source"] == "tf":
            self._builder.add_pose(position, quaternion, stamp)

    def _on_tf_error(self, reason: str) -> None:
        if self._values["ee_motion_source"] == "tf":
            self._builder.pose_unavailable(reason)

    def _on_instruction(self, msg: String) -> None:
        with self._shared.lock:
            self._shared.topic_instruction = msg.data

    def _now(self) -> float:
        """The node clock in seconds (the clock input stamps are compared with)."""
        return self.get_clock().now().nanoseconds * 1e-9

    def _instruction(self) -> str:
        with self._shared.lock:
            return self._current_instruction()

    def _current_instruction(self) -> str:
        """The parameter, else the newest on the topic (call with ``_shared.lock`` held)."""
        return str(self._values["instruction"]) or self._shared.topic_instruction

    def _on_time_jump(self, reason: str) -> None:
        """The clock broke its timeline: buffered inputs of the old one are forgotten and
        the policy starts a new episode (its look-back frames are of the old timeline)."""
        with self._policy_lock:
            if self._builder is not None:
                self._builder.time_jumped()
            if self._policy is not None:
                self._policy.reset()
            self._episode += 1  # a build of the old timeline in flight is not stepped
        self.get_logger().warning(f"time jump ({reason}): buffered inputs dropped, policy "
                                  "reset")

    # -------------------------------------------------------------------- services
    def _on_reset(self, request: Trigger.Request, response: Trigger.Response
                  ) -> Trigger.Response:
        with self._policy_lock:
            if self._policy is not None:
                self._policy.reset()
                self._episode += 1
                # frames taken before the reset (buffered, or in transit) are not the new
                # episode's: the first step waits for a frame stamped after it
                if self._builder is not None:
                    self._builder.new_episode(self._now())
                if self._values["reset_forgets_instruction"]:
                    with self._shared.lock:
                        self._shared.topic_instruction = ""  # wait for the new episode's
                self._episode_pub.publish(String(data=EPISODE_RESET))
                response.success, response.message = True, "policy reset: new episode"
            else:
                response.success, response.message = False, "not configured: no policy"
        self.get_logger().info(response.message)
        return response

    def _on_enable(self, request: SetBool.Request, response: SetBool.Response
                   ) -> SetBool.Response:
        with self._shared.lock:
            self._shared.enabled = bool(request.data)
        response.success = True
        response.message = "publishing chunks" if request.data else "chunk publishing disabled"
        self.get_logger().info(response.message)
        return response

    # -------------------------------------------------------------------- parameters
    def _coerce_parameters(self, changed: List[Parameter]) -> List[Parameter]:
        """Before validation: an integer for a double parameter becomes that float (what
        `ros2 param set <node> prune.keep_scale 2` sends), then the range applies."""
        return coerce_parameters(params.BY_NAME, changed)

    def _validate_parameters(self, changed: List[Parameter]) -> SetParametersResult:
        values = {p.name: ros_value(p.value) for p in changed}
        policy = self._policy
        problem = params.check_values(values, policy is not None,
                                      self.get_fully_qualified_name())
        if problem is None and policy is not None:
            problem = params.check_layers(values, policy.model.num_layers, self._values)
        if problem is None and values.get("ee_motion_source") == "tf":
            problem = tf_unavailable_reason()
        if problem is None and any(name.startswith(params.PRUNE_PREFIX) for name in values):
            try:
                params.prune_config(values, self._prune)
            except ValueError as exc:
                problem = str(exc)
        return SetParametersResult(successful=problem is None, reason=problem or "")

    def _apply_parameters(self, changed: List[Parameter]) -> None:
        names = {p.name for p in changed}
        with self._shared.lock:  # a step's chunk is checked against the instruction
            self._values.update({p.name: ros_value(p.value) for p in changed})
        if any(params.BY_NAME[name].until_configure for name in names if name in params.BY_NAME):
            self.error = ""  # a new model (or way to load it): the last failure is history
        prune = {p.name: ros_value(p.value) for p in changed
                 if p.name.startswith(params.PRUNE_PREFIX)}
        if prune:
            self._prune = params.prune_config(prune, self._prune)
            if self._policy is not None:
                self._policy.update_config(self._prune)  # applied at the next step
        if self._builder is None:
            return  # unconfigured: configure builds everything from self._values
        if names & set(LIMIT_PARAMS):
            self._builder.set_limits(limits_from(self._values))
        if "ee_motion_source" in names:
            self._builder.set_measure_motion(self._values["ee_motion_source"] != "policy")
            self._builder.reset_motion()  # samples of another source do not mix
            self._start_motion_source()

    # -------------------------------------------------------------------- the worker
    def _run_worker(self) -> None:
        next_step = last_diag = 0.0
        idle_since = time.monotonic()  # end of the previous iteration
        while not self._stop.is_set():
            self._wake.wait(timeout=_WAKE_PERIOD_S)
            self._wake.clear()
            wait = next_step - time.monotonic()
            if wait > 0 and self._stop.wait(wait):
                break
            began = time.monotonic()
            try:
                stepped, last_diag = self._iterate(last_diag, max(idle_since, next_step))
            except Exception as exc:  # noqa: BLE001 - never let the worker die
                if not self.context.ok() or self._stop.is_set():
                    break  # shutting down: publishers are gone
                self.get_logger().error(f"inference worker: {exc!r}", throttle_duration_sec=5.0)
                stepped = False
            idle_since = time.monotonic()
            if stepped:
                rate = float(self._values["inference_rate_hz"])
                next_step = began + (1.0 / rate if rate > 0 else 0.0)

    def _iterate(self, last_diag: float, free_since: float) -> Tuple[bool, float]:
        """Build, step, publish once while active (``free_since``: monotonic time since
        when the worker could have stepped). Returns (a step ran, time of the last
        diagnostics). Inactive: diagnostics only."""
        if not self._active.is_set():
            due = time.monotonic() - last_diag > _HEARTBEAT_S
            if due:
                self._publish_diagnostics([])
            return False, time.monotonic() if due else last_diag
        now = self._now()
        episode = self._episode  # a ~/reset from here on makes this build stale
        result = self._builder.build(now, self._instruction())
        self._waiting_for_state = bool(result.waiting) and result.waiting != NO_NEW_FRAMES
        with self._shared.lock:
            enabled = self._shared.enabled
            if self._waiting_for_state:
                self._shared.counters.waited_for_state += 1
        stepped = False
        if result.observation is not None and enabled:
            with self._policy_lock:  # deactivate waits for this step and its chunk
                if self._active.is_set() and episode == self._episode:
                    self._step(result, max(result.received, free_since))
                    stepped = True
        faults = self._track(result.faults)
        due = time.monotonic() - last_diag > (_FAULT_DIAG_PERIOD_S if faults else _HEARTBEAT_S)
        if stepped or due:
            self._publish_diagnostics(faults)
            last_diag = time.monotonic()
        return stepped, last_diag

    def _step(self, result: BuildResult, available: float) -> None:
        """Run the policy on ``result``'s observation (which the worker could take from the
        monotonic time ``available``) and publish the chunk and overlay."""
        obs: Observation = result.observation
        try:
            chunk, stats = self._policy.step(obs)
        except NonFiniteActionError as exc:
            self._set_step_fault(Fault("model_nonfinite", f"model output: {exc}", severe=True))
            return
        except ValueError as exc:
            self._set_step_fault(Fault("policy_rejected", f"policy rejected the observation: "
                                                          f"{exc}"))
            return
        except Exception as exc:  # noqa: BLE001 - e.g. CUDA out of memory: no chunk, and
            # a fault on /diagnostics (ERROR) until a step succeeds, not just a log line
            self._set_step_fault(Fault("model_error", f"model step failed: {exc!r}",
                                       severe=True))
            return
        self._set_step_fault(None)
        msg = chunk_msg(chunk, self._policy.layout.action_names, result.header_stamp,
                        self._values["base_frame"], float(self._values["control_rate_hz"]))
        with self._shared.lock:  # ~/enable false, an instruction (parameter or topic) and
            # ~/reset's forgetting apply before this or after it, never during: once a
            # change has been answered, no chunk of a step already running on the old
            # state goes out
            publish = self._shared.enabled and obs.instruction == self._current_instruction()
            if publish:
                self._chunk_pub.publish(msg)
            published = time.monotonic()
            report = StepReport(stats, (published - result.received) * 1e3,
                                (published - available) * 1e3 - stats.total_ms, chunk.replan,
                                obs.instruction)
            self._shared.report = report
            self._shared.counters.steps += 1
            self._shared.counters.chunks += int(publish)
            self._shared.counters.withheld += int(not publish)
        self._publish_overlay(result, stats)

    def _set_step_fault(self, fault: Optional[Fault]) -> None:
        with self._shared.lock:
            self._shared.step_fault = fault

    def _track(self, faults: List[Fault]) -> List[Fault]:
        """All current faults; log the ones that began or cleared (once per occurrence)."""
        with self._shared.lock:
            if self._shared.step_fault is not None:
                faults = faults + [self._shared.step_fault]
            if faults:
                self._shared.counters.skip(faults)
        started, cleared = self._faults.update(faults)
        log = self.get_logger()
        for fault in started:
            (log.error if fault.severe else log.warning)(f"no chunk: {fault.message}")
        for fault in cleared:
            log.info(f"cleared: {fault.message}")
        return faults

    def _unconfigured_diagnostics(self) -> None:
        """The heartbeat while no model is loaded (the worker reports otherwise)."""
        if self._policy is None:
            msg = DiagnosticArray(status=[unconfigured_status(str(self._values["model"]),
                                                              self.error)])
            msg.header.stamp = self.get_clock().now().to_msg()
            self._diag_pub.publish(msg)

    def _publish_diagnostics(self, faults: List[Fault]) -> None:
        builder = self._builder
        matching = builder.match_counters() if builder is not None else {}
        with self._shared.lock:
            status = diagnostic_status(faults, self._shared.report, self._shared.counters,
                                       self._shared.enabled, str(self._values["model"]),
                                       self._active.is_set(), matching)
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = self.get_clock().now().to_msg()
        self._diag_pub.publish(msg)

    def _publish_overlay(self, result: BuildResult, stats: StepStats) -> None:
        if not self._values["publish_overlay"] or not self._overlay_pub.get_subscription_count():
            return
        image = overlay_image(result.images, stats.kept_masks)
        self._overlay_pub.publish(rgb_to_image_msg(image, "rgb8", result.header_stamp,
                                                   "specprune_kept_patches"))


# ------------------------------------------------------------------------------ main
def _finish(node: PolicyNode) -> None:
    """Ordered shutdown: the lifecycle shutdown transition (worker stopped, model freed)
    while rclpy is still up."""
    try:
        node.trigger_shutdown()
    except Exception:  # noqa: BLE001 - already finalized, or a transition in progress
        node._release()


def main(args: Optional[List[str]] = None) -> None:
    """Run the managed node until SIGINT / SIGTERM (exit 0). With ``autostart`` it
    configures and activates itself, and a configure / activate failure exits with 1;
    without, it waits for its lifecycle manager. The process ends with os._exit after the
    ordered shutdown (issue #13: torch's teardown outlasted a launch's SIGINT timeout)."""
    lifecycle.run_managed(args, NODE_NAME, PolicyNode, _finish, exit_at_once=True)


if __name__ == "__main__":
    main()
