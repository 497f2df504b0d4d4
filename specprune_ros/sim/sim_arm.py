"""A simulated Panda arm (robosuite / MuJoCo) with the LIBERO action space. No ROS imports.

Action: ``[dx, dy, dz, droll, dpitch, dyaw, gripper]`` in [-1, 1]: robosuite's OSC_POSE
controller in delta mode, input frame = robot base (scaled to at most 5 cm and 0.5 rad per
control tick by robosuite's default Panda config); gripper -1 opens, +1 closes. This is the
action space LIBERO, and therefore OpenVLA-OFT's LIBERO checkpoints, were trained in.

Usage::

    arm = SimArm(SimArmConfig(task="lift"))
    obs = arm.reset(seed=0)
    obs = arm.step(np.array([0.5, 0, 0, 0, 0, 0, -1.0]))
    obs.images["agentview"]  # (224, 224, 3) uint8, upright RGB
    obs.proprio_libero()     # (8,) eef pos + axis-angle + gripper qpos
    arm.close()
"""
from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Tuple

import numpy as np

from specprune_ros.sim.patch_projection import MIN_DEPTH
from specprune_ros.sim.tabletop_suites import TABLETOP_TASKS

ACTION_DIM = 7
ACTION_NAMES: Tuple[str, ...] = ("x", "y", "z", "roll", "pitch", "yaw", "gripper")
GRIPPER_OPEN = -1.0
GRIPPER_CLOSE = 1.0
#: ROS (franka_description) names of the joints, in the order of SimObservation's arrays.
JOINT_NAMES: Tuple[str, ...] = tuple(f"panda_joint{i}" for i in range(1, 8)) + (
    "panda_finger_joint1", "panda_finger_joint2")
#: robosuite's MuJoCo timestep (robosuite.macros.SIMULATION_TIMESTEP): caps the control rate.
_MAX_CONTROL_RATE_HZ = 500.0
_WRIST_CAMERA = "robot0_eye_in_hand"


@dataclass(frozen=True)
class TaskSpec:
    """One simulated task: the robosuite environment and the instruction that describes it
    (tasks whose environment draws its own instruction per episode override it)."""

    env_name: str
    instruction: str
    env_kwargs: Tuple[Tuple[str, Any], ...] = ()


#: Tasks by name. Lift's cube already carries robosuite's red "WoodRed" material (rgba
#: 1 0 0 1), so "red cube" is true without touching the model.
#: pick_color (sim_tasks.PickColorCube) names one of three cubes per episode.
#: sim_<suite>_<i>: the LIBERO-shaped suites (tabletop_suites, tabletop_scene.TabletopScene).
TASKS: Dict[str, TaskSpec] = {
    "lift": TaskSpec(env_name="Lift", instruction="pick up the red cube"),
    "pick_color": TaskSpec(env_name="PickColorCube", instruction="pick up the red cube"),
    **{name: TaskSpec(env_name="TabletopScene", instruction=task.instruction,
                      env_kwargs=(("task_name", name),))
       for name, task in TABLETOP_TASKS.items()},
}


def _check(ok: bool, name: str, value: Any, requirement: str) -> None:
    """Raise ValueError naming the config field and its value unless ``ok``."""
    if not ok:
        raise ValueError(f"SimArmConfig.{name}={value!r}: {requirement}")


def _is_int(value: Any) -> bool:
    """True for Python / numpy integers, False for bools."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


@dataclass(frozen=True)
class SimArmConfig:
    """Settings of the simulated arm, validated on construction.

    task: key of TASKS. camera_size: square render size in pixels (OpenVLA-OFT uses 224).
    control_rate_hz: policy/control ticks per simulated second (robosuite control_freq; LIBERO
    uses 20). horizon: control ticks per episode before ``done``. seed: seed of the first
    episode (None: random). cameras: robosuite camera names to render, each returned under its
    own name. fast_render: turn off shadows, reflections, skybox and multisampling (about 2x
    faster on a CPU renderer, at some loss of fidelity against LIBERO's renders).
    """

    task: str = "lift"
    camera_size: int = 224
    control_rate_hz: float = 20.0
    horizon: int = 1000
    seed: Optional[int] = 0
    cameras: Tuple[str, ...] = ("agentview", _WRIST_CAMERA)
    fast_render: bool = True

    def __post_init__(self) -> None:
        _check(self.task in TASKS, "task", self.task, f"must be one of {sorted(TASKS)}")
        _check(_is_int(self.camera_size) and 16 <= self.camera_size <= 2048,
               "camera_size", self.camera_size, "must be an int in [16, 2048]")
        rate = self.control_rate_hz
        _check(isinstance(rate, (int, float)) and not isinstance(rate, bool)
               and math.isfinite(rate) and 0.0 < rate <= _MAX_CONTROL_RATE_HZ,
               "control_rate_hz", rate, f"must be a number in (0, {_MAX_CONTROL_RATE_HZ:g}]")
        _check(_is_int(self.horizon) and self.horizon >= 1, "horizon", self.horizon,
               "must be an int >= 1")
        _check(self.seed is None or (_is_int(self.seed) and self.seed >= 0), "seed",
               self.seed, "must be None or an int >= 0")
        _check(isinstance(self.cameras, tuple) and len(self.cameras) > 0
               and all(isinstance(c, str) and c for c in self.cameras)
               and len(set(self.cameras)) == len(self.cameras),
               "cameras", self.cameras, "must be a non-empty tuple of distinct camera names")
        _check(isinstance(self.fast_render, bool), "fast_render", self.fast_render,
               "must be a bool")

    @property
    def instruction(self) -> str:
        """Default language instruction of the task (SimArm.instruction: the episode's)."""
        return TASKS[self.task].instruction


def quat_to_axis_angle(quat_xyzw: np.ndarray) -> np.ndarray:
    """Axis-angle (3,) of an (x, y, z, w) quaternion, as LIBERO's quat2axisangle computes it.

    angle = 2 acos(w) in [0, 2 pi] (no hemisphere flip, like LIBERO), axis = xyz / sin(angle/2);
    returns zeros for the identity rotation.
    """
    q = np.asarray(quat_xyzw, dtype=np.float64)
    w = float(np.clip(q[3], -1.0, 1.0))
    sin_half = math.sqrt(1.0 - w * w)
    if math.isclose(sin_half, 0.0):
        return np.zeros(3)
    return q[:3] * (2.0 * math.acos(w) / sin_half)


def _libero_state(pos: np.ndarray, quat: np.ndarray, fingers: np.ndarray) -> np.ndarray:
    """LIBERO's 8-D proprio order: position, axis-angle of the (x, y, z, w) quaternion,
    the two finger joints."""
    return np.concatenate([pos, quat_to_axis_angle(quat), fingers]).astype(np.float64)


def _quat_conj(q: np.ndarray) -> np.ndarray:
    """Conjugate (= inverse for unit quaternions) of an (x, y, z, w) quaternion."""
    return np.array([-q[0], -q[1], -q[2], q[3]])


def _quat_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product of two (x, y, z, w) quaternions."""
    ax, ay, az, aw = a
    bx, by, bz, bw = b
    return np.array([
        aw * bx + ax * bw + ay * bz - az * by,
        aw * by - ax * bz + ay * bw + az * bx,
        aw * bz + ax * by - ay * bx + az * bw,
        aw * bw - ax * bx - ay * by - az * bz,
    ])


def _rotate(q: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Rotate vector v (3,) by the (x, y, z, w) quaternion q."""
    p = _quat_mul(_quat_mul(q, np.append(v, 0.0)), _quat_conj(q))
    return p[:3]


@dataclass
class SimObservation:
    """One snapshot of the simulated arm. Poses are in the world frame unless named _base.

    images: camera name -> (H, W, 3) uint8 upright RGB. joint_*: arrays ordered as
    joint_names (7 arm joints then 2 finger joints). eef_pos / eef_quat (x, y, z, w): the end
    effector as LIBERO reads it (grip-site position, hand orientation). base_pos / base_quat:
    the robot base in the world. gripper_qpos: the two finger joints.
    """

    images: Dict[str, np.ndarray]
    joint_names: Tuple[str, ...]
    joint_positions: np.ndarray  # (9,)
    joint_velocities: np.ndarray  # (9,)
    eef_pos: np.ndarray  # (3,) world
    eef_quat: np.ndarray  # (4,) x, y, z, w, world
    gripper_qpos: np.ndarray  # (2,)
    base_pos: np.ndarray  # (3,) world
    base_quat: np.ndarray  # (4,) x, y, z, w, world
    sim_time: float
    success: bool
    step: int = 0
    extras: Dict[str, np.ndarray] = field(default_factory=dict)

    def proprio_libero(self) -> np.ndarray:
        """(8,) state as LIBERO / OpenVLA-OFT build it: eef pos, axis-angle(eef quat), fingers."""
        return _libero_state(self.eef_pos, self.eef_quat, self.gripper_qpos)

    def proprio_in_base(self) -> np.ndarray:
        """(8,) LIBERO-ordered state with the pose in the robot base frame, as a real arm (and
        the policy node, from its ee_pose topic) reports it: eef pos, axis-angle, fingers."""
        pos, quat = self.eef_pose_in_base()
        return _libero_state(pos, quat, self.gripper_qpos)

    def point_in_base(self, point_world: np.ndarray) -> np.ndarray:
        """A world point (3,) in the robot base frame."""
        return _rotate(_quat_conj(self.base_quat), np.asarray(point_world) - self.base_pos)

    def eef_pose_in_base(self) -> Tuple[np.ndarray, np.ndarray]:
        """End-effector (position (3,), quaternion (x, y, z, w)) in the robot base frame."""
        pos = self.point_in_base(self.eef_pos)
        quat = _quat_mul(_quat_conj(self.base_quat), self.eef_quat)
        return pos, quat / np.linalg.norm(quat)


def validate_action(action: Any) -> np.ndarray:
    """Return the action as a float64 (7,) array clipped to [-1, 1]; ValueError if malformed."""
    try:
        arr = np.asarray(action, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"action must be {ACTION_DIM} numbers, got {action!r}") from exc
    if arr.shape != (ACTION_DIM,):
        raise ValueError(f"action must have shape ({ACTION_DIM},), got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"action has non-finite values: {arr.tolist()}")
    return np.clip(arr, -1.0, 1.0)


def _import_robosuite() -> Any:
    """Import robosuite with an offscreen GL backend chosen (EGL unless MUJOCO_GL is set)."""
    # Mesa's EGL renders on the CPU here; robosuite would pick EGL too. Must precede the import.
    os.environ.setdefault("MUJOCO_GL", "egl")
    import robosuite

    # registers the project's tasks with robosuite
    from specprune_ros.sim import sim_tasks, tabletop_scene  # noqa: F401
    return robosuite


def _make_env(config: SimArmConfig) -> Any:
    """Build the robosuite environment: Panda, OSC_POSE delta control, offscreen cameras."""
    robosuite = _import_robosuite()
    from robosuite.controllers import load_composite_controller_config

    # robosuite 1.5's default Panda controller: BASIC composite whose arm part is OSC_POSE,
    # delta input in the base frame, output scaled to 0.05 m / 0.5 rad, GRIP gripper.
    controller = load_composite_controller_config(robot="Panda")
    size = int(config.camera_size)
    return robosuite.make(
        TASKS[config.task].env_name,
        robots="Panda",
        controller_configs=controller,
        has_renderer=False,
        has_offscreen_renderer=True,
        use_camera_obs=True,
        use_object_obs=True,
        camera_names=list(config.cameras),
        camera_heights=size,
        camera_widths=size,
        control_freq=float(config.control_rate_hz),
        horizon=int(config.horizon),
        ignore_done=True,  # SimArm tracks the horizon itself; robosuite would raise instead
        hard_reset=False,  # keep the model, sim and GL context across episodes
        reward_shaping=False,
        seed=config.seed,
        **dict(TASKS[config.task].env_kwargs),
    )


def _release_gl_thread() -> None:
    """Unbind the calling thread's GL context so that another thread may bind it (EGL only;
    OSMesa binds per call and needs no release)."""
    if os.environ.get("MUJOCO_GL", "").lower() == "egl":
        from OpenGL import EGL

        EGL.eglReleaseThread()


def _apply_fast_render(env: Any) -> None:
    """Turn off shadows, reflections, skybox and multisampling of the offscreen renderer."""
    import mujoco

    ctx = env.sim._render_context_offscreen
    for flag in (mujoco.mjtRndFlag.mjRND_SHADOW, mujoco.mjtRndFlag.mjRND_REFLECTION,
                 mujoco.mjtRndFlag.mjRND_SKYBOX):
        ctx.scn.flags[flag] = 0
    env.sim.model._model.vis.quality.offsamples = 0
    ctx.con.free()  # the GL buffers are sized for multisampling: rebuild them
    ctx._set_mujoco_context_and_buffers()


class SimArm:
    """A robosuite Panda task driven by LIBERO-style delta end-effector actions.

    Not thread-safe, but callable from any thread one call at a time: every call that renders
    binds the GL context to the calling thread and releases it afterwards (an executor's
    worker threads may take turns).
    """

    def __init__(self, config: Optional[SimArmConfig] = None) -> None:
        self.config = config if config is not None else SimArmConfig()
        self._env = _make_env(self.config)
        self._check_cameras()
        # the views are rendered by _render_views when asked, never through robosuite's
        # camera observables: toggling those per tick left the first frame after a pause
        # black and every later one a tick old (their sampling timers restart on enable)
        for camera in self.config.cameras:
            self._env.modify_observable(f"{camera}_image", "enabled", False)
            self._env.modify_observable(f"{camera}_image", "active", False)
        if self.config.fast_render:
            _apply_fast_render(self._env)
        _release_gl_thread()
        self._steps = 0
        self._last: Optional[SimObservation] = None
        self._closed = False

    # ------------------------------------------------------------------ public API
    @property
    def instruction(self) -> str:
        """This episode's language instruction, e.g. "pick up the red cube"."""
        return str(getattr(self._env, "instruction", self.config.instruction))

    @property
    def goal(self) -> List[List[str]]:
        """This episode's goal as LIBERO's BDDL goals are read (``[["on", obj, target],
        ...]``, what ``libero_experts.expert_for`` takes); empty for a task without one
        (pick_color, lift)."""
        return [list(part) for part in getattr(self._env, "goal", ())]

    def goal_progress(self) -> Tuple[List[bool], List[bool]]:
        """Per part of the goal: whether it holds now, and whether its object is in the
        gripper (a tabletop suite's scene; ValueError for a task without a goal)."""
        scene = self._env
        if not self.goal or not hasattr(scene, "part_holds"):
            raise ValueError(f"task {self.config.task!r} has no goal parts to check")
        return ([scene.part_holds(*part) for part in self.goal],
                [scene.grasped(part[1]) for part in self.goal])

    @property
    def done(self) -> bool:
        """True once the episode has run ``config.horizon`` control ticks."""
        return self._steps >= self.config.horizon

    @property
    def dt(self) -> float:
        """Simulated seconds per control tick."""
        return 1.0 / float(self.config.control_rate_hz)

    def reset(self, seed: Optional[int] = None) -> SimObservation:
        """Start a new episode; ``seed`` (default: config.seed for the first episode, else
        the generator's continuing stream) makes the initial state reproducible."""
        self._ensure_open()
        if seed is None and self._last is None:
            seed = self.config.seed
        if seed is not None:
            if not _is_int(seed) or seed < 0:
                raise ValueError(f"seed must be an int >= 0, got {seed!r}")
            self._reseed(int(seed))
        self._steps = 0
        with self._gl_bound():
            raw = self._env.reset()
            views = self._render_views()
        return self._observe(raw, views)

    def step(self, action: np.ndarray, render: bool = True) -> SimObservation:
        """Apply one action for one control tick; ValueError on a wrong shape or non-finite.

        ``render=False`` skips the cameras (most of a tick's cost on a CPU renderer): the
        observation's ``images`` is then empty; ``observe()`` renders the current state.
        """
        self._ensure_open()
        clipped = validate_action(action)
        if self._last is None:
            self.reset()
        if self.done:
            raise RuntimeError(f"episode reached its horizon ({self.config.horizon} steps): "
                               "call reset()")
        with self._gl_bound():
            raw, _, _, _ = self._env.step(clipped)
            views = self._render_views() if render else {}
        self._steps += 1
        return self._observe(raw, views)

    def observe(self) -> SimObservation:
        """The current state with every camera rendered (no simulated time passes)."""
        self._ensure_open()
        if self._last is None:
            return self.reset()
        with self._gl_bound():
            raw = self._env._get_observations()  # the step's values: no time passed
            views = self._render_views()
        return self._observe(raw, views)

    def success(self) -> bool:
        """Whether the task is currently solved (robosuite's _check_success)."""
        self._ensure_open()
        return bool(self._env._check_success())

    def project(self, camera: str, point_world: np.ndarray) -> Tuple[float, float]:
        """(row, col) where a world point appears in ``camera``'s upright image (pinhole);
        NaN for a point behind the camera (or within MIN_DEPTH of its plane)."""
        self._ensure_open()
        model, data = self._env.sim.model, self._env.sim.data
        cam = model.camera_name2id(camera)
        axes = np.array(data.cam_xmat[cam]).reshape(3, 3)  # columns: right, up, backward
        x, y, z = axes.T @ (np.asarray(point_world, dtype=np.float64) - data.cam_xpos[cam])
        if -z < MIN_DEPTH:
            return math.nan, math.nan
        size = float(self.config.camera_size)
        focal = 0.5 * size / math.tan(math.radians(float(model.cam_fovy[cam])) / 2.0)
        return 0.5 * size - focal * y / -z, 0.5 * size + focal * x / -z

    @property
    def last_observation(self) -> Optional[SimObservation]:
        """The observation returned by the latest reset() or step()."""
        return self._last

    def close(self) -> None:
        """Free the simulator and its GL context; further calls raise RuntimeError."""
        if not self._closed:
            self._closed = True
            self._env.close()

    def __enter__(self) -> "SimArm":
        """Use as a context manager that closes the arm on exit."""
        return self

    def __exit__(self, *exc: Any) -> None:
        """Close the arm."""
        self.close()

    # ------------------------------------------------------------------ internals
    @contextlib.contextmanager
    def _gl_bound(self) -> Iterator[None]:
        """Bind the offscreen GL context to the calling thread for the duration."""
        self._env.sim._render_context_offscreen.gl_ctx.make_current()
        try:
            yield
        finally:
            _release_gl_thread()

    def _ensure_open(self) -> None:
        """Raise RuntimeError once close() was called."""
        if self._closed:
            raise RuntimeError("SimArm is closed")

    def _check_cameras(self) -> None:
        """ValueError (after freeing the env) if a configured camera is not in the model."""
        known = set(self._env.sim.model.camera_names)
        missing = [c for c in self.config.cameras if c not in known]
        if missing:
            self._env.close()
            raise ValueError(f"SimArmConfig.cameras={self.config.cameras!r}: unknown "
                             f"{missing}; the model has {sorted(known)}")

    def _render_views(self) -> Dict[str, np.ndarray]:
        """Every configured camera's (H, W, 3) uint8 upright RGB view of the current state
        (MuJoCo renders bottom row first). Call with the GL context bound."""
        size, sim = int(self.config.camera_size), self._env.sim
        return {cam: np.ascontiguousarray(
                    sim.render(camera_name=cam, width=size, height=size, depth=False)[::-1])
                for cam in self.config.cameras}

    def _privileged_state(self, raw: Dict[str, Any]) -> Dict[str, np.ndarray]:
        """Object state for scripted experts and tests (never given to the policy)."""
        extras = {k: np.array(raw[k]) for k in ("cube_pos", "cube_quat") if k in raw}
        cube_pose = getattr(self._env, "cube_pose", None)
        scene_state = getattr(self._env, "scene_state", None)
        if scene_state is not None:  # a tabletop suite: every object, target = goal's first
            extras.update(scene_state())
            first = self.goal[0][1]
            extras["target_pos"] = extras[f"{first}_pos"]
            extras["target_quat"] = extras[f"{first}_quat"]
        elif cube_pose is not None:
            for color in self._env.cubes:
                extras[f"{color}_cube_pos"], extras[f"{color}_cube_quat"] = cube_pose(color)
            target = self._env.target_color
            extras["target_pos"] = extras[f"{target}_cube_pos"]
            extras["target_quat"] = extras[f"{target}_cube_quat"]
        elif "cube_pos" in extras:
            extras["target_pos"], extras["target_quat"] = extras["cube_pos"], extras["cube_quat"]
        return extras

    def _reseed(self, seed: int) -> None:
        """Reseed, in place, the generator shared by robosuite's robot and object samplers."""
        self._env.rng.bit_generator.state = np.random.PCG64(seed).state

    def _base_pose(self) -> Tuple[np.ndarray, np.ndarray]:
        """World (position, (x, y, z, w) quaternion) of the robot's base body."""
        sim = self._env.sim
        body = sim.model.body_name2id(self._env.robots[0].robot_model.root_body)
        wxyz = np.array(sim.data.body_xquat[body], dtype=np.float64)
        return np.array(sim.data.body_xpos[body], dtype=np.float64), np.roll(wxyz, -1)

    def _observe(self, raw: Dict[str, Any], views: Dict[str, np.ndarray]) -> SimObservation:
        """Build (and remember) a SimObservation from robosuite's observation dict and the
        views rendered for it (empty: none)."""
        gripper_qpos = np.array(raw["robot0_gripper_qpos"], dtype=np.float64)
        base_pos, base_quat = self._base_pose()
        obs = SimObservation(
            images=views,
            joint_names=JOINT_NAMES,
            joint_positions=np.concatenate([raw["robot0_joint_pos"], gripper_qpos]),
            joint_velocities=np.concatenate([raw["robot0_joint_vel"],
                                             raw["robot0_gripper_qvel"]]),
            eef_pos=np.array(raw["robot0_eef_pos"], dtype=np.float64),
            # robot0_eef_quat (hand body, x y z w) is the key LIBERO's datasets were built from
            eef_quat=np.array(raw["robot0_eef_quat"], dtype=np.float64),
            gripper_qpos=gripper_qpos,
            base_pos=base_pos,
            base_quat=base_quat,
            sim_time=float(self._env.sim.data.time),
            success=self.success(),
            step=self._steps,
            extras=self._privileged_state(raw),
        )
        self._last = obs
        return obs
