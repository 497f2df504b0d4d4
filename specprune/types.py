"""Plain data objects that cross the core's public API (no torch in the signatures)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional, Sequence

import numpy as np

MODE_COARSE = "coarse"
MODE_FINE = "fine"
MODE_OFF = "off"  # pruning disabled


@dataclass(frozen=True)
class EEMotion:
    """Measured end-effector motion in the robot base frame (SI units).

    linear: (3,) velocity in m/s; angular: (3,) angular velocity in rad/s.
    """

    linear: np.ndarray
    angular: np.ndarray

    @property
    def trans_speed(self) -> float:
        return float(np.linalg.norm(self.linear))

    @property
    def rot_speed(self) -> float:
        return float(np.linalg.norm(self.angular))

    @property
    def z_speed(self) -> float:
        return float(self.linear[2])


@dataclass
class Observation:
    """One control step's input.

    images: one HxWx3 uint8 RGB array per camera view, in the model's view order
        (view 0 = third-person, view 1 = wrist for the LIBERO models).
    proprio: raw (un-normalised) proprioceptive state, or None for models without it.
    ee_motion: measured end-effector motion; None lets the policy use its own actions.
    """

    images: Sequence[np.ndarray]
    instruction: str
    proprio: Optional[np.ndarray] = None
    ee_motion: Optional[EEMotion] = None
    stamp: float = 0.0


@dataclass
class ActionChunk:
    """Future actions predicted in one step: row i is the action for control tick i."""

    actions: np.ndarray  # (chunk, action_dim) un-normalised
    normalized: np.ndarray  # (chunk, action_dim) in the model's [-1, 1] space
    stamp: float = 0.0
    replan: bool = False  # controller switched coarse -> fine: drop the rest of the old chunk


@dataclass
class StepStats:
    """What one step cost and what the pruner did."""

    vision_ms: float = 0.0
    llm_ms: float = 0.0
    head_ms: float = 0.0
    selection_ms: float = 0.0
    total_ms: float = 0.0
    mode: str = MODE_OFF
    tokens_per_layer: List[int] = field(default_factory=list)
    visual_tokens_per_layer: List[int] = field(default_factory=list)
    visual_tokens_total: int = 0
    # the first layer that runs on the static selection (PruneConfig.local_first_layer + 2)
    static_layer: int = 2
    # per view (grid, grid) bool: SpecPrune's layer-2 selection, or a baseline's (FastV,
    # random) one-shot drop; empty unpruned
    kept_masks: List[np.ndarray] = field(default_factory=list)
    n_global: int = 0
    n_dynamic: int = 0
    n_cover: int = 0  # V_cover (PruneConfig.coverage_k)
    n_local: int = 0
    n_static_kept: int = 0
    scored_layers: int = 0  # decoder layers whose attention was scored this step
    lookback_steps: int = 0
    trans_speed: float = 0.0
    rot_speed: float = 0.0
    replan: bool = False

    @property
    def kept_visual_tokens(self) -> int:
        """Visual tokens that reach the deep layers (after static selection)."""
        if len(self.visual_tokens_per_layer) > self.static_layer:
            return self.visual_tokens_per_layer[self.static_layer]
        return self.visual_tokens_total
