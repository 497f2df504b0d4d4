"""Record scripted demonstrations of the LIBERO-shaped suites (``tabletop_suites``) in the
demo recorder's HDF5 layout (``demos.DemoWriter``), labelled as LIBERO's are. No ROS imports.

Each episode starts from the development seed's layout; the scripted expert is LIBERO's
(``libero_experts.expert_for`` on the task's goal, slowed to ``max_action`` 0.4, nearer a
human demonstration's pace: 90-180 ticks for one pick and place, 300-420 for two) and acts
with the recorder's noise and pushes (``demos.OffNominal``); the label is its clean action.
Only successful episodes are written, with ``ticks_after_success`` more ticks (the hand
moving away), as pick_color's. What is stored is what the policy node gets on this
simulator: upright 224 px views, the 8-D state with the pose in the robot base frame, the
instruction. Labels for the grounded recipe, as ``libero_demos`` writes them: ``obs/part``,
``attrs part_focus`` (each part's [object, target]), ``obs/cube_pos`` (the acting part's
two bodies in the base frame), ``obs/object_boxes`` (where they show in each stored frame,
projected from their known sizes). Run::

    python -m specprune_ros.sim.tabletop_demos --suite sim_spatial --tasks 0-3 \\
        --per-task 50 --seed 10000 --frame-every 2 --shard-size 10 --out demos/tabletop

(stoppable; the same command continues). Seeds: shard k of task t tries the block from
``seed + 10000 t + 1000 k`` (``demo_shards``); evaluations use other seed ranges.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from specprune_ros.sim.demo_shards import SHARD_SEEDS_PER_PART, record_in_shards
from specprune_ros.sim.demos import (DemoWriter, NoiseConfig, OffNominal, SuccessTail,
                                     labelled_episode, record_summary)
from specprune_ros.sim.libero_experts import LiberoExpertConfig, expert_for, parse_ranges
from specprune_ros.sim.libero_sequencer import SequenceExpert
from specprune_ros.sim.sim_arm import SimArm, SimArmConfig, SimObservation
from specprune_ros.sim.tabletop_suites import (HALF_EXTENTS, SUITES, TabletopTask,
                                               suite_tasks, tabletop_task)

#: The suites' expert: LIBERO's pick and place at 40 % of its top speed.
EXPERT = LiberoExpertConfig(max_action=0.4)
TICKS_AFTER_SUCCESS = 6


def expert_obs(obs: SimObservation) -> Dict[str, np.ndarray]:
    """What LIBERO's experts read, from the simulator's observation (world frame)."""
    return {"robot0_eef_pos": obs.eef_pos, "robot0_eef_quat": obs.eef_quat, **obs.extras}


def object_box(arm: SimArm, camera: str, centre: np.ndarray, kind: str) -> np.ndarray:
    """(x0, y0, x1, y1) in fractions of ``camera``'s frame where a ``kind`` object centred
    at ``centre`` (world) shows: its bounding box's eight corners projected; NaN when a
    corner is behind the camera (as LIBERO's boxes: not labelled)."""
    return projected_box(arm, camera, centre, HALF_EXTENTS[kind])


def projected_box(arm: SimArm, camera: str, centre: np.ndarray,
                  half_extents: Sequence[float]) -> np.ndarray:
    """``object_box`` of a world-aligned box of ``half_extents`` (metres) about ``centre``."""
    half = np.asarray(half_extents)
    signs = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)])
    rows, cols = np.array([arm.project(camera, centre + s * half) for s in signs]).T
    size = float(arm.config.camera_size)
    if np.isnan(rows).any():
        return np.full(4, np.nan)
    return np.array([cols.min(), rows.min(), cols.max(), rows.max()]) / size


def expert_parts(expert) -> List:
    """The experts of a goal's parts in the order they run (one for a one-part goal)."""
    return list(expert.parts) if isinstance(expert, SequenceExpert) else [expert]


def first_undone_part(arm: SimArm, steps: Sequence) -> Optional[int]:
    """Where an expert of ``steps`` (``expert_parts``) takes over the episode ``arm`` is
    in: the index of the first part whose goal does not hold yet, when every part before
    it holds and none after it does; None otherwise (all hold, or a later part was done
    out of order: the sequence would redo it)."""
    done, _ = arm.goal_progress()
    holding = {tuple(part[1:]) for part, ok in zip(arm.goal, done) if ok}
    flags = [tuple(step.focus) in holding for step in steps]
    first = flags.index(False) if False in flags else len(flags)
    if first == len(flags) or any(flags[first:]):
        return None
    return first


#: start(arm, obs after the reset) -> (observation with its views rendered, tick) where the
#: expert takes over, or (None, tick) when there is nothing to record (takeover_demos)
Start = Callable[[SimArm, SimObservation], Tuple[Optional[SimObservation], int]]


def record_episode(arm: SimArm, task: TabletopTask, seed: int, noise: NoiseConfig,
                   frame_every: int = 1, start: Optional[Start] = None) -> Optional[Dict]:
    """One noisy expert episode of ``task`` (the arm built for it): the demo dict, or None
    when the expert did not succeed within the task's horizon. Views are rendered and kept
    on ticks t with t % frame_every == seed % frame_every only. With ``start`` something
    else drives the arm from the reset first and the expert takes over where it left it;
    only the expert's part is recorded, its rows (and ``frame_ticks``) counted from the
    takeover; the expert begins at the first part whose goal does not hold yet
    (``first_undone_part``; None when there is none to take over)."""
    obs, first = arm.reset(seed=seed), 0
    expert, off = expert_for(arm.goal, EXPERT), OffNominal(noise, seed)
    steps = expert_parts(expert)
    if start is not None:
        obs, first = start(arm, obs)
        resume = None if obs is None else first_undone_part(arm, steps)
        if resume is None:
            return None
        if resume:
            expert.start_at(resume)
    cameras, phase = arm.config.cameras, seed % frame_every
    frames: Dict[str, List[np.ndarray]] = {cam: [] for cam in cameras}
    focus: Dict[int, List[str]] = {k: list(step.focus) for k, step in enumerate(steps)}
    states, labels, positions, frame_ticks, boxes, parts = [], [], [], [], [], []
    tail = SuccessTail(TICKS_AFTER_SUCCESS)
    for tick in range(first, task.horizon):
        label = expert.act(expert_obs(obs))
        part = expert.part
        named = focus[part]
        if tick % frame_every == phase:  # rendered: the previous step (or reset) asked
            frame_ticks.append(tick - first)  # an index into this demo's rows
            for cam in cameras:
                frames[cam].append(obs.images[cam])
            boxes.append([[object_box(arm, cam, obs.extras[f"{n}_pos"], task.object(n).kind)
                           for n in named] for cam in cameras])
        parts.append(part)
        states.append(obs.proprio_in_base())
        labels.append(label)
        positions.append([obs.point_in_base(obs.extras[f"{n}_pos"]) for n in named])
        # noise and pushes on the recording's own clock (a push early in it, as ever)
        obs = arm.step(off(label, tick - first), render=(tick + 1) % frame_every == phase)
        if tail.ended(obs.success):
            break
    if not tail.succeeded:
        return None
    return labelled_episode(seed, arm.instruction, focus, parts, labels, states, positions,
                            frame_ticks, boxes, frames)


def record(out: str, task: TabletopTask, count: int, seed: int, noise: NoiseConfig,
           frame_every: int = 1, max_tries: Optional[int] = None, log=print,
           start_for: Optional[Callable[[int], Start]] = None,
           extra: Optional[Dict] = None) -> Dict:
    """``count`` successful demos of ``task``, seeds counting up from ``seed``; a summary.
    RuntimeError when ``max_tries`` episodes did not give them. ``start_for(seed)``: each
    episode's ``start`` (record_episode); ``extra``: more of the shard's env_args."""
    config = SimArmConfig(task=task.name, horizon=task.horizon)
    env_args = {"task": task.name, "suite": task.suite, "camera_size": config.camera_size,
                "cameras": list(config.cameras), "control_rate_hz": config.control_rate_hz,
                "action_dim": 7, "proprio_frame": "base", "noise": asdict(noise),
                "expert": asdict(EXPERT), "first_seed": seed, "frame_every": frame_every,
                **(extra or {})}
    writer = DemoWriter(out, env_args)
    tried, start = 0, time.perf_counter()
    try:
        with SimArm(config) as arm:
            while writer.count < count:
                if max_tries is not None and tried >= max_tries:
                    raise RuntimeError(f"tabletop demos: {writer.count} of {count} demos of "
                                       f"{task.name} after {tried} tries")
                driver = start_for(seed + tried) if start_for is not None else None
                episode = record_episode(arm, task, seed + tried, noise, frame_every, driver)
                tried += 1
                if episode is not None:
                    writer.add(episode)
    finally:
        writer.close()
    summary = record_summary(writer, tried, start, out)
    log(f"tabletop demos: {task.name} {json.dumps(summary)}")
    return summary


def record_shards(out_dir: str, suite: str, tasks: Sequence[int], per_task: int, seed: int,
                  shard_size: int, noise: NoiseConfig, frame_every: int = 1,
                  log=print, start_for: Optional[Callable[[int], Start]] = None,
                  extra: Optional[Dict] = None, shared_scenes: bool = False) -> List[str]:
    """``per_task`` demos of each of ``suite``'s ``tasks`` in resumable shards (with
    ``shared_scenes``, every task on the same seeds: demo_shards.record_in_shards)."""
    def record_one(partial: str, index: int, count: int, first: int) -> None:
        record(partial, tabletop_task(f"{suite}_{index}"), count, first, noise, frame_every,
               max_tries=SHARD_SEEDS_PER_PART, log=log, start_for=start_for, extra=extra)

    return record_in_shards(out_dir, suite, tasks, per_task, seed, shard_size, record_one, log,
                            shared_scenes)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--suite", default="sim_spatial", choices=SUITES)
    parser.add_argument("--tasks", default="all", help="task indices, e.g. 0-3 (all: every)")
    parser.add_argument("--per-task", type=int, default=50, help="successful demos per task")
    parser.add_argument("--seed", type=int, default=10000, help="first development seed")
    parser.add_argument("--out", default="demos/tabletop", help="folder of shards")
    parser.add_argument("--frame-every", type=int, default=2,
                        help="render and store the views on every k-th tick only")
    parser.add_argument("--shard-size", type=int, default=10, help="demos per shard")
    parser.add_argument("--shared-scenes", action="store_true",
                        help="every task on the same seeds: a suite's tasks share their "
                        "scene on a seed (test_tabletop_scene), so each scene is shown under "
                        "every instruction and only the instruction tells them apart")
    args = parser.parse_args(argv)
    if min(args.per_task, args.frame_every, args.shard_size) < 1:
        parser.error("--per-task, --frame-every and --shard-size must be >= 1")
    known = [t.index for t in suite_tasks(args.suite)]
    tasks = known if args.tasks == "all" else parse_ranges(args.tasks)
    unknown = sorted(set(tasks) - set(known))
    if unknown:
        parser.error(f"{args.suite} has tasks {known}, not {unknown}")
    record_shards(args.out, args.suite, tasks, args.per_task, args.seed, args.shard_size,
                  NoiseConfig(), args.frame_every, shared_scenes=args.shared_scenes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
