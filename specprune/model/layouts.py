"""Action layouts of the released OpenVLA-OFT checkpoints: plain data, no torch.

What the robot side needs to read a chunk (the executor: action names, chunk length,
action dimension), kept apart from the model code so that importing it costs nothing:
``specprune/__init__.py`` and ``specprune/model/__init__.py`` import no model module
eagerly, and test/test_layout.py checks that the robot-side modules never load torch.

LIBERO: chunk 8, dim 7 (ee delta xyz, delta rpy, gripper), proprio 8, 2 views, actions
normalised by BOUNDS_Q99 (the dataset's q01 / q99). ALOHA: chunk 25, dim 14 (two arms of
six joints and a gripper), proprio 14, 3 views, BOUNDS (min / max).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Tuple

#: normalisation rules of the dataset statistics (processing.py applies them)
BOUNDS_Q99, BOUNDS = "bounds_q99", "bounds"


@dataclass(frozen=True)
class ActionLayout:
    chunk: int
    action_dim: int
    proprio_dim: int
    num_images: int
    normalization: str
    action_names: Tuple[str, ...]


_ALOHA_JOINTS = ("waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate",
                 "gripper")

LAYOUTS: Dict[str, ActionLayout] = {
    "libero": ActionLayout(8, 7, 8, 2, BOUNDS_Q99,
                           ("x", "y", "z", "roll", "pitch", "yaw", "gripper")),
    "aloha": ActionLayout(25, 14, 14, 3, BOUNDS,
                          tuple(f"{side}_{j}" for side in ("left", "right")
                                for j in _ALOHA_JOINTS)),
}
