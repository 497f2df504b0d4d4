"""Demonstrations from the robomimic-style HDF5 of issue #4, held in RAM for training.

File layout (written by ``specprune_ros.sim.demos``)::

    /data                                   attrs: env_args (JSON), total
    /data/demo_{i}                          attrs: num_samples, seed, instruction, success
    /data/demo_{i}/actions                  (T, 7) float32 in [-1, 1]
    /data/demo_{i}/obs/agentview_image      (T, H, W, 3) uint8, view 0 (third person)
    /data/demo_{i}/obs/robot0_eye_in_hand_image   (T, H, W, 3) uint8, view 1 (wrist)
    /data/demo_{i}/obs/proprio              (T, 8) float32 (LIBERO state)
    /data/demo_{i}/obs/cube_pos             optional (T, cubes, 3) float32: each cube's centre
                                            in the robot base frame, cubes in the order of
                                            the demo's JSON attr ``cube_colors`` (privileged
                                            labels of training-only auxiliary losses)

Sample t of a demo is its frames and proprio at t with the target chunk
``actions[t:t+chunk]``, the last action repeated past the end of the demo. Statistics
follow the released ``dataset_statistics.json`` (q01/q99/min/max/mean/std/mask per part;
the gripper is masked out of normalisation, as in the LIBERO files).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import h5py
import numpy as np

from specprune.model.processing import resize_frame
from specprune.model.prompting import check_instruction

CAMERAS = ("agentview_image", "robot0_eye_in_hand_image")  # view order of the policy


class DemoFileError(ValueError):
    """A malformed demonstration file; the message names the file, demo and dataset."""


@dataclass
class Demos:
    """Every sample of a file: frames, proprio and per-step actions, concatenated."""

    frames: List[np.ndarray]  # per view (N, S, S, 3) uint8
    proprio: np.ndarray  # (N, proprio_dim) float32, raw
    actions: np.ndarray  # (N, action_dim) float32, raw per-step labels
    chunk_index: np.ndarray  # (N, chunk) rows of ``actions`` forming each target chunk
    demo_of: np.ndarray  # (N,) index into ``names`` / ``instructions``
    names: List[str]
    instructions: List[str]
    env_args: Dict[str, Any]
    frame_index: Optional[np.ndarray] = None  # (N,) index of each sample within its demo
    cube_pos: Optional[np.ndarray] = None  # (N, cubes, 3) float32 when every demo has it
    cube_colors: Optional[List[str]] = None  # names of the cubes in ``cube_pos`` order

    def __len__(self) -> int:
        return len(self.demo_of)

    def samples_of(self, demos: Sequence[int]) -> np.ndarray:
        """Sample indices belonging to the given demo indices."""
        return np.flatnonzero(np.isin(self.demo_of, np.asarray(demos, dtype=int)))

    def target_chunks(self, samples: np.ndarray) -> np.ndarray:
        """(len(samples), chunk, action_dim) raw target actions."""
        return self.actions[self.chunk_index[samples]]


def read_demos(path: str, chunk: int, action_dim: int, proprio_dim: int,
               image_size: int, max_demos: Optional[int] = None) -> Demos:
    """Load every ``demo_*`` of ``path`` (frames resized to ``image_size`` if needed), or
    the first ``max_demos`` of them in demo-number order.

    Every demo is checked before any image is read; frames go straight into one
    preallocated array per view, so the peak memory is the dataset's size.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"demonstration file {path!r} does not exist")
    if max_demos is not None and max_demos < 1:
        raise ValueError(f"max_demos must be at least 1, got {max_demos}")
    try:
        handle = h5py.File(path, "r")
    except OSError as err:
        raise DemoFileError(f"{path}: not a readable HDF5 file ({err})") from err
    with handle as f:
        if not isinstance(f.get("data"), h5py.Group):
            raise DemoFileError(f"{path}: no /data group")
        names = sorted((k for k in f["data"] if k.startswith("demo_")), key=_demo_number)
        if not names:
            raise DemoFileError(f"{path}: /data holds no demo_* group")
        names = names[:max_demos]
        env_args = _env_args(path, f["data"].attrs.get("env_args", "{}"))
        groups = [f["data"][n] for n in names]
        wheres = [f"{path}:/data/{n}" for n in names]
        lengths = [_check_demo(w, g, action_dim, proprio_dim) for w, g in zip(wheres, groups)]
        frames = [np.empty((sum(lengths), image_size, image_size, 3), np.uint8)
                  for _ in CAMERAS]
        start = 0
        for group, steps in zip(groups, lengths):
            for view, cam in enumerate(CAMERAS):
                frames[view][start:start + steps] = _frames(group[f"obs/{cam}"], image_size)
            start += steps
        cube_pos, colors = _cube_labels(path, groups, lengths)
        return Demos(
            frames=frames,
            proprio=np.concatenate([g["obs/proprio"][()] for g in groups]).astype(np.float32),
            actions=np.concatenate([g["actions"][()] for g in groups]).astype(np.float32),
            chunk_index=_chunk_index(lengths, chunk),
            demo_of=np.repeat(np.arange(len(names)), lengths), names=names,
            instructions=[_instruction(w, g) for w, g in zip(wheres, groups)],
            env_args=env_args, frame_index=np.concatenate([np.arange(n) for n in lengths]),
            cube_pos=cube_pos, cube_colors=colors)


def _cube_labels(path: str, groups: Sequence[h5py.Group],
                 lengths: Sequence[int]) -> Tuple[Optional[np.ndarray], Optional[List[str]]]:
    """Concatenated ``obs/cube_pos`` and the cube colours, or (None, None) when the file
    has none; DemoFileError when only some demos have them or they disagree."""
    have = ["cube_pos" in g["obs"] for g in groups]
    if not any(have):
        return None, None
    if not all(have):
        raise DemoFileError(f"{path}: obs/cube_pos is missing in {have.count(False)} of "
                            f"{len(have)} demos (all or none must have it)")
    colors = None
    arrays = []
    for group, steps in zip(groups, lengths):
        raw = group.attrs.get("cube_colors", "[]")
        mine = json.loads(raw.decode() if isinstance(raw, bytes) else str(raw))
        if colors is None:
            colors = mine
        arr = group["obs/cube_pos"][()]
        if mine != colors or arr.shape != (steps, len(colors), 3) or not colors:
            raise DemoFileError(f"{path}:{group.name}: obs/cube_pos {arr.shape} / cube_colors "
                                f"{mine} disagree with {colors} and {steps} steps")
        arrays.append(arr.astype(np.float32))
    return np.concatenate(arrays), colors


def _demo_number(name: str) -> int:
    suffix = name[len("demo_"):]
    return int(suffix) if suffix.isdigit() else -1


def _env_args(path: str, raw: Any) -> Dict[str, Any]:
    try:
        return json.loads(raw.decode() if isinstance(raw, bytes) else str(raw))
    except json.JSONDecodeError as err:
        raise DemoFileError(f"{path}: /data attrs env_args is not JSON ({err})") from err


def _dataset(group: h5py.Group, key: str, where: str) -> h5py.Dataset:
    if not isinstance(group.get(key), h5py.Dataset):
        raise DemoFileError(f"{where}: dataset {key!r} missing")
    return group[key]


def _check_demo(where: str, group: h5py.Group, action_dim: int, proprio_dim: int) -> int:
    """Validate one demo's datasets (shapes, dtypes, finite labels); returns its length."""
    actions = _dataset(group, "actions", where)[()]
    if actions.ndim != 2 or actions.shape[1] != action_dim or actions.shape[0] == 0:
        raise DemoFileError(f"{where}/actions: expected (T>0, {action_dim}), got {actions.shape}")
    if not np.all(np.isfinite(actions)):
        raise DemoFileError(f"{where}/actions: non-finite values")
    steps = actions.shape[0]
    proprio = _dataset(group, "obs/proprio", where)[()]
    if proprio.shape != (steps, proprio_dim) or not np.all(np.isfinite(proprio)):
        raise DemoFileError(f"{where}/obs/proprio: expected finite ({steps}, {proprio_dim}), "
                            f"got {proprio.shape}")
    for cam in CAMERAS:
        images = _dataset(group, f"obs/{cam}", where)
        shape = images.shape
        if (images.dtype != np.uint8 or len(shape) != 4 or shape[0] != steps
                or shape[3] != 3 or min(shape[1:3]) < 14):
            raise DemoFileError(f"{where}/obs/{cam}: expected ({steps}, H, W, 3) uint8 RGB, "
                                f"got {shape} {images.dtype}")
    _instruction(where, group)
    return steps


def _instruction(where: str, group: h5py.Group) -> str:
    raw = group.attrs.get("instruction")
    try:
        return check_instruction(raw.decode() if isinstance(raw, bytes) else raw)
    except ValueError as err:
        raise DemoFileError(f"{where}: attrs instruction: {err}") from err


def _frames(images: h5py.Dataset, size: int) -> np.ndarray:
    if images.shape[1:3] == (size, size):
        return images[()]
    return np.stack([resize_frame(img, size).numpy() for img in images[()]])


def _chunk_index(lengths: Sequence[int], chunk: int) -> np.ndarray:
    """(N, chunk) rows of the concatenated actions: t..t+chunk-1, clamped to the demo."""
    starts = np.cumsum([0] + list(lengths[:-1]))
    return np.concatenate([
        start + np.minimum(np.arange(n)[:, None] + np.arange(chunk)[None], n - 1)
        for start, n in zip(starts, lengths)])


def dataset_statistics(demos: Demos, samples: np.ndarray,
                       action_mask: Sequence[bool]) -> Dict[str, Any]:
    """One dataset entry of dataset_statistics.json, computed over ``samples``."""
    if len(samples) == 0:
        raise ValueError("dataset statistics need at least one sample")
    mask = np.asarray(action_mask, dtype=bool)
    return {
        "action": _stat_block(demos.actions[samples], mask),
        "proprio": _stat_block(demos.proprio[samples], np.ones(demos.proprio.shape[1], bool)),
        "num_transitions": int(len(samples)),
        "num_trajectories": int(len(np.unique(demos.demo_of[samples]))),
    }


def _stat_block(values: np.ndarray, mask: np.ndarray) -> Dict[str, Any]:
    v = values.astype(np.float64)
    return {"mean": v.mean(0).tolist(), "std": v.std(0).tolist(), "max": v.max(0).tolist(),
            "min": v.min(0).tolist(), "q01": np.quantile(v, 0.01, axis=0).tolist(),
            "q99": np.quantile(v, 0.99, axis=0).tolist(), "mask": mask.tolist()}
