"""The resumable state of a training run (train_state.pt): weights, auxiliary heads,
optimiser, sampler, augmentation and torch RNG states, the loop's counters."""
from __future__ import annotations

import dataclasses
import hashlib
import os
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np
import torch

from specprune.model.modeling_vla import OpenVLAOFT
from specprune.train.auxiliary import AuxiliaryHeads
from specprune.train.batches import Augment, BatchSampler
from specprune.train.demo_dataset import demo_files
from specprune.train.run_loop import Log, Loop
from specprune.train.train_config import _INEXACT_CHANGES, RESUMABLE_CHANGES, TrainConfig


@dataclass
class Resumable:
    """Everything whose state a resumed run needs besides the loop's counters."""

    model: OpenVLAOFT
    heads: Optional[AuxiliaryHeads]
    optimizer: torch.optim.Optimizer
    sampler: BatchSampler
    augment: "Augment"
    device: torch.device
    sources: Tuple[Tuple[str, str], ...] = ()  # demo files read (name, digest): see sources()


def sources(path: str) -> Tuple[Tuple[str, str], ...]:
    """(file, content digest) of every demo file ``path`` names: a resumed run must read the
    same data (a folder of shards grows while a recording runs; a new checkout records its
    demos again). The digest covers what the file holds, not its bytes: the same demos
    recorded twice differ in HDF5's layout by ~100 bytes (test_tabletop_demos)."""
    return tuple((name, content_digest(name)) for name in demo_files(path))


def content_digest(path: str) -> str:
    """sha256 over every group's and dataset's name and attributes and every dataset's
    dtype, shape and values, in HDF5's name order (~0.4 s for a 46 MB shard)."""
    import h5py

    digest = hashlib.sha256()

    def add(name: str, item) -> None:
        digest.update(name.encode())
        for key in sorted(item.attrs):
            value = item.attrs[key]
            if np.ndim(value) == 0:  # numbers and strings, as the recorders write them
                digest.update(f"{key}={value!s}".encode())
            else:  # an array: its values (str() would shorten a long one)
                digest.update(key.encode())
                add_array(np.asarray(value))
        if isinstance(item, h5py.Dataset):
            add_array(np.asarray(item[()]))

    def add_array(array: np.ndarray) -> None:
        if array.dtype.kind == "O":  # variable-length strings: tobytes() would give pointers
            array = np.array([str(part) for part in array.ravel()]).reshape(array.shape)
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(np.ascontiguousarray(array).tobytes())

    with h5py.File(path, "r") as f:
        add("/", f)
        f.visititems(add)
    return digest.hexdigest()


def save_state(cfg: TrainConfig, state: Resumable, loop: Loop) -> None:
    """Write state_dir/train_state.pt atomically (a crash mid-write keeps the last one)."""
    path = cfg.state_path
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    blob = {
        "format": 1, "step": loop.done, "total": loop.total,
        "config": dataclasses.asdict(cfg),
        "model": state.model.state_dict(),
        "heads": state.heads.state_dict() if state.heads is not None else None,
        "optimizer": state.optimizer.state_dict(),
        "sampler": state.sampler.state(),
        "augment_rng": state.augment.rng.bit_generator.state,
        "torch_rng": torch.get_rng_state(),
        "loop": loop.counters(),
        "sources": [list(item) for item in state.sources],
    }
    tmp = path + ".tmp"
    torch.save(blob, tmp)
    os.replace(tmp, path)


def load_state(cfg: TrainConfig, model: OpenVLAOFT, heads: Optional[AuxiliaryHeads],
               optimizer: torch.optim.Optimizer, sampler: BatchSampler, augment: "Augment",
               loop: Loop, log: Log, read: Tuple[Tuple[str, str], ...] = ()) -> int:
    """Restore a saved run into freshly built objects; returns the next step. ``read``: the
    demo files this sitting read (``sources``), refused when they differ from the saved
    run's."""
    path = cfg.state_path
    if not os.path.isfile(path):
        raise FileNotFoundError(f"--resume: no training state at {path!r}")
    blob = torch.load(path, map_location="cpu", weights_only=False)
    saved = blob["config"]
    # a field newer than the saved run is as it was then: at its default
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    changed = sorted(k for k, v in dataclasses.asdict(cfg).items()
                     if k not in RESUMABLE_CHANGES and saved.get(k, defaults[k]) != v)
    if "steps" in changed and saved.get("steps") is None and blob["total"] == cfg.steps:
        changed.remove("steps")  # a --minutes run resumed with its calibrated step count
    inexact = [k for k in _INEXACT_CHANGES if saved.get(k) != getattr(cfg, k)]
    if inexact:
        log(f"--resume with other {', '.join(inexact)}: the run continues, but is no longer "
            "bitwise that of an uninterrupted run")
    if changed:
        raise ValueError(f"--resume: {path} was saved with other settings: " + ", ".join(
            f"{k}={saved.get(k)!r} (now {getattr(cfg, k)!r})" for k in changed))
    saved_sources = tuple(tuple(item) for item in blob.get("sources", ()))
    if saved_sources and saved_sources != tuple(read):
        gone = sorted(set(saved_sources) - set(read))
        new = sorted(set(read) - set(saved_sources))
        raise ValueError(f"--resume: {path} was trained on other demo files (missing or "
                         f"changed: {gone[:3]}; new: {new[:3]}; {len(gone)} / {len(new)} in "
                         "all): resume on the same files, or start a new run")
    model.load_state_dict(blob["model"])
    if heads is not None:
        heads.load_state_dict(blob["heads"])
    optimizer.load_state_dict(blob["optimizer"])
    sampler.restore(blob["sampler"])
    augment.rng.bit_generator.state = blob["augment_rng"]
    torch.set_rng_state(blob["torch_rng"])
    loop.restore(blob["loop"], blob["total"])
    log(f"resumed {path} at step {blob['step']}/{blob['total']} "
        f"({blob['loop']['minutes_before']:.1f} min trained before this sitting)")
    return int(blob["step"])


def finished(path: str) -> bool:
    """Whether the run saved in ``path`` (train_state.pt) has done all its steps."""
    blob = torch.load(path, map_location="cpu", weights_only=False)
    return int(blob["step"]) >= int(blob["total"])


if __name__ == "__main__":  # python -m specprune.train.resumable finished RUN/train_state.pt
    import sys
    if len(sys.argv) != 3 or sys.argv[1] != "finished":
        sys.exit("usage: python -m specprune.train.resumable finished PATH (exit 0: finished)")
    sys.exit(0 if finished(sys.argv[2]) else 1)
