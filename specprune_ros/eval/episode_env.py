"""What the in-process runner needs of a simulator: ``EpisodeEnv``, and our arm behind it.

The runner (episodes.DirectRunner) resets an environment to an episode, asks for a rendered
``Frame`` when the policy steps and executes the chunk's actions one tick at a time without
rendering. Any environment that gives these three calls can be evaluated with every
configuration, the paired statistics and the claim rules of specprune-eval: ``SimArmEnv``
wraps our robosuite arm; a LIBERO environment implements the same protocol over its worker
(``reset(episode)`` setting the benchmark's initial state ``episode`` in a claim run and
running the protocol's no-op ticks, frames rotated as openvla-oft's get_libero_image,
proprio in LIBERO's convention).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Protocol, Sequence, Tuple

import numpy as np

from specprune_ros.sim.sim_arm import SimArm, SimObservation

#: Camera of each model view: view 0 third person, view 1 wrist (LIBERO's order).
VIEWS = ("agentview", "robot0_eye_in_hand")


@dataclass(frozen=True)
class Frame:
    """One tick as the runner sees it. ``images``: one (H, W, 3) uint8 array per model view
    (None on a tick that was not rendered); ``proprio``: the raw state the policy takes;
    ``ee_pose``: end-effector position (3,) and quaternion (x, y, z, w) in the frame the
    motion is measured in; ``stamp``: simulated seconds; ``success``: the task is done."""

    images: Optional[Sequence[np.ndarray]]
    proprio: np.ndarray
    ee_pose: Tuple[np.ndarray, np.ndarray]
    stamp: float
    success: bool


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
        return frame_of(self.arm.reset(seed=episode))

    def observe(self) -> Frame:
        return frame_of(self.arm.observe())

    def step(self, action: np.ndarray) -> Frame:
        return frame_of(self.arm.step(action, render=False), rendered=False)


def frame_of(obs: SimObservation, rendered: bool = True) -> Frame:
    """The Frame of one SimArm observation (its views when ``rendered``)."""
    images = [obs.images[v] for v in VIEWS] if rendered else None
    return Frame(images=images, proprio=obs.proprio_in_base(), ee_pose=obs.eef_pose_in_base(),
                 stamp=obs.sim_time, success=obs.success)
