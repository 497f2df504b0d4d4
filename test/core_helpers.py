"""Shared fixtures for the core tests (tiny preset, synthetic observations)."""
import numpy as np

from specprune import Observation, PruneConfig, load_policy
from specprune.synthetic import SyntheticEpisode

KEEP_ALL = PruneConfig(local_k_primary_coarse=256, local_k_wrist_coarse=256,
                       local_k_primary_fine=256, local_k_wrist_fine=256,
                       layer_prune_enabled=False)


def tiny_policy(config=None, seed=0):
    return load_policy("tiny", device="cpu", dtype="float32", prune_config=config, seed=seed)


def observation(step=0, **overrides):
    obs = SyntheticEpisode(seed=1).observation(step)
    for key, value in overrides.items():
        setattr(obs, key, value)
    return obs


def blank_observation():
    img = np.full((224, 224, 3), 128, dtype=np.uint8)
    return Observation(images=[img, img], instruction="pick up the red cube",
                       proprio=np.zeros(8))
