"""A scripted pick-up expert with privileged state (the target cube's pose). No ROS imports.

It closes the loop on the true state every tick, so it recovers by construction when the
executed action differs from its own (the recorder injects noise and pushes): approach
above the cube, descend, close, lift; if the cube is lost in the lift, open and start
over. Actions are LIBERO's: OSC delta end effector in [-1, 1] (1 = 5 cm per tick for
robosuite's Panda), gripper -1 open / +1 close, no rotation (the cubes' yaw stays small).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from specprune.config import check_value, int_as_float

from specprune_ros.sim.sim_arm import ACTION_DIM, GRIPPER_CLOSE, GRIPPER_OPEN, SimObservation

APPROACH, DESCEND, CLOSE, LIFT, RELEASE = "approach", "descend", "close", "lift", "release"


@dataclass(frozen=True)
class ExpertConfig:
    """Geometry and gains of the scripted expert (metres, control ticks).

    hover_height: grip-site height above the cube centre before descending.
    grasp_offset: grip-site height relative to the cube centre when closing.
    lift_height: grip-site target above the grasp height while lifting.
    xy_tolerance / z_tolerance: position errors that end the approach / descent.
    gain: action per metre of error (OSC moves its goal 0.05 m per unit action).
    close_ticks / release_ticks: ticks spent closing / opening the gripper in place.
    lost_distance: grip-site to cube distance that means the cube slipped away.
    """

    hover_height: float = 0.07
    grasp_offset: float = -0.005
    lift_height: float = 0.15
    xy_tolerance: float = 0.008
    z_tolerance: float = 0.008
    gain: float = 15.0
    close_ticks: int = 6
    release_ticks: int = 4
    lost_distance: float = 0.03

    def __post_init__(self) -> None:
        positive = ("hover_height", "lift_height", "xy_tolerance", "z_tolerance", "gain",
                    "lost_distance")
        for name in positive + ("grasp_offset",):
            value = int_as_float(getattr(self, name), float)
            check_value("ExpertConfig", name, value, float, 1e-9 if name in positive else None,
                        None)
        for name in ("close_ticks", "release_ticks"):
            check_value("ExpertConfig", name, getattr(self, name), int, 1, None)


class ScriptedExpert:
    """State machine over the target cube's pose: call ``reset`` per episode, ``act`` per tick."""

    def __init__(self, config: Optional[ExpertConfig] = None) -> None:
        self.config = config or ExpertConfig()
        self.reset()

    def reset(self) -> None:
        """Start a new episode in the approach phase."""
        self.phase = APPROACH
        self._ticks_in_phase = 0
        self._grasp_z = 0.0

    def act(self, obs: SimObservation) -> np.ndarray:
        """The expert's (7,) action for this observation (needs extras['target_pos'])."""
        if "target_pos" not in obs.extras:
            raise ValueError("the scripted expert needs privileged state extras['target_pos']")
        cfg = self.config
        cube = np.asarray(obs.extras["target_pos"], dtype=np.float64)
        eef = np.asarray(obs.eef_pos, dtype=np.float64)
        self._advance(cube, eef)
        goal, grip = eef, GRIPPER_OPEN
        if self.phase == APPROACH:
            goal = cube + np.array([0.0, 0.0, cfg.hover_height])
            if np.linalg.norm((goal - eef)[:2]) > 3 * cfg.xy_tolerance:
                goal[2] = max(goal[2], eef[2])  # do not sweep low towards the cube
        elif self.phase == DESCEND:
            goal = cube + np.array([0.0, 0.0, cfg.grasp_offset])
        elif self.phase == CLOSE:
            goal, grip = cube + np.array([0.0, 0.0, cfg.grasp_offset]), GRIPPER_CLOSE
        elif self.phase == LIFT:
            goal, grip = np.array([eef[0], eef[1], self._grasp_z + cfg.lift_height]), GRIPPER_CLOSE
        action = np.zeros(ACTION_DIM)
        action[:3] = np.clip(cfg.gain * (goal - eef), -1.0, 1.0)
        action[6] = grip
        return action

    def _advance(self, cube: np.ndarray, eef: np.ndarray) -> None:
        """Move between phases from the true state (this is where recovery happens)."""
        cfg = self.config
        self._ticks_in_phase += 1
        err = cube - eef
        xy_err = float(np.linalg.norm(err[:2]))
        if self.phase == APPROACH:
            above = cube[2] + cfg.hover_height - eef[2]
            if xy_err < cfg.xy_tolerance and abs(above) < 2 * cfg.z_tolerance:
                self._enter(DESCEND)
        elif self.phase == DESCEND:
            if xy_err > 2.5 * cfg.xy_tolerance:
                self._enter(APPROACH)  # pushed off the cube: line up again
            elif abs(err[2] + cfg.grasp_offset) < cfg.z_tolerance:
                self._enter(CLOSE)
        elif self.phase == CLOSE:
            if self._ticks_in_phase > cfg.close_ticks:
                self._grasp_z = eef[2]
                self._enter(LIFT)
        elif self.phase == LIFT:
            if np.linalg.norm(err) > cfg.lost_distance:
                self._enter(RELEASE)  # the cube slipped: open and start over
        elif self.phase == RELEASE and self._ticks_in_phase > cfg.release_ticks:
            self._enter(APPROACH)

    def _enter(self, phase: str) -> None:
        self.phase = phase
        self._ticks_in_phase = 0
