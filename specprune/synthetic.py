"""A deterministic synthetic episode with moving content, for benchmarks and tests.

Each view is a fixed smooth texture with a red square (the object) and a grey bar (the
gripper) that move a few pixels per step, so frame comparison finds real changes and
the instruction names something visible. The end effector moves at a steady
``speed`` m/s (coarse mode unless slow).
"""
from __future__ import annotations

import numpy as np

from specprune.types import EEMotion, Observation


class SyntheticEpisode:
    def __init__(self, seed: int = 0, num_views: int = 2, proprio_dim: int = 8,
                 size: int = 224, speed: float = 0.2,
                 instruction: str = "pick up the red cube") -> None:
        rng = np.random.default_rng(seed)
        self.size, self.speed, self.instruction = size, speed, instruction
        self.proprio_dim = proprio_dim
        self._backgrounds = [_texture(rng, size) for _ in range(num_views)]
        self._phase = rng.uniform(0, 2 * np.pi, size=num_views)

    def frame(self, view: int, step: int) -> np.ndarray:
        img = self._backgrounds[view].copy()
        s = self.size
        t = step * 0.15 + self._phase[view]
        cx, cy = int(s * (0.5 + 0.3 * np.cos(t))), int(s * (0.55 + 0.2 * np.sin(t)))
        img[max(cy - 14, 0):cy + 14, max(cx - 14, 0):cx + 14] = (200, 30, 30)
        gx = int(s * (0.5 + 0.25 * np.sin(0.7 * t)))
        img[: s // 3, max(gx - 8, 0):gx + 8] = (90, 90, 90)
        return img

    def observation(self, step: int) -> Observation:
        views = [self.frame(v, step) for v in range(len(self._backgrounds))]
        proprio = 0.5 * np.sin(0.1 * step + np.arange(self.proprio_dim))
        direction = np.array([np.cos(0.1 * step), np.sin(0.1 * step), -0.1])
        linear = self.speed * direction / np.linalg.norm(direction)
        motion = EEMotion(linear=linear, angular=np.zeros(3))
        return Observation(images=views, instruction=self.instruction, proprio=proprio,
                           ee_motion=motion, stamp=0.05 * step)


def _texture(rng: np.random.Generator, size: int) -> np.ndarray:
    coarse = rng.integers(40, 220, size=(size // 28 + 1, size // 28 + 1, 3))
    img = np.kron(coarse, np.ones((28, 28, 1)))[:size, :size]
    noise = rng.integers(-12, 12, size=(size, size, 3))
    return np.clip(img + noise, 0, 255).astype(np.uint8)
