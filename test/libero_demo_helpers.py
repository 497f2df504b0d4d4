"""Small LIBERO demo shards in the recorder's layout (libero_demos), for training tests."""
import json
import os

import h5py
import numpy as np

from specprune.train.demo_dataset import CAMERAS

SPATIAL = ("pick up the black bowl next to the plate and place it on the plate",
           ["akita_black_bowl_1", "plate_1"])
OBJECT = ("pick up the ketchup and place it in the basket", ["ketchup_1", "basket_1"])


def write_shard(path, task, lengths, every=4, close_at=5, seed=0, frame_ticks=None,
                boxes=None):
    """A LIBERO recorder shard: per-tick labels / state / object positions, frames on every
    ``every``-th tick (phase = the demo's seed % every, as libero_demos records them);
    ``boxes`` (views, 2, 4): obs/object_boxes, the same on every frame."""
    rng = np.random.default_rng(seed)
    instruction, names = task
    with h5py.File(path, "w") as f:
        data = f.create_group("data")
        data.attrs["env_args"] = json.dumps({"suite": os.path.basename(path).split("_task")[0],
                                             "frame_every": every})
        for i, ticks in enumerate(lengths):
            demo = data.create_group(f"demo_{i}")
            demo.attrs.update(num_samples=ticks, seed=seed + i, instruction=instruction,
                              success=True, cube_colors=json.dumps(names))
            actions = rng.uniform(-1, 1, (ticks, 7)).astype(np.float32)
            actions[:, 6] = np.where(np.arange(ticks) >= close_at, 1.0, -1.0)
            shown = (np.arange((seed + i) % every, ticks, every) if frame_ticks is None
                     else np.asarray(frame_ticks))
            demo.create_dataset("actions", data=actions)
            demo.create_dataset("obs/proprio", data=rng.normal(0, 0.3, (ticks, 8))
                                .astype(np.float32))
            demo.create_dataset("obs/cube_pos", data=rng.normal(0, 0.2, (ticks, 2, 3))
                                .astype(np.float32))
            demo.create_dataset("obs/frame_ticks", data=shown.astype(np.int32))
            if boxes is not None:
                demo.create_dataset("obs/object_boxes", data=np.repeat(
                    np.asarray(boxes, np.float32)[None], len(shown), axis=0))
            for cam in CAMERAS:
                demo.create_dataset(f"obs/{cam}", data=rng.integers(
                    0, 256, (len(shown), 32, 32, 3), np.uint8))
    return str(path)
