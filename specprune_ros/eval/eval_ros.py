"""``specprune-eval --via ros``: the paired episodes through the real node processes.

Starts ``specprune_sim_arm``, ``specprune_policy`` and ``specprune_executor`` with the launch
files' parameter files, wired as sim_policy.launch.py wires them (the policy's chunks go
through the executor, whose twist commands the simulated arm; the bridge publishes /clock
and the nodes run on it), waits until the node's status row says every input it steps on
has arrived (services answer before its subscriptions match the bridge's publishers),
then for every seed and configuration: stops chunk publishing
(``~/enable``), waits for the node's worker to finish any step in flight and deactivates
the executor (it holds and forgets its chunks), sets the configuration's
``prune.*`` parameters through the node's set_parameters service (what ``ros2 param
set`` does), resets the policy (``~/reset``), sets the bridge's ``reset_seed`` and calls
its ``~/reset`` (same cube placement and instruction as the direct runner's episode),
activates the executor, re-enables chunks, and waits until /task_success is true or
``horizon`` control ticks
have passed. Ticks are counted from /ee_pose (one per tick, stamped with the bridge's
clock); latency (step and LLM ms), kept tokens, the tokens entering each decoder layer and
mode come from the node's /diagnostics rows (one per policy step).

What differs from ``--via direct`` (also listed in the JSON's ``notes``):
- Asynchronous: the bridge ticks at control_rate_hz whether or not a chunk is ready (on
  its own /clock, which falls behind the wall clock when the CPU cannot keep up). The
  node runs at most ``inference_rate_hz`` steps per second (twice per chunk length, so
  consecutive chunks overlap); the executor skips the points whose time passed while the
  model computed (the step's latency) and combines overlapping chunks by ``rule``
  (``latest``); with no chunk covering a tick the arm holds still. Slow configurations
  therefore lose ticks: success here also depends on latency (and on the CPU the
  bridge's rendering shares with the model).
- The node steps on the newest frames when its worker is free, not exactly at the end of
  the previous chunk; its first step of an episode waits for two poses of the new
  episode (the pose jump at the reset is rejected).
- action_l1_vs_unpruned and the hit rate need the node's exact observation in-process:
  null here (0 for ``unpruned``). ``fastv``, ``random``: the node has neither mode; skipped.
"""
from __future__ import annotations

import argparse
import math
import os
import signal
import subprocess
import sys
import time
import warnings
from typing import Any, Callable, Dict, List, Optional, Sequence

import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rclpy.task import Future

from specprune.bench import machine
from specprune.config import layer_roles
from specprune.model.loading import decoder_depth
from specprune_ros.eval.configurations import (CLAIM_SEED, CONFIGS, IN_PROCESS_ONLY,
                                               attempt_info, note_attempts, run_meta)
from specprune_ros.eval.eval_journal import Journal, in_seed_order
from specprune_ros.eval.eval_results import ConfigRun, EpisodeRecord, StepRecord, summarize
from specprune_ros.node.package_data import data_path
from specprune_ros.node.parameters import prune_config
from specprune_ros.node.policy_messages import DIAG_NAME
from specprune_ros.node.tf_motion import stamp_seconds
from specprune_ros.sim.libero_arm import libero_task
from specprune_ros.sim.task_wiring import task_wiring

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # lark, pulled in by the msg packages
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
    from lifecycle_msgs.msg import Transition
    from lifecycle_msgs.srv import ChangeState
    from geometry_msgs.msg import PoseStamped
    from rcl_interfaces.srv import SetParameters
    from std_msgs.msg import Bool, String
    from std_srvs.srv import SetBool, Trigger

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
POLICY, BRIDGE = "/specprune_policy", "/specprune_sim_arm"
CONTROL_RATE_HZ = 20.0  # config/sim_arm.yaml
#: the policy node's cumulative counters in its diagnostics: iterations skipped (per fault
#: kind), waits for the state of the image instant, frames dropped on arrival
COUNTER_PREFIXES = ("steps", "skipped", "waited_for_state", "frames_", "clock_resets")
CHUNK = 8  # LIBERO layout
EXECUTOR = "/specprune_executor"
EXECUTOR_DIAG = "specprune_executor: safety"
NOTES = [
    "via ros: asynchronous; chunks go through specprune_executor (twist, rule latest, "
    "points whose time passed are skipped) on the bridge's /clock while the model "
    "computes; the arm holds when no chunk covers a tick",
    "via ros: action_l1_vs_unpruned and the hit rate need in-process access (null)",
    "via ros: fastv and random are not available in the policy node (skipped)",
]


class ServiceError(RuntimeError):
    """A service of a node did not answer or refused: the episode cannot run."""


class EvalMonitor(Node):
    """What crosses the wire during an episode (poses, success, the policy's diagnostics
    rows, the instruction) and the service calls that drive the episodes."""

    def __init__(self, procs: Sequence[Any]) -> None:
        # on the bridge's /clock, as the nodes are: poses are stamped with simulated time
        super().__init__("specprune_eval_monitor",
                         parameter_overrides=[Parameter("use_sim_time", value=True)])
        self.procs = procs
        self.since = math.inf  # poses stamped at or after this belong to the episode
        self.poses = 0
        self.success_tick: Optional[int] = None
        self.horizon = 0
        self.instruction = ""
        self.steps: List[StepRecord] = []  # one per policy step, from /diagnostics
        self.node_counters: Dict[str, int] = {}  # the node's cumulative skip counters
        self._last_steps = 0
        self.executor_counters: Dict[str, int] = {}  # the executor's interventions
        self._paused = False  # publishing off and no step in flight (see pause)
        self._disabled_row = False  # a row saying "publishing disabled" arrived
        self.node_status = ""  # the policy node's last diagnostics message
        self._node_ready = False  # its last row: active, every input present (see ready)
        self._service_clients: Dict[str, Any] = {}
        latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL,
                             reliability=ReliabilityPolicy.RELIABLE)
        self.create_subscription(String, "/instruction", self._on_instruction, latched)
        self.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 10)
        self.create_subscription(PoseStamped, "/ee_pose", self._on_pose, 10)
        self.create_subscription(Bool, "/task_success", self._on_success, 10)
        self._executor = SingleThreadedExecutor()
        self._executor.add_node(self)

    @property
    def ticks(self) -> int:
        """Control ticks of this episode so far (the reset's own pose is tick 0, already
        past when counting began at the reset's response)."""
        return self.poses

    def begin(self, since: float, horizon: int) -> None:
        """Count the poses stamped from ``since`` on (math.inf: none) as ticks 1, 2, ..."""
        self.since, self.horizon = since, horizon
        self.poses, self.success_tick = 0, None

    def _on_diag(self, msg: DiagnosticArray) -> None:
        """Keep one record per policy step (the node also sends heartbeats and faults,
        which repeat the last step's figures with the same step count)."""
        for status in msg.status:
            if status.name == EXECUTOR_DIAG:
                self.executor_counters = {kv.key[len("count_"):]: int(kv.value)
                                          for kv in status.values
                                          if kv.key.startswith("count_")}
            if status.name != DIAG_NAME:
                continue
            values = {kv.key: kv.value for kv in status.values}
            self.node_status = status.message
            self._node_ready = (status.level == DiagnosticStatus.OK
                                and values.get("active") == "True")
            self.node_counters = {k: int(v) for k, v in values.items()
                                  if k.startswith(COUNTER_PREFIXES) and v.isdigit()}
            if values.get("publishing_enabled") == "False":
                self._disabled_row = True
            steps = int(values.get("steps", "0"))
            record = step_record(values)
            if record is not None and steps > self._last_steps:
                self._last_steps = steps
                self.steps.append(record)

    def ready(self) -> bool:
        """Whether the policy node's last row was OK while active: its model is loaded and
        every input it steps on (both cameras, joints, pose, instruction) has arrived, so
        the next episode's first step waits for nothing but that episode's own frames."""
        return self._node_ready

    def _on_pose(self, msg: PoseStamped) -> None:
        if stamp_seconds(msg.header.stamp) >= self.since:
            self.poses += 1

    def _on_instruction(self, msg: String) -> None:
        self.instruction = msg.data

    def _on_success(self, msg: Bool) -> None:
        if msg.data and self.success_tick is None and 1 <= self.ticks <= self.horizon:
            self.success_tick = self.ticks

    def counters(self) -> Dict[str, Dict[str, int]]:
        """The nodes' cumulative counters so far, as the JSON records them."""
        return {"executor": dict(sorted(self.executor_counters.items())),
                "policy_node": dict(sorted(self.node_counters.items()))}

    def now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    # ---------------------------------------------------------------- waiting and calling
    def spin_until(self, done: Callable[[], bool], timeout: float) -> bool:
        """Spin until ``done()``; False on timeout; RuntimeError when a process died."""
        end = time.monotonic() + timeout
        while not done():
            dead = [p for p in self.procs if p.poll() is not None]
            if dead:
                raise RuntimeError(f"a node process exited (code {dead[0].returncode})")
            if time.monotonic() > end:
                return False
            self._executor.spin_once(timeout_sec=0.05)
        return True

    def call(self, srv_type: Any, name: str, request: Any, timeout: float = 60.0) -> Any:
        """Call a service (its client is kept for later calls); ServiceError on a timeout."""
        if name not in self._service_clients:
            self._service_clients[name] = self.create_client(srv_type, name)
        client = self._service_clients[name]
        if not self.spin_until(client.service_is_ready, timeout):
            raise ServiceError(f"service {name} is not available")
        future: Future = client.call_async(request)
        if not self.spin_until(future.done, timeout):
            raise ServiceError(f"service {name} did not answer in {timeout:g} s")
        return future.result()

    def set_parameters(self, node: str, values: Dict[str, Any]) -> None:
        request = SetParameters.Request(parameters=[
            Parameter(name, value=value).to_parameter_msg() for name, value in values.items()])
        results = self.call(SetParameters, f"{node}/set_parameters", request).results
        failed = [f"{name}: {r.reason}" for name, r in zip(values, results) if not r.successful]
        if failed:
            raise ServiceError(f"{node} rejected parameters: {'; '.join(failed)}")

    def trigger(self, service: str) -> str:
        response = self.call(Trigger, service, Trigger.Request())
        if not response.success:
            raise ServiceError(f"{service} failed: {response.message}")
        return response.message

    def executor_transition(self, transition: int) -> None:
        """Activate / deactivate the executor through its lifecycle service."""
        request = ChangeState.Request(transition=Transition(id=transition))
        if not self.call(ChangeState, f"{EXECUTOR}/change_state", request).success:
            raise ServiceError(f"{EXECUTOR} refused lifecycle transition {transition}")

    def resume(self) -> None:
        """Executor active, chunks published again (steps run from here on)."""
        self.executor_transition(Transition.TRANSITION_ACTIVATE)
        self.call(SetBool, f"{POLICY}/enable", SetBool.Request(data=True))
        self._paused = False

    def pause(self, timeout: float = 30.0) -> None:
        """Stop chunk publishing and wait until no step is in flight.

        The node's worker publishes one diagnostics row at the end of each iteration and
        starts no step while publishing is disabled, so the first row saying "disabled"
        that arrives after the switch ends every step the worker had begun; rows come in
        order from the one publisher, so the rows of those steps have arrived too. Without
        this wait a step in flight at the end of an episode was counted in the next one
        (a pruned step in an unpruned episode)."""
        if self._paused:
            return
        self.call(SetBool, f"{POLICY}/enable", SetBool.Request(data=False))
        self._disabled_row = False  # rows handled during the call may predate the switch
        if not self.spin_until(lambda: self._disabled_row, timeout):
            raise ServiceError(f"{POLICY} sent no diagnostics in {timeout:g} s after "
                               "chunk publishing was disabled")
        # the executor holds and drops what is left of the last chunk: nothing of this
        # episode runs after the bridge's reset
        self.executor_transition(Transition.TRANSITION_DEACTIVATE)
        self._paused = True

    def close(self) -> None:
        self._executor.shutdown()
        self.destroy_node()


# ------------------------------------------------------------------------------ episodes
def prune_parameters(configs: Sequence[str], defaults: Optional[Dict[str, Any]] = None
                     ) -> Dict[str, Dict[str, Any]]:
    """Per configuration, every ``prune.*`` value any selected configuration (or
    ``defaults``, the --prune values under every configuration) changes, the default where
    this one does not, so switching configurations leaves nothing behind."""
    from specprune import PruneConfig

    base = PruneConfig().updated(**(defaults or {}))
    touched = sorted({f for c in configs for f in CONFIGS[c][0]} | set(defaults or {}))
    values = {c: {f: CONFIGS[c][0].get(f, getattr(base, f)) for f in touched} for c in configs}
    return {c: {f"prune.{f}": list(v) if isinstance(v, tuple) else v for f, v in row.items()}
            for c, row in values.items()}


def config_layers(params: Dict[str, Dict[str, Any]], depth: int
                  ) -> Dict[str, Dict[str, List[int]]]:
    """Per configuration, the decoder layers where the node drops visual tokens by role
    (specprune.config.layer_roles, as the in-process runner records them), from the
    ``prune.*`` values this runner sets on the node (prune_parameters), read as the node
    reads them (parameters.prune_config), and the model's depth. With them the JSON says
    which layer-pruning layers acted, from the per-layer token counts the node reports."""
    return {c: layer_roles(prune_config(values), depth) for c, values in params.items()}


def step_record(values: Dict[str, str]) -> Optional[StepRecord]:
    """The step figures of one diagnostics row (policy_node.step_values: the visual tokens
    entering each decoder layer space-separated); None when a figure is missing or does not
    parse (a row before the first step has none)."""
    try:
        return StepRecord(step_ms=float(values["step_ms"]),
                          llm_ms=float(values.get("llm_ms", "nan")),
                          kept_visual_tokens=int(values["kept_visual_tokens"]),
                          visual_tokens_total=int(values["visual_tokens_total"]),
                          mode=values.get("mode", ""),
                          visual_tokens_per_layer=[
                              int(n) for n in values.get("visual_tokens_per_layer", "").split()])
    except (KeyError, ValueError):
        return None


def bridge_start(args: argparse.Namespace, seed: int) -> Dict[str, Any]:
    """The bridge's parameters that start episode ``seed``: its seed, or in a LIBERO claim
    run the benchmark's fixed initial state ``seed - CLAIM_SEED`` (as in process)."""
    if args.claim and libero_task(args.task):
        return {"reset_seed": -1, "reset_init_state": seed - CLAIM_SEED}
    return {"reset_seed": seed}


def ros_episode(monitor: EvalMonitor, params: Dict[str, Any], seed: int, horizon: int,
                run: ConfigRun, start: Optional[Dict[str, Any]] = None) -> EpisodeRecord:
    """One episode on ``seed`` (the bridge's parameters ``start``, default its reset_seed)
    through the nodes, with the ``prune.*`` values ``params``."""
    record = EpisodeRecord(seed=seed)
    monitor.pause()
    monitor.set_parameters(POLICY, params)
    monitor.trigger(f"{POLICY}/reset")
    monitor.set_parameters(BRIDGE, start or {"reset_seed": seed})
    # On a loaded machine the bridge served its reset up to 30 s late while its tick kept
    # publishing the previous episode's poses; counted, they ended the episode before its
    # first chunk (0 policy steps). Count from the reset's response instead.
    monitor.begin(math.inf, horizon)
    monitor.trigger(f"{BRIDGE}/reset")
    monitor.begin(monitor.now(), horizon)
    monitor.steps.clear()
    monitor.resume()
    limit = horizon / CONTROL_RATE_HZ * 6.0 + 60.0  # a bridge far behind wall time
    done = monitor.spin_until(
        lambda: monitor.success_tick is not None or monitor.ticks >= horizon, limit)
    monitor.pause()  # the episode's last step may still be running: its row counts here
    record.instruction = monitor.instruction
    record.success = monitor.success_tick is not None
    record.steps = monitor.success_tick if record.success else min(monitor.ticks, horizon)
    steps = list(monitor.steps)
    for step in steps:
        record.note_step(step)
    if not done:
        record.error = f"timeout: {monitor.ticks} ticks in {limit:.0f} s"
    run.steps.extend(steps)
    run.episodes.append(record)
    return record


def _start(module_args: List[str], env: Dict[str, str]) -> subprocess.Popen:
    """``python -m <module> <args>`` in the repository root."""
    return subprocess.Popen([sys.executable, "-m", *module_args], cwd=ROOT, env=env)


def _stop(proc: subprocess.Popen, timeout: float = 20.0) -> int:
    """SIGINT (the nodes' ordered shutdown), SIGTERM after ``timeout``; the exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.terminate()
            return proc.wait(timeout)
    return proc.returncode


def simulated_policy_command(model: str, *params: str, params_file: Optional[str] = None
                             ) -> List[str]:
    """``python -m`` arguments of a policy node for the simulator or synthetic inputs:
    config/policy.yaml (then ``params_file``, package-data relative, where given), active at
    once (no lifecycle manager here), a preset model allowed (nothing real moves), then
    each ``name:=value`` of ``params``."""
    cmd = ["specprune_ros.node.policy_node", "--ros-args",
           "--params-file", data_path("config/policy.yaml"),
           *(["--params-file", data_path(params_file)] if params_file else []),
           "-p", "autostart:=true", "-p", "allow_preset_model:=true", "-p", f"model:={model}"]
    for item in params:
        cmd += ["-p", item]
    return cmd


def _node_commands(args: argparse.Namespace) -> List[List[str]]:
    # what the task needs beyond the usual files (task_wiring, as sim_policy.launch.py):
    # on LIBERO its cameras and world frame for the bridge, the world frame and 256 px frames
    # for the node, the world frame and workspace for the executor; the episode length
    # stays ours (horizon below)
    wiring = task_wiring(args.task)
    bridge = ["specprune_ros.sim.sim_bridge_node", "--ros-args",
              "--params-file", data_path("config/sim_arm.yaml"),
              *(["--params-file", data_path(wiring.bridge_file)] if wiring.bridge_file
                else []),
              "-p", f"task:={args.task}",
              "-p", "horizon:=1000000000", "-p", f"seed:={args.seed}",
              "-p", "command_input:=twist", "-p", "publish_clock:=true",
              "-p", f"gripper_convention:={args.gripper_convention}"]
    policy = simulated_policy_command(
        args.policy, "ee_motion_source:=pose_topic", f"torch_threads:={args.threads}",
        f"device:={args.device}", f"dtype:={args.dtype}",
        f"inference_rate_hz:={2 * CONTROL_RATE_HZ / CHUNK}", "use_sim_time:=true",
        "reset_forgets_instruction:=true",  # the bridge publishes one per episode
        params_file=wiring.policy_file)
    executor = executor_command(args.executor_limits)
    if wiring.executor_file:  # its parameter files come before its -p overrides
        first_override = executor.index("-p")
        executor[first_override:first_override] = [
            "--params-file", data_path(wiring.executor_file)]
    return [bridge, policy, executor]


#: --executor-limits: which envelope the executor runs with over ROS
EXECUTOR_LIMITS = ("sim", "robot")


def executor_command(limits: str) -> List[str]:
    """The executor of the ROS evaluation: config/executor.yaml (the robot's limits), plus
    executor_sim.yaml's opened speed / acceleration limits with ``limits`` "sim". "robot"
    keeps the robot config's envelope and only waives its e-stop signal (the simulator has
    no e-stop to say false)."""
    if limits not in EXECUTOR_LIMITS:
        raise ValueError(f"executor limits {limits!r}: choose one of {EXECUTOR_LIMITS}")
    cmd = ["specprune_ros.node.executor_node", "--ros-args",
           "--params-file", data_path("config/executor.yaml")]
    if limits == "sim":
        cmd += ["--params-file", data_path("config/executor_sim.yaml")]
    else:
        cmd += ["-p", "require_estop_signal:=false"]
    return cmd + ["-p", "autostart:=true", "-p", "use_sim_time:=true", "-p", "output:=twist"]


def evaluate_ros(args: argparse.Namespace, startup_timeout: float = 300.0) -> Dict[str, Any]:
    """The evaluation through ROS; the same JSON as the direct runner."""
    configs = [c for c in args.configs if c not in IN_PROCESS_ONLY]
    if not configs:
        raise SystemExit("--via ros: fastv and random are not available through the policy "
                         "node")
    params = prune_parameters(configs, dict(args.prune))
    seeds = list(args.seeds)
    env = dict(os.environ)
    env.setdefault("ROS_DOMAIN_ID", str(50 + os.getpid() % 50))
    env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.update({k: env[k] for k in ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE")})
    procs = [_start(cmd, env) for cmd in _node_commands(args)]
    rclpy.init()
    monitor = EvalMonitor(procs)
    layers = config_layers(params, decoder_depth(args.policy))
    runs = {c: ConfigRun(c, dict(CONFIGS[c][0]), layers=layers[c]) for c in configs}
    journal = (Journal.open(args.resume, args.journal_key, runs, seeds,
                            info=attempt_info(machine(args.threads, args.device, args.dtype)))
               if args.resume else None)
    start = time.monotonic()
    try:
        # both services answer once the sim runs and the node has loaded its model
        monitor.call(Trigger, f"{BRIDGE}/reset", Trigger.Request(), startup_timeout)
        monitor.call(SetBool, f"{POLICY}/enable", SetBool.Request(data=False), startup_timeout)
        # services answer before the node's subscriptions have matched the bridge's
        # publishers; on a loaded 2-core machine that took seconds, and the first episode
        # ran out of ticks before the node had seen a camera frame (0 policy steps)
        if not monitor.spin_until(monitor.ready, startup_timeout):
            raise SystemExit(f"{POLICY} is not ready after {startup_timeout:g} s: "
                             f"{monitor.node_status or 'no diagnostics'}")
        for i, seed in enumerate(seeds):
            for config in configs:
                if journal and (seed, config) in journal.done:
                    continue
                began, first_step = time.monotonic(), len(runs[config].steps)
                try:
                    rec = ros_episode(monitor, params[config], seed, args.horizon, runs[config],
                                      bridge_start(args, seed))
                except ServiceError as exc:  # this episode fails; a dead node ends the run
                    rec = EpisodeRecord(seed=seed, error=str(exc))
                    runs[config].episodes.append(rec)
                if journal:
                    journal.record(config, rec, runs[config].steps[first_step:],
                                   monitor.counters(), time.monotonic() - began)
                print(f"[{i + 1}/{len(seeds)}] seed {seed} {config} (ros): "
                      f"{'success' if rec.success else rec.error or 'failure'} after "
                      f"{rec.steps} ticks, {rec.policy_steps} policy steps", flush=True)
    finally:
        monitor.close()
        rclpy.shutdown()
        codes = [_stop(p) for p in reversed(procs)]
    host = machine(args.threads, args.device, args.dtype)
    if journal:  # every attempt's episodes, wall time and counters
        in_seed_order(runs, seeds)
        wall_s, counters = journal.wall_s, {n: journal.summed_counters(n) for n in
                                            ("executor", "policy_node")}
    else:
        wall_s, counters = time.monotonic() - start, monitor.counters()
    meta = run_meta(args, seeds, wall_s, host)
    meta.update(notes=NOTES, node_exit_codes=dict(zip(("executor", "policy", "sim"), codes)),
                executor_limits=args.executor_limits,
                executor_counters=counters["executor"],
                policy_node_counters=counters["policy_node"],
                configs_skipped=[c for c in args.configs if c not in configs])
    note_attempts(meta, journal)
    return summarize(runs, meta, [])
