"""SpecPrune-VLA core: an OpenVLA-OFT policy with action-aware self-speculative pruning.

No ROS imports here. Public API::

    policy = load_policy("oft-cpu" | "/path/to/checkpoint", device="auto")
    chunk, stats = policy.step(Observation(images=[...], instruction="...", proprio=...))
    policy.update_config(keep_scale=1.5)   # thread-safe, applies at the next step
    policy.reset()                          # new episode

The names are imported on first use (PEP 562 ``__getattr__``): ``from specprune import
Observation`` loads only ``specprune.types``, so the robot-side modules (the executor, the
observation builder) never pay for torch and transformers; ``load_policy`` and the model
names load them as before.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Dict

if TYPE_CHECKING:  # what static checkers see; at run time __getattr__ imports on demand
    from specprune.config import PruneConfig, field_specs
    from specprune.model.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
    from specprune.policy import NonFiniteActionError, SpecPrunePolicy, load_policy
    from specprune.types import ActionChunk, EEMotion, Observation, StepStats

#: public name -> the module that defines it
_SOURCES: Dict[str, str] = {
    **dict.fromkeys(("ActionChunk", "EEMotion", "Observation", "StepStats"), "specprune.types"),
    **dict.fromkeys(("PruneConfig", "field_specs"), "specprune.config"),
    **dict.fromkeys(("CheckpointError", "load_checkpoint", "save_checkpoint"),
                    "specprune.model.checkpoint"),
    **dict.fromkeys(("NonFiniteActionError", "SpecPrunePolicy", "load_policy"),
                    "specprune.policy"),
}
__all__ = [
    "ActionChunk", "CheckpointError", "EEMotion", "NonFiniteActionError", "Observation",
    "PruneConfig", "SpecPrunePolicy", "StepStats", "field_specs", "load_checkpoint",
    "load_policy", "save_checkpoint",
]  # = sorted(_SOURCES), written out for the linters (test_layout checks it)


def __getattr__(name: str) -> Any:
    if name not in _SOURCES:
        raise AttributeError(f"module 'specprune' has no attribute {name!r}")
    value = getattr(importlib.import_module(_SOURCES[name]), name)
    globals()[name] = value  # the next access is a plain lookup
    return value


def __dir__() -> list:
    return sorted(set(globals()) | set(_SOURCES))
