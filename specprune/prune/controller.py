"""Action-aware controller: coarse vs fine pruning mode from end-effector motion.

Fine mode (more tokens) while the arm moves slowly and does not rise: approaching or
grasping. Back to coarse when it moves fast or rises (the object is lifted). Separate
enter and exit thresholds give hysteresis; a warm-up keeps the first steps coarse.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from specprune.config import PruneConfig
from specprune.types import MODE_COARSE, MODE_FINE, EEMotion


@dataclass(frozen=True)
class ModeDecision:
    mode: str
    switched_to_fine: bool  # this step entered fine mode (caller may re-plan)


def motion_from_action(action: np.ndarray, cfg: PruneConfig) -> EEMotion:
    """Velocity implied by a relative (delta end-effector) action row [x y z r p y ...]."""
    action = np.asarray(action, dtype=np.float64)
    return EEMotion(linear=action[:3] * cfg.action_trans_to_speed,
                    angular=action[3:6] * cfg.action_rot_to_speed)


class ActionAwareController:
    """Holds the mode across steps; ``reset()`` at the start of an episode."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._mode = MODE_COARSE
        self._steps = 0

    @property
    def mode(self) -> str:
        return self._mode

    def update(self, motion: Optional[EEMotion], cfg: PruneConfig) -> ModeDecision:
        """Decide the mode for the step about to run from the latest motion."""
        self._steps += 1
        if not cfg.controller_enabled:
            self._mode = MODE_COARSE
            return ModeDecision(self._mode, False)
        if motion is None or self._steps <= cfg.warmup_steps:
            return ModeDecision(self._mode, False)
        if not (np.all(np.isfinite(motion.linear)) and np.all(np.isfinite(motion.angular))):
            return ModeDecision(self._mode, False)  # keep the mode on a bad sample
        previous = self._mode
        if previous == MODE_COARSE and _should_enter_fine(motion, cfg):
            self._mode = MODE_FINE
        elif previous == MODE_FINE and _should_exit_fine(motion, cfg):
            self._mode = MODE_COARSE
        return ModeDecision(self._mode, previous == MODE_COARSE and self._mode == MODE_FINE)

    def would_enter_fine(self, motion: Optional[EEMotion], cfg: PruneConfig) -> bool:
        """Whether ``update(motion, cfg)`` would switch coarse -> fine now; changes nothing.
        A runner executing a chunk asks after each tick and, on True, drops the rest of the
        chunk and replans: the released code checks the switch on every executed action."""
        if not cfg.controller_enabled or motion is None or self._mode != MODE_COARSE:
            return False
        if self._steps + 1 <= cfg.warmup_steps:
            return False
        if not (np.all(np.isfinite(motion.linear)) and np.all(np.isfinite(motion.angular))):
            return False
        return _should_enter_fine(motion, cfg)


def _should_enter_fine(m: EEMotion, cfg: PruneConfig) -> bool:
    return (m.trans_speed < cfg.fine_enter_trans_speed
            and m.rot_speed < cfg.fine_enter_rot_speed
            and m.z_speed <= cfg.fine_enter_max_z_speed)


def _should_exit_fine(m: EEMotion, cfg: PruneConfig) -> bool:
    return (m.trans_speed > cfg.fine_exit_trans_speed
            or m.rot_speed > cfg.fine_exit_rot_speed
            or m.z_speed > cfg.fine_exit_z_speed)


def lookback_steps(trans_speed: float, cfg: PruneConfig) -> int:
    """Frames to look back for V_dynamic: long at rest, short when moving fast."""
    frac = min(max(trans_speed, 0.0) / cfg.lookback_speed_ref, 1.0)
    span = cfg.lookback_max_steps - cfg.lookback_min_steps
    return int(round(cfg.lookback_max_steps - frac * span))
