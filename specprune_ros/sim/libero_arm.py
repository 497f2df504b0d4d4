"""A LIBERO task behind SimArm's interface, so code written for the simulated arm (the
in-process evaluation runner, the bridge's control loop) can drive a LIBERO worker. No ROS.

Differences from SimArm, on purpose:

- frames are the protocol's: both views rotated 180 degrees, as OpenVLA-OFT's LIBERO
  checkpoints were trained on (libero_protocol.flip_180);
- poses are reported in LIBERO's world frame with an identity ``base_pos`` / ``base_quat``, so
  ``proprio_in_base()`` equals the protocol's 8-D state (LIBERO's datasets and checkpoints use
  the world frame; the robot's true base pose is in ``extras['robot_base_pos' / '_quat']``);
- ``reset(seed)`` draws a development initial state; ``reset_to_init_state(i)`` loads the
  benchmark's fixed state ``i`` (the claim set; the exact claim loop is libero_protocol's);
  either then runs the protocol's ``settle_ticks`` no-op ticks (unrendered, not counted in
  the horizon) so that the first observation is the one openvla-oft's policy first sees;
- ``extras`` holds every object's ``<name>_pos`` / ``_quat`` (privileged; never a policy input).

A task is named ``<suite>:<index>`` wherever our tasks are named (``specprune-eval --task
libero_spatial:0``, the bridge's ``task`` parameter): ``libero_task`` parses that.

Usage::

    with LiberoArm(LiberoArmConfig(suite="libero_object", task=0)) as arm:
        obs = arm.reset(seed=1000)
        obs = arm.step(action, render=False)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Tuple

import numpy as np

from specprune.config import check_value

from specprune_ros.sim.libero_env import LiberoStep, LiberoWorker, LiberoWorkerConfig
from specprune_ros.sim.libero_protocol import (DUMMY_ACTION, ENV_IMAGE_SIZE, ENV_SEED,
                                               NUM_STEPS_WAIT, SUITE_MAX_STEPS, flip_180)
from specprune_ros.sim.libero_worker import VIEWS
from specprune_ros.sim.sim_arm import JOINT_NAMES, SimObservation, validate_action

#: LIBERO's control rate (robosuite control_freq in LIBERO's ControlEnv).
CONTROL_RATE_HZ = 20.0
#: How a LIBERO task is named among our tasks: ``<suite>:<task index>``.
TASK_NAME_FORMAT = "<suite>:<index>, e.g. libero_spatial:0"


def libero_task(name: str) -> Optional[Tuple[str, int]]:
    """``(suite, task index)`` of a task named ``<suite>:<index>`` (a LIBERO suite's name
    starts with ``libero``), None for any other task name (our own, e.g. pick_color);
    ValueError for a name with a colon that is not that."""
    if ":" not in name:
        return None
    suite, _, index = name.partition(":")
    if not suite.startswith("libero") or not index.isdigit():
        raise ValueError(f"task {name!r}: a LIBERO task is named {TASK_NAME_FORMAT}")
    return suite, int(index)


#: Tasks per suite, in LIBERO's benchmark (``<suite>:all`` names every one of them).
SUITE_TASKS = {"libero_spatial": 10, "libero_object": 10, "libero_goal": 10, "libero_10": 10,
               "libero_90": 90}


def libero_tasks(name: str) -> Optional[Tuple[str, Tuple[int, ...]]]:
    """``(suite, task indices)`` of ``<suite>:<index>``, or of ``<suite>:all`` (every task of
    the suite in the benchmark's order, as the paper's per-suite success); None for our own
    tasks; ValueError for a name that is neither."""
    suite, _, which = name.partition(":")
    if which == "all":
        if suite not in SUITE_TASKS:
            raise ValueError(f"task {name!r}: <suite>:all needs one of {sorted(SUITE_TASKS)}")
        return suite, tuple(range(SUITE_TASKS[suite]))
    named = libero_task(name)
    return None if named is None else (named[0], (named[1],))


def suite_horizon(suite: str) -> int:
    """The protocol's policy ticks per episode of ``suite`` (openvla-oft's limits)."""
    if suite not in SUITE_MAX_STEPS:
        raise ValueError(f"suite {suite!r}: no step limit known (one of "
                         f"{sorted(SUITE_MAX_STEPS)})")
    return SUITE_MAX_STEPS[suite]


@dataclass(frozen=True)
class LiberoArmConfig:
    """Which LIBERO task, at which camera size, with how many ticks per episode."""

    suite: str = "libero_spatial"
    task: int = 0
    camera_size: int = ENV_IMAGE_SIZE
    horizon: int = 300
    cameras: Tuple[str, ...] = VIEWS
    settle_ticks: int = NUM_STEPS_WAIT

    def __post_init__(self) -> None:
        check_value("LiberoArmConfig", "task", self.task, int, 0, None)
        check_value("LiberoArmConfig", "settle_ticks", self.settle_ticks, int, 0, None)
        check_value("LiberoArmConfig", "camera_size", self.camera_size, int, 16, 2048)
        check_value("LiberoArmConfig", "horizon", self.horizon, int, 1, None)
        if not set(self.cameras) <= set(VIEWS) or not self.cameras:
            raise ValueError(f"LiberoArmConfig.cameras={self.cameras!r}: must be a non-empty "
                             f"subset of {VIEWS}")

    @property
    def control_rate_hz(self) -> float:
        """Control ticks per simulated second (fixed by LIBERO)."""
        return CONTROL_RATE_HZ


class LiberoArm:
    """SimArm's reset / step / observe / success over a LIBERO worker process."""

    def __init__(self, config: Optional[LiberoArmConfig] = None,
                 worker_config: Optional[LiberoWorkerConfig] = None) -> None:
        self.config = config or LiberoArmConfig()
        self.worker = LiberoWorker(worker_config)
        try:
            self.info = self.worker.make(self.config.suite, self.config.task,
                                         camera_size=self.config.camera_size, seed=ENV_SEED)
        except Exception:
            self.worker.close()
            raise
        self._steps = 0
        self._last: Optional[SimObservation] = None
        self._state: Optional[LiberoStep] = None

    @property
    def instruction(self) -> str:
        """The task's language, as openvla-oft gives it to the policy."""
        return str(self.info["language"])

    @property
    def done(self) -> bool:
        """True once the episode has run ``config.horizon`` ticks."""
        return self._steps >= self.config.horizon

    @property
    def dt(self) -> float:
        """Simulated seconds per control tick."""
        return 1.0 / CONTROL_RATE_HZ

    @property
    def last_observation(self) -> Optional[SimObservation]:
        """The observation of the latest reset / step / observe."""
        return self._last

    def reset(self, seed: Optional[int] = None) -> SimObservation:
        """A development initial state (LIBERO's sampler seeded with ``seed``), settled and
        rendered."""
        return self._settle(self.worker.reset(seed=seed))

    def reset_to_init_state(self, index: int) -> SimObservation:
        """The benchmark's fixed initial state ``index``, settled and rendered."""
        return self._settle(self.worker.set_init_state(index))

    def _settle(self, state: LiberoStep) -> SimObservation:
        """The protocol's no-op ticks (nothing rendered), then the first observation."""
        self._steps = 0
        for _ in range(self.config.settle_ticks):
            state = self.worker.step(DUMMY_ACTION)
        self._state = state
        return self.observe()

    def step(self, action: Any, render: bool = True) -> SimObservation:
        """One tick; ``render`` renders the configured cameras on this tick."""
        clipped = validate_action(action)
        if self.done:
            raise RuntimeError(f"episode reached its horizon ({self.config.horizon} steps): "
                               "call reset()")
        step = self.worker.step(clipped, views=self.config.cameras if render else ())
        self._steps += 1
        return self._observe(step, step.images)

    def observe(self) -> SimObservation:
        """The current state with the cameras rendered (no time passes)."""
        if self._state is None:
            return self.reset()
        return self._observe(self._state, self.worker.render(self.config.cameras))

    def success(self) -> bool:
        """Whether the task's BDDL goal holds now."""
        return bool(self._last.success) if self._last is not None else False

    def close(self) -> None:
        """Stop the worker."""
        self.worker.close()

    def __enter__(self) -> "LiberoArm":
        """Use as a context manager that closes the arm on exit."""
        return self

    def __exit__(self, *exc: Any) -> None:
        """Close the arm."""
        self.close()

    def _observe(self, step: LiberoStep, frames) -> SimObservation:
        obs = step.obs
        extras = {k: np.asarray(v) for k, v in obs.items()
                  if (k.endswith("_pos") or k.endswith("_quat")) and not k.startswith("robot0_")}
        extras["robot_base_pos"] = obs["robot0_base_pos"]
        extras["robot_base_quat"] = obs["robot0_base_quat"]
        self._last = SimObservation(
            images={v: flip_180(frames[v]) for v in self.config.cameras if v in frames},
            joint_names=JOINT_NAMES,
            joint_positions=np.concatenate([obs["robot0_joint_pos"], step.gripper_qpos]),
            joint_velocities=np.concatenate([obs["robot0_joint_vel"],
                                             obs["robot0_gripper_qvel"]]),
            eef_pos=np.array(step.eef_pos, dtype=np.float64),
            eef_quat=np.array(step.eef_quat, dtype=np.float64),
            gripper_qpos=np.array(step.gripper_qpos, dtype=np.float64),
            base_pos=np.zeros(3), base_quat=np.array([0.0, 0.0, 0.0, 1.0]),
            sim_time=step.timestep * self.dt, success=step.success, step=self._steps,
            extras=extras)
        self._state = step
        return self._last
