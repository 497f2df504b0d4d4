"""SpecPrune-VLA core: an OpenVLA-OFT policy with action-aware self-speculative pruning.

No ROS imports here. Public API::

    policy = load_policy("oft-cpu" | "/path/to/checkpoint", device="auto")
    chunk, stats = policy.step(Observation(images=[...], instruction="...", proprio=...))
    policy.update_config(keep_scale=1.5)   # thread-safe, applies at the next step
    policy.reset()                          # new episode
"""
from specprune.model.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from specprune.config import PruneConfig, field_specs
from specprune.policy import NonFiniteActionError, SpecPrunePolicy, load_policy
from specprune.types import ActionChunk, EEMotion, Observation, StepStats

__all__ = [
    "ActionChunk", "CheckpointError", "EEMotion", "NonFiniteActionError", "Observation",
    "PruneConfig", "SpecPrunePolicy", "StepStats", "field_specs", "load_checkpoint",
    "load_policy", "save_checkpoint",
]
