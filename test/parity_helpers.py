"""Inputs of the parity fixtures (test/fixtures/parity): deterministic synthetic camera
frames, state and instruction, made with integer arithmetic only (no RNG stream whose
output could change between numpy versions). The scratch scripts that ran the reference
code imported this same module, so the tests see the frames the reference saw.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Dict

import numpy as np

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "parity")
#: the fixtures' model folders, shipped (a seeded init is not the same on every CPU)
MODELS = os.path.join(FIXTURES, "models")
INSTRUCTION = "put the red bowl on the plate"
FRAME_SIZES = (224, 256)
CAMERA_SHAPES = ((480, 640), (100, 150), (60, 60))  # (H, W): down- and upsampling to 224
MODEL_SEED = 7


def synthetic_frame(size: int, view: int) -> np.ndarray:
    """(size, size, 3) uint8: gradients, hard-edged shapes, 1-px lines and hash noise, so
    that crop, resize and JPEG all have edges and high frequencies to get wrong."""
    y, x = np.mgrid[0:size, 0:size].astype(np.int64)
    c = np.arange(3, dtype=np.int64)[None, None, :]
    img = (x[..., None] * (97 + 40 * c) + y[..., None] * (61 + 23 * view) + 31 * c) // size
    img = img % 256
    cy, cx, r = size * (3 + view) // 8, size * (5 - view) // 8, size // 6
    disc = (y - cy) ** 2 + (x - cx) ** 2 < r * r
    img[disc] = (230, 40 + 60 * view, 20)
    box = (y > size // 10) & (y < size // 4) & (x > size // 2) & (x < 3 * size // 4)
    img[box] = (15, 200, 180 - 50 * view)
    img[:, (size // 3 + 7 * view) % size] = 255  # one-pixel vertical line
    img[(2 * size // 3) % size, :] = 0  # one-pixel horizontal line
    noisy = (y > 3 * size // 4) & (x < size // 3)
    h = (x[..., None] * 73856093) ^ (y[..., None] * 19349663) ^ (c * 83492791 + view * 7919)
    img = np.where(noisy[..., None], (h >> 7) % 256, img)
    return img.astype(np.uint8)


def camera_frame(height: int, width: int) -> np.ndarray:
    """A non-square frame cut from a synthetic one (resize paths other than 256 -> 224)."""
    return np.ascontiguousarray(synthetic_frame(max(height, width), 1)[:height, :width])


def frames(size: int, num_views: int):
    return [synthetic_frame(size, v) for v in range(num_views)]


def proprio_state(dim: int) -> np.ndarray:
    """A raw state inside and outside the synthetic bounds (clipping exercised)."""
    return np.array([0.37 * np.sin(1.3 * i + 0.2) * (1 + i % 3) for i in range(dim)])


def load_fixture(name: str) -> Dict[str, np.ndarray]:
    with np.load(os.path.join(FIXTURES, name)) as data:
        return {k: data[k] for k in data.files}


def parity_statistics(layout: str) -> Dict[str, Any]:
    """dataset_statistics entry whose min/max differ from q01/q99, so a checkpoint that
    normalises with the wrong pair (ALOHA: min/max, LIBERO: q01/q99) gives other actions."""
    from specprune.model.presets import LAYOUTS
    lay = LAYOUTS[layout]

    def block(dim: int, masked: int) -> Dict[str, Any]:
        i = np.arange(dim)
        q01, q99 = -0.6 - 0.05 * i, 0.5 + 0.07 * i
        out = {"min": (q01 - 0.4).tolist(), "max": (q99 + 0.3).tolist(), "q01": q01.tolist(),
               "q99": q99.tolist(), "mean": ((q01 + q99) / 2).tolist(),
               "std": ((q99 - q01) / 4).tolist()}
        if masked >= 0:
            out["mask"] = [j != masked for j in range(dim)]
        return out

    return {"action": block(lay.action_dim, lay.action_dim - 1),
            "proprio": block(lay.proprio_dim, -1), "num_transitions": 0,
            "num_trajectories": 0}


def parity_model(layout: str) -> str:
    """The shipped checkpoint folder the reference's numbers were computed on."""
    return os.path.join(MODELS, layout)


def weights_sum(folder: str) -> float:
    """Sum of a checkpoint's weights in float64 (recorded with the fixtures)."""
    from specprune.model.checkpoint import load_checkpoint
    model = load_checkpoint(folder)[0]
    return float(sum(p.detach().double().sum() for p in model.parameters()))


def write_parity_checkpoint(folder: str, layout: str) -> float:
    """Save a new fixture model (the ``tiny`` preset, seeded, reference image pipeline) as
    a checkpoint folder; returns the sum of its weights. Only for making new fixtures: the
    seeded init rounds differently on other CPUs (weights sum rel 1.7e-12 between an AVX512
    and an AVX2 machine, 4e-8 under ATEN_CPU_CAPABILITY=default), so the tests read the
    shipped folders (``parity_model``)."""
    from specprune.model.checkpoint import save_checkpoint
    from specprune.model.loading import load_model
    model, tokenizer, _, _ = load_model("tiny", layout, seed=MODEL_SEED)
    model.cfg = dataclasses.replace(model.cfg, image_pipeline="reference")
    save_checkpoint(folder, model, tokenizer, parity_statistics(layout), dataset="parity")
    return float(sum(p.detach().double().sum() for p in model.parameters()))
