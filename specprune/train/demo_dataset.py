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
                                            labels of training-only auxiliary losses; LIBERO:
                                            [object, target] in the world frame)
    /data/demo_{i}/obs/object_boxes         optional (F, views, cubes, 4) float32: where each
                                            cube shows in each frame (x0, y0, x1, y1 in
                                            fractions of the frame; LIBERO's recorder)
    /data/demo_{i}/obs/frame_ticks          optional (F,) int: the images hold F frames, of
                                            these ticks only (LIBERO's recorder renders
                                            every k-th tick)
    /data/demo_{i}/obs/part                 optional (T,) int: the part of a several-part
                                            task acting on each tick (LIBERO-10); that
                                            tick's cube_pos / object_boxes are its part's
                                            [object, target] (attrs part_focus)

Sample t of a demo is its frames and proprio at a tick t with frames and the target chunk
``actions[t:t+chunk]``, the last action repeated past the end of the demo. A folder of
shards (several suites / tasks) reads as one set of demos. Statistics
follow the released ``dataset_statistics.json`` (q01/q99/min/max/mean/std/mask per part;
the gripper is masked out of normalisation, as in the LIBERO files).
"""
from __future__ import annotations

import contextlib
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
    actions: np.ndarray  # (M, action_dim) float32, raw labels of every tick (M >= N)
    chunk_index: np.ndarray  # (N, chunk) rows of ``actions`` forming each target chunk
    demo_of: np.ndarray  # (N,) index into ``names`` / ``instructions``
    names: List[str]
    instructions: List[str]
    env_args: Dict[str, Any]
    frame_index: Optional[np.ndarray] = None  # (N,) tick of each sample within its demo
    action_demo: Optional[np.ndarray] = None  # (M,) demo of each row of ``actions``
    #: (M,) the part of its task each row of ``actions`` belongs to (obs/part; 0 without)
    action_part: Optional[np.ndarray] = None
    cube_pos: Optional[np.ndarray] = None  # (N, cubes, 3) float32 when every demo has it
    cube_colors: Optional[List[str]] = None  # the cube names, where every demo has the same
    cube_names: Optional[List[List[str]]] = None  # each demo's names in ``cube_pos`` order
    #: (N, views, cubes, 4) where each cube shows in each view (normalised x0, y0, x1, y1 of
    #: the stored frame; NaN: not in view) when every demo has obs/object_boxes
    object_boxes: Optional[np.ndarray] = None
    boxes_missing: int = 0  # demos without obs/object_boxes (recorded before it existed)

    def __len__(self) -> int:
        return len(self.demo_of)

    def samples_of(self, demos: Sequence[int]) -> np.ndarray:
        """Sample indices belonging to the given demo indices."""
        return np.flatnonzero(np.isin(self.demo_of, np.asarray(demos, dtype=int)))

    def target_chunks(self, samples: np.ndarray) -> np.ndarray:
        """(len(samples), chunk, action_dim) raw target actions."""
        return self.actions[self.chunk_index[samples]]


def demo_files(path: str) -> List[str]:
    """The HDF5 files ``path`` names: a file, a folder (its ``*.hdf5`` in name order; a
    recorder's unfinished ``*.partial`` shards are not read), or several of those separated
    by commas."""
    files: List[str] = []
    for part in (p.strip() for p in path.split(",")):
        if os.path.isdir(part):
            found = sorted(os.path.join(part, n) for n in os.listdir(part)
                           if n.endswith(".hdf5"))
            if not found:
                raise FileNotFoundError(f"demonstration folder {part!r} holds no *.hdf5 file")
            files += found
        elif os.path.isfile(part):
            files.append(part)
        else:
            raise FileNotFoundError(f"demonstration file {part!r} does not exist")
    return files


def source_demo_counts(path: str) -> List[int]:
    """How many demos each comma-separated part of ``path`` holds (``read_demos`` reads
    them in this order)."""
    counts = []
    for part in (p.strip() for p in path.split(",")):
        count = 0
        for name in demo_files(part):
            with _open(name) as handle:
                count += len(_demo_names(name, handle))
        counts.append(count)
    return counts


@dataclass
class _Demo:
    """One checked demo: where it is, its group, its ticks and the ticks it has frames of."""

    name: str
    where: str
    group: h5py.Group
    ticks: int
    frame_ticks: np.ndarray


def read_demos(path: str, chunk: int, action_dim: int, proprio_dim: int,
               image_size: int, max_demos: Optional[int] = None) -> Demos:
    """Load every ``demo_*`` of the files ``path`` names (``demo_files``: a file, a folder of
    shards, comma-separated), frames resized to ``image_size`` if needed, or the first
    ``max_demos`` of them (files in order, demos in demo-number order).

    A sample is a tick that has frames: every tick, or the ``obs/frame_ticks`` of a demo
    recorded with frames on some ticks only; its target chunk still takes the actions of
    the ticks that follow it. Every demo is checked before any image is read; frames go
    straight into one preallocated array per view, so the peak memory is the dataset's size.
    """
    if max_demos is not None and max_demos < 1:
        raise ValueError(f"max_demos must be at least 1, got {max_demos}")
    files = demo_files(path)
    with contextlib.ExitStack() as stack:
        demos: List[_Demo] = []
        env_args: Dict[str, Dict[str, Any]] = {}
        for name in files:
            handle = stack.enter_context(_open(name))
            env_args[name] = _env_args(name, handle["data"].attrs.get("env_args", "{}"))
            demos += [_Demo(n if len(files) == 1 else f"{os.path.basename(name)}/{n}",
                            f"{name}:/data/{n}", handle["data"][n],
                            *_check_demo(f"{name}:/data/{n}", handle["data"][n], action_dim,
                                         proprio_dim))
                      for n in _demo_names(name, handle)]
            if max_demos is not None and len(demos) >= max_demos:
                break
        demos = demos[:max_demos]
        return _assemble(demos, env_args, chunk, image_size)


def _open(path: str) -> h5py.File:
    try:
        handle = h5py.File(path, "r")
    except OSError as err:
        raise DemoFileError(f"{path}: not a readable HDF5 file ({err})") from err
    if not isinstance(handle.get("data"), h5py.Group):
        handle.close()
        raise DemoFileError(f"{path}: no /data group")
    return handle


def _demo_names(path: str, handle: h5py.File) -> List[str]:
    names = sorted((k for k in handle["data"] if k.startswith("demo_")), key=_demo_number)
    if not names:
        raise DemoFileError(f"{path}: /data holds no demo_* group")
    return names


def _assemble(demos: Sequence[_Demo], env_args: Dict[str, Dict[str, Any]], chunk: int,
              image_size: int) -> Demos:
    """One Demos of checked demos: samples at their frame ticks, actions of every tick."""
    counts = [len(d.frame_ticks) for d in demos]
    frames = [np.empty((sum(counts), image_size, image_size, 3), np.uint8) for _ in CAMERAS]
    start = 0
    for demo, count in zip(demos, counts):
        for view, cam in enumerate(CAMERAS):
            frames[view][start:start + count] = _frames(demo.group[f"obs/{cam}"], image_size)
        start += count
    ticks = [d.frame_ticks for d in demos]
    cube_pos, names = _cube_labels(demos)
    boxes, missing = _object_boxes(demos)
    return Demos(
        frames=frames,
        proprio=np.concatenate([d.group["obs/proprio"][()][t] for d, t in zip(demos, ticks)])
        .astype(np.float32),
        actions=np.concatenate([d.group["actions"][()] for d in demos]).astype(np.float32),
        chunk_index=_chunk_index([d.ticks for d in demos], ticks, chunk),
        demo_of=np.repeat(np.arange(len(demos)), counts), names=[d.name for d in demos],
        instructions=[_instruction(d.where, d.group) for d in demos],
        env_args=next(iter(env_args.values())) if len(env_args) == 1 else {"files": env_args},
        frame_index=np.concatenate(ticks),
        action_demo=np.repeat(np.arange(len(demos)), [d.ticks for d in demos]),
        action_part=np.concatenate([_parts(d) for d in demos]),
        cube_pos=cube_pos, cube_colors=_shared(names), cube_names=names,
        object_boxes=boxes, boxes_missing=missing)


def _object_boxes(demos: Sequence[_Demo]) -> Tuple[Optional[np.ndarray], int]:
    """(``obs/object_boxes`` of every sample, or None unless every demo has them; the number
    of demos without). DemoFileError on a wrong shape."""
    arrays = []
    for demo in demos:
        if "object_boxes" not in demo.group["obs"]:
            continue
        arr = demo.group["obs/object_boxes"][()]
        cubes = demo.group["obs/cube_pos"].shape[1] if "cube_pos" in demo.group["obs"] else -1
        if arr.shape != (len(demo.frame_ticks), len(CAMERAS), cubes, 4):
            raise DemoFileError(f"{demo.where}/obs/object_boxes: expected ({len(demo.frame_ticks)}"
                                f", {len(CAMERAS)}, {cubes}, 4), got {arr.shape}")
        arrays.append(arr.astype(np.float32))
    missing = len(demos) - len(arrays)
    return (np.concatenate(arrays) if arrays and not missing else None), missing


def _shared(names: Optional[List[List[str]]]) -> Optional[List[str]]:
    """The cube names every demo has in common (pick_color's colours), else None."""
    if not names or any(n != names[0] for n in names):
        return None
    return names[0]


def _cube_labels(demos: Sequence[_Demo]) -> Tuple[Optional[np.ndarray],
                                                  Optional[List[List[str]]]]:
    """``obs/cube_pos`` at the sample ticks and each demo's cube names, or (None, None) when
    no demo has them; DemoFileError when only some demos have them, a demo's names and
    positions disagree, or the demos hold different numbers of cubes."""
    have = ["cube_pos" in d.group["obs"] for d in demos]
    if not any(have):
        return None, None
    if not all(have):
        raise DemoFileError(f"{demos[have.index(False)].where}: obs/cube_pos is missing in "
                            f"{have.count(False)} of {len(have)} demos (all or none must "
                            "have it)")
    names, arrays = [], []
    for demo in demos:
        raw = demo.group.attrs.get("cube_colors", "[]")
        mine = json.loads(raw.decode() if isinstance(raw, bytes) else str(raw))
        arr = demo.group["obs/cube_pos"][()]
        count = len(names[0]) if names else len(mine)
        if arr.shape != (demo.ticks, len(mine), 3) or not mine or len(mine) != count:
            raise DemoFileError(f"{demo.where}: obs/cube_pos {arr.shape} / cube_colors {mine} "
                                f"disagree with {demo.ticks} ticks and {count} cubes")
        names.append(mine)
        arrays.append(arr[demo.frame_ticks].astype(np.float32))
    return np.concatenate(arrays), names


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


def _check_demo(where: str, group: h5py.Group, action_dim: int,
                proprio_dim: int) -> Tuple[int, np.ndarray]:
    """Validate one demo's datasets (shapes, dtypes, finite labels); returns its number of
    ticks and the ticks its frames show."""
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
    frame_ticks = _frame_ticks(where, group, steps)
    for cam in CAMERAS:
        images = _dataset(group, f"obs/{cam}", where)
        shape = images.shape
        if (images.dtype != np.uint8 or len(shape) != 4 or shape[0] != len(frame_ticks)
                or shape[3] != 3 or min(shape[1:3]) < 14):
            raise DemoFileError(f"{where}/obs/{cam}: expected ({len(frame_ticks)}, H, W, 3) "
                                f"uint8 RGB, got {shape} {images.dtype}")
    _instruction(where, group)
    return steps, frame_ticks


def _parts(demo: _Demo) -> np.ndarray:
    """``obs/part`` (non-negative integers, one per tick, never decreasing), or zeros."""
    if "part" not in demo.group["obs"]:
        return np.zeros(demo.ticks, np.int64)
    parts = demo.group["obs/part"][()]
    if (parts.shape != (demo.ticks,) or not np.issubdtype(parts.dtype, np.integer)
            or parts.min() < 0 or np.any(np.diff(parts) < 0)):
        raise DemoFileError(f"{demo.where}/obs/part: expected ({demo.ticks},) non-negative, "
                            f"non-decreasing integers, got {parts.shape} {parts.dtype}")
    return parts.astype(np.int64)


def _frame_ticks(where: str, group: h5py.Group, steps: int) -> np.ndarray:
    """``obs/frame_ticks`` (increasing ticks in [0, steps)), or every tick without it."""
    if "frame_ticks" not in group["obs"]:
        return np.arange(steps)
    ticks = group["obs/frame_ticks"][()]
    if (ticks.ndim != 1 or len(ticks) == 0 or not np.issubdtype(ticks.dtype, np.integer)
            or ticks[0] < 0 or ticks[-1] >= steps or np.any(np.diff(ticks) <= 0)):
        raise DemoFileError(f"{where}/obs/frame_ticks: expected increasing integer ticks in "
                            f"[0, {steps}), got {ticks!r}")
    return ticks.astype(np.int64)


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


def _chunk_index(lengths: Sequence[int], ticks: Sequence[np.ndarray],
                 chunk: int) -> np.ndarray:
    """(N, chunk) rows of the concatenated actions: each sample tick t's t..t+chunk-1,
    clamped to its demo."""
    starts = np.cumsum([0] + list(lengths[:-1]))
    return np.concatenate([
        start + np.minimum(t[:, None] + np.arange(chunk)[None], n - 1)
        for start, n, t in zip(starts, lengths, ticks)])


def dataset_statistics(demos: Demos, samples: np.ndarray,
                       action_mask: Sequence[bool]) -> Dict[str, Any]:
    """One dataset entry of dataset_statistics.json, computed over ``samples`` (the actions
    of the ticks they show)."""
    if len(samples) == 0:
        raise ValueError("dataset statistics need at least one sample")
    mask = np.asarray(action_mask, dtype=bool)
    return {
        "action": _stat_block(demos.actions[demos.chunk_index[samples, 0]], mask),
        "proprio": _stat_block(demos.proprio[samples], np.ones(demos.proprio.shape[1], bool)),
        "num_transitions": int(len(samples)),
        "num_trajectories": int(len(np.unique(demos.demo_of[samples]))),
    }


def _stat_block(values: np.ndarray, mask: np.ndarray) -> Dict[str, Any]:
    v = values.astype(np.float64)
    return {"mean": v.mean(0).tolist(), "std": v.std(0).tolist(), "max": v.max(0).tolist(),
            "min": v.min(0).tolist(), "q01": np.quantile(v, 0.01, axis=0).tolist(),
            "q99": np.quantile(v, 0.99, axis=0).tolist(), "mask": mask.tolist()}
