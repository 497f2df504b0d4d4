"""Record scripted LIBERO demonstrations through the worker, in the demo recorder's HDF5
layout (``demos.DemoWriter``). No ROS imports.

Episodes start from development initial states (``env.reset`` with seeds from ``--seed`` on,
never the benchmark's fixed states: those are the claim set), settle for the protocol's 10
no-op ticks, then the scripted expert acts with the recorder's noise and pushes
(``demos.OffNominal``); the recorded label is the expert's clean action. Only successful
episodes are written. What is recorded is what the protocol gives a policy: both views
rotated 180 degrees, the 8-D LIBERO state (world frame), the task's language. Run::

    python -m specprune_ros.sim.libero_demos --suite libero_spatial --tasks 0-3,5-9 \\
        --per-task 50 --seed 10000 --out demos/libero_spatial.hdf5

or, stoppable and continued by the same command, shards of 10 demos in a folder (one
folder can hold several suites: the shard names carry the suite and task), with the views
rendered and stored on every 4th tick only (the training set's recording, README "LIBERO")::

    python -m specprune_ros.sim.libero_demos --suite libero_spatial --tasks 0-3,5-9 \\
        --per-task 50 --seed 10000 --frame-every 4 --shard-size 10 --out demos/libero

``--frame-every k``: rendering is most of a tick's cost (one 256 px view ~84 ms, the
physics ~11 ms), so the views are rendered and kept only on ticks ``seed % k``,
``seed % k + k``, ... (``obs/frame_ticks``), while every tick's label, state and object
positions are kept: a training sample is a tick with frames, its target chunk the next
ticks' labels. The physics never depends on rendering, so a demo is the same for any k.

Layout as pick_color's (demos.py), with the task's two objects in place of the cubes:
``attrs cube_colors`` holds ``[object, target]`` (names in the observation) and
``obs/cube_pos`` their world positions (privileged: labels, never inputs); the instruction
tells the tasks apart. A task of several parts (LIBERO-10's "put both ... in the basket",
"turn on the stove and put the moka pot on it") is labelled part by part: ``obs/part`` (T,)
says which part acted on each tick, ``attrs part_focus`` lists each part's ``[object,
target]``, and a tick's ``cube_pos`` and ``object_boxes`` are its own part's pair
(``cube_colors`` names the first part's). Shards recorded before this have no ``obs/part``
and every tick labelled with the first part's pair. ``obs/object_boxes`` (frames, views, 2,
4) says where the two show in each stored frame: (x0, y0, x1, y1) in fractions of the
frame, their geoms' bounding boxes projected with the cameras' poses
(``patch_projection``; NaN: behind the camera): the patch labels of the named-object head.
Shards recorded before it was added lack it.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from typing import Dict, List, Optional, Sequence

import numpy as np

from specprune_ros.sim.demo_shards import SHARD_SEEDS_PER_PART, record_in_shards
from specprune_ros.sim.demos import DemoWriter, NoiseConfig, labelled_episode, record_summary
from specprune_ros.sim.libero_env import LiberoStep, LiberoWorker
from specprune_ros.sim.libero_experts import expert_for, parse_ranges, run_expert_episode
from specprune_ros.sim.libero_primitives import FIXTURE_POS, body_of, scene_pos
from specprune_ros.sim.libero_protocol import ENV_IMAGE_SIZE, SUITE_MAX_STEPS, flip_180, proprio
from specprune_ros.sim.libero_worker import VIEWS
from specprune_ros.sim.patch_projection import protocol_box


def record_episode(worker: LiberoWorker, info: Dict, suite: str, seed: int,
                   noise: NoiseConfig, frame_every: int = 1) -> Optional[Dict]:
    """One noisy expert episode on the worker's task: the demo dict, or None on failure.
    Every tick's label, state and object positions are kept; the views only on every
    ``frame_every``-th tick from ``seed % frame_every`` on (``frame_ticks``)."""
    expert = expert_for(info["goal"])
    focus: Dict[int, List[str]] = {}  # part -> its object and target body ("basket_1")
    frames: Dict[str, List[np.ndarray]] = {view: [] for view in VIEWS}
    states, labels, positions, frame_ticks, boxes, parts = [], [], [], [], [], []

    def keep(step: LiberoStep, label: np.ndarray) -> None:
        part = expert.part  # the part whose action ``label`` is
        if part not in focus:
            focus[part] = [body_of(step.obs, name) for name in expert.focus]
        named = focus[part]
        parts.append(part)
        if step.images:
            frame_ticks.append(len(labels))
            for view in VIEWS:
                frames[view].append(flip_180(step.images[view]))
            boxes.append(focus_boxes(worker, step, named))
        states.append(proprio(step))
        labels.append(label)
        positions.append([scene_pos(step.obs, name) for name in named])

    episode = run_expert_episode(worker, expert, suite, info["index"], seed,
                                 SUITE_MAX_STEPS[suite], noise, on_tick=keep, views=VIEWS,
                                 frame_every=frame_every, frame_phase=seed % frame_every)
    if not episode.success:
        return None
    return labelled_episode(seed, info["language"], focus, parts, labels, states, positions,
                            frame_ticks, boxes, frames)


def focus_boxes(worker: LiberoWorker, step: LiberoStep, names: Sequence[str]) -> np.ndarray:
    """``object_boxes`` of ``names``; NaN for a table region (no body to project)."""
    known = [n for n in names if f"{n}_pos" in step.obs or n + FIXTURE_POS in step.obs]
    found = object_boxes(worker, known) if known else np.zeros((len(VIEWS), 0, 4))
    out = np.full((len(VIEWS), len(names), 4), np.nan)
    for i, name in enumerate(names):
        if name in known:
            out[:, i] = found[:, known.index(name)]
    return out


def object_boxes(worker: LiberoWorker, names: Sequence[str]) -> np.ndarray:
    """(views, objects, 4): where each object shows in each view's protocol frame now, as
    (x0, y0, x1, y1) in fractions of the frame (its visual geoms' bounding-box corners
    projected; NaN when it is behind the camera). Asked on the state the views were just
    rendered at (the worker's state does not change between a step and the next)."""
    cameras, points = worker.cameras(VIEWS), worker.object_points(names)
    return np.array([[protocol_box(points[name], cam["intrinsics"], cam["extrinsics"],
                                   tuple(cam["size"])) for name in names]
                     for cam in (cameras[view] for view in VIEWS)])


def record(out: str, suite: str, tasks: Sequence[int], per_task: int, seed: int,
           noise: NoiseConfig, camera_size: int = ENV_IMAGE_SIZE, log=print,
           max_tries: Optional[int] = None, frame_every: int = 1) -> Dict:
    """``per_task`` successful demos of each task, seeds counting up from ``seed`` (shared
    by all tasks, so every seed is used once); a summary dict. RuntimeError when
    ``max_tries`` episodes did not give them."""
    env_args = {"suite": suite, "tasks": list(tasks), "camera_size": camera_size,
                "cameras": list(VIEWS), "images": "rotated 180 degrees (openvla-oft)",
                "proprio_frame": "world", "action_dim": 7, "control_rate_hz": 20,
                "noise": asdict(noise), "first_seed": seed, "frame_every": frame_every}
    writer = DemoWriter(out, env_args)
    tried, next_seed, start = 0, seed, time.perf_counter()
    try:
        with LiberoWorker() as worker:
            for task in tasks:
                info = worker.make(suite, task, camera_size=camera_size)
                kept = 0
                while kept < per_task:
                    if max_tries is not None and tried >= max_tries:
                        raise RuntimeError(f"libero demos: {kept} of {per_task} demos of "
                                           f"task {task} after {tried} tries")
                    episode = record_episode(worker, info, suite, next_seed, noise,
                                             frame_every)
                    tried, next_seed = tried + 1, next_seed + 1
                    if episode is not None:
                        writer.add(episode)
                        kept += 1
                log(f"libero demos: task {task} done, {writer.count} written, {tried} tried "
                    f"({time.perf_counter() - start:.0f} s)")
    finally:
        writer.close()
    summary = record_summary(writer, tried, start, out)
    log(f"libero demos: {json.dumps(summary)}")
    return summary


def record_shards(out_dir: str, suite: str, tasks: Sequence[int], per_task: int, seed: int,
                  shard_size: int, noise: NoiseConfig, camera_size: int = ENV_IMAGE_SIZE,
                  log=print, frame_every: int = 1) -> List[str]:
    """A long recording that can stop any time and continue (``demo_shards``): each task's
    ``per_task`` demos in shards of ``shard_size``. Returns the paths."""
    def record_one(partial: str, task: int, count: int, first: int) -> None:
        record(partial, suite, [task], count, first, noise, camera_size, log,
               max_tries=SHARD_SEEDS_PER_PART, frame_every=frame_every)

    return record_in_shards(out_dir, suite, tasks, per_task, seed, shard_size, record_one, log)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--suite", default="libero_spatial", choices=sorted(SUITE_MAX_STEPS))
    parser.add_argument("--tasks", default="0-3,5-9", help="task indices, e.g. 0-3,5-9")
    parser.add_argument("--per-task", type=int, default=50, help="successful demos per task")
    parser.add_argument("--seed", type=int, default=10000, help="first development seed")
    parser.add_argument("--out", default="demos/libero_spatial.hdf5", help="HDF5 to write")
    parser.add_argument("--camera-size", type=int, default=ENV_IMAGE_SIZE)
    parser.add_argument("--frame-every", type=int, default=1,
                        help="render and store the views on every k-th tick only (labels, "
                        "states and object positions stay per tick; see the docstring)")
    parser.add_argument("--shard-size", type=int, default=0,
                        help="> 0: --out is a folder of resumable shards of this many demos "
                        "per task (rerun the same command to continue)")
    args = parser.parse_args(argv)
    if args.per_task < 1 or args.frame_every < 1:
        parser.error("--per-task and --frame-every must be >= 1")
    tasks = parse_ranges(args.tasks)
    if args.shard_size > 0:
        record_shards(args.out, args.suite, tasks, args.per_task, args.seed, args.shard_size,
                      NoiseConfig(), args.camera_size, frame_every=args.frame_every)
    else:
        record(args.out, args.suite, tasks, args.per_task, args.seed, NoiseConfig(),
               args.camera_size, frame_every=args.frame_every)
    return 0


if __name__ == "__main__":
    sys.exit(main())
