"""A small demonstration file in the issue #4 HDF5 layout, for the training-side tests."""
import json

import h5py
import numpy as np

from specprune.train.demo_dataset import CAMERAS

COLOURS = ("red", "green", "blue")


def write_demos(path, lengths=(5, 7, 4), image_shape=(224, 224, 3), skip=None, seed=0,
                cubes=False):
    """A small file in the contract's layout; ``skip`` = (demo, dataset) left out;
    ``cubes``: also the privileged cube positions (obs/cube_pos, attrs cube_colors)."""
    rng = np.random.default_rng(seed)
    with h5py.File(path, "w") as f:
        data = f.create_group("data")
        data.attrs["env_args"] = json.dumps({"task": "pick_color", "camera_size": 224})
        data.attrs["total"] = int(sum(lengths))
        for i, steps in enumerate(lengths):
            demo = data.create_group(f"demo_{i}")
            demo.attrs.update(num_samples=steps, seed=i, success=True,
                              instruction=f"pick up the {COLOURS[i % 3]} cube")
            sets = {"actions": rng.uniform(-1, 1, (steps, 7)).astype(np.float32),
                    "obs/proprio": rng.normal(0, 0.3, (steps, 8)).astype(np.float32)}
            sets.update({f"obs/{cam}": rng.integers(0, 256, (steps, *image_shape), np.uint8)
                         for cam in CAMERAS})
            sets["actions"][:, 6] = np.sign(sets["actions"][:, 6])
            if cubes:
                demo.attrs["cube_colors"] = json.dumps(list(COLOURS))
                sets["obs/cube_pos"] = rng.normal(0, 0.1, (steps, 3, 3)).astype(np.float32)
            for key, value in sets.items():
                if skip != (i, key):
                    demo.create_dataset(key, data=value)
    return str(path)
