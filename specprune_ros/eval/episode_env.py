"""What the in-process runner needs of a simulator: ``EpisodeEnv``, and our arm behind it.

The runner (episodes.DirectRunner) resets an environment to an episode, asks for a rendered
``Frame`` when the policy steps and executes the chunk's actions one tick at a time without
rendering. Any environment that gives these three calls can be evaluated with every
configuration, the paired statistics and the claim rules of specprune-eval: ``SimArmEnv``
wraps our robosuite arm; ``LiberoArmEnv`` a LIBERO task (libero_arm.LiberoArm over its
worker): every reset runs the protocol's 10 no-op ticks, frames are rotated as openvla-oft's
get_libero_image, proprio is LIBERO's world-frame state, success is the environment's;
episodes are development seeds drawn by LIBERO's placement sampler, and in a claim run the
benchmark's fixed initial states (``reset_to_init_state``). ``open_env`` opens the one a
task name asks for (``pick_color``, ``lift``, ``libero_spatial:0``...).
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator, Optional, Protocol, Sequence, Tuple

import numpy as np

from specprune_ros.eval.eval_results import GoalProgress
from specprune_ros.sim.libero_arm import (LiberoArm, LiberoArmConfig, libero_tasks,
                                          suite_horizon)
from specprune_ros.sim.libero_protocol import (GRIPPER_CONVENTIONS, INIT_STATES_PER_TASK,
                                               gripper_to_env)
from specprune_ros.sim.sim_arm import SimArm, SimArmConfig, SimObservation
from specprune_ros.sim.tabletop_suites import tabletop_task

#: Control ticks per episode on our own tasks unless asked otherwise.
SIM_HORIZON = 150

#: Camera of each model view: view 0 third person, view 1 wrist (LIBERO's order).
VIEWS = ("agentview", "robot0_eye_in_hand")


@dataclass(frozen=True)
class Frame:
    """One tick as the runner sees it. ``images``: one (H, W, 3) uint8 array per model view
    (None on a tick that was not rendered); ``proprio``: the raw state the policy takes;
    ``ee_pose``: end-effector position (3,) and quaternion (x, y, z, w) in the frame the
    motion is measured in; ``stamp``: simulated seconds; ``success``: the task is done;
    ``progress``: how far the goal is (None where the environment cannot tell)."""

    images: Optional[Sequence[np.ndarray]]
    proprio: np.ndarray
    ee_pose: Tuple[np.ndarray, np.ndarray]
    stamp: float
    success: bool
    progress: Optional[GoalProgress] = None


class EpisodeEnv(Protocol):
    """A task environment the in-process runner drives."""

    @property
    def instruction(self) -> str:
        """The current episode's instruction."""

    def reset(self, episode: int) -> Frame:
        """Start episode ``episode`` (a seed, or a claim set's initial-state index); the
        first frame, rendered."""

    def observe(self) -> Frame:
        """The current state, rendered for the policy."""

    def step(self, action: np.ndarray) -> Frame:
        """Execute one action for one control tick; nothing rendered."""


class SimArmEnv:
    """Our simulated arm (specprune_ros/sim/sim_arm.py) as an EpisodeEnv: both views, the
    LIBERO proprio and the end-effector pose in the robot base frame, as the policy node
    builds them from the bridge's topics."""

    def __init__(self, arm: SimArm) -> None:
        self.arm = arm

    @property
    def instruction(self) -> str:
        return self.arm.instruction

    def reset(self, episode: int) -> Frame:
        return self._frame(self.arm.reset(seed=episode))

    def observe(self) -> Frame:
        return self._frame(self.arm.observe())

    def step(self, action: np.ndarray) -> Frame:
        return self._frame(self.arm.step(action, render=False), rendered=False)

    def _frame(self, obs: SimObservation, rendered: bool = True) -> Frame:
        return frame_of(obs, rendered, goal_progress(self.arm))


class LiberoArmEnv(SimArmEnv):
    """LIBERO tasks as an EpisodeEnv: one task, or every task of a suite. Episode ``e`` is
    number ``i = e - first`` of the run: a development initial state drawn from seed ``e``
    on task ``tasks[i % len(tasks)]``, or in a claim run (``claim``) the benchmark's fixed
    initial state ``i % 50`` of task ``tasks[i // 50]`` (openvla-oft's order: every state of
    task 0, then of task 1...). One task's arm is open at a time (``make_arm(task)``; a
    task's environment takes ~7 s to build). ``openvla_oft_gripper``: the policy's gripper is
    0 close .. 1 open (OpenVLA-OFT's released LIBERO checkpoints), converted as
    openvla-oft's process_action before each step."""

    def __init__(self, make_arm: Callable[[int], LiberoArm], tasks: Sequence[int], first: int,
                 claim: bool = False, openvla_oft_gripper: bool = False) -> None:
        super().__init__(None)
        self.make_arm, self.tasks, self.first, self.claim = make_arm, tuple(tasks), first, claim
        self.openvla_oft_gripper = openvla_oft_gripper
        self.task: Optional[int] = None

    def step(self, action: np.ndarray) -> Frame:
        return super().step(gripper_to_env(action) if self.openvla_oft_gripper else action)

    def _frame(self, obs: SimObservation, rendered: bool = True) -> Frame:
        return frame_of(obs, rendered)  # LIBERO's worker reports success only

    def reset(self, episode: int) -> Frame:
        index = episode - self.first
        if self.claim and not 0 <= index < INIT_STATES_PER_TASK * len(self.tasks):
            raise ValueError(f"episode {episode}: a LIBERO claim runs the benchmark's "
                             f"{INIT_STATES_PER_TASK} initial states per task, episodes "
                             f"{self.first}..{self.first + self.claim_episodes - 1}")
        self._open(self.tasks[index // INIT_STATES_PER_TASK if self.claim
                              else index % len(self.tasks)])
        if self.claim:
            return frame_of(self.arm.reset_to_init_state(index % INIT_STATES_PER_TASK))
        return frame_of(self.arm.reset(seed=episode))

    @property
    def claim_episodes(self) -> int:
        """Episodes of a complete claim run: 50 per task."""
        return INIT_STATES_PER_TASK * len(self.tasks)

    def _open(self, task: int) -> None:
        if task != self.task:
            self.close()
            self.arm, self.task = self.make_arm(task), task

    def close(self) -> None:
        """Close the open task's arm."""
        if self.arm is not None:
            self.arm.close()
            self.arm, self.task = None, None


def default_horizon(task: str) -> int:
    """Policy ticks per episode of ``task``: the protocol's limit of a LIBERO suite
    (220 / 280 / 300 / 520), the same limit of the LIBERO-shaped suite a ``sim_<suite>_<i>``
    task belongs to, else SIM_HORIZON."""
    tabletop = tabletop_task(task)
    if tabletop is not None:
        return tabletop.horizon
    named = libero_tasks(task)
    return SIM_HORIZON if named is None else suite_horizon(named[0])


@contextmanager
def open_env(task: str, horizon: int, first_seed: int, claim: bool = False,
             gripper_convention: str = "env") -> Iterator[EpisodeEnv]:
    """The EpisodeEnv of ``task`` (closed on exit): our arm built with ``first_seed``, or
    LIBERO's ``<suite>:<index>`` / ``<suite>:all`` (LiberoArmEnv, episodes counted from
    ``first_seed``); ``gripper_convention`` "openvla_oft" for a released OpenVLA-OFT LIBERO
    checkpoint (LIBERO tasks only)."""
    if gripper_convention not in GRIPPER_CONVENTIONS:
        raise ValueError(f"gripper_convention {gripper_convention!r}: one of "
                         f"{', '.join(GRIPPER_CONVENTIONS)}")
    named = libero_tasks(task)
    if named is None:
        if gripper_convention != "env":
            raise ValueError(f"gripper_convention {gripper_convention!r} is for LIBERO tasks")
        with SimArm(SimArmConfig(task=task, horizon=horizon, seed=first_seed)) as arm:
            yield SimArmEnv(arm)
        return
    suite, tasks = named
    env = LiberoArmEnv(lambda i: LiberoArm(LiberoArmConfig(suite=suite, task=i, horizon=horizon)),
                       tasks, first_seed, claim, gripper_convention == "openvla_oft")
    try:
        yield env
    finally:
        env.close()


def frame_of(obs: SimObservation, rendered: bool = True,
             progress: Optional[GoalProgress] = None) -> Frame:
    """The Frame of one SimArm observation (its views when ``rendered``)."""
    images = [obs.images[v] for v in VIEWS] if rendered else None
    return Frame(images=images, proprio=obs.proprio_in_base(), ee_pose=obs.eef_pose_in_base(),
                 stamp=obs.sim_time, success=obs.success, progress=progress)


def goal_progress(arm: SimArm) -> Optional[GoalProgress]:
    """The arm's progress on its episode's goal now; None on a task without goal parts
    (pick_color, lift)."""
    try:
        held, grasped = arm.goal_progress()
    except ValueError:
        return None
    return GoalProgress(parts=len(held), held=sum(held), grasped=any(grasped))
