"""Long demo recordings that stop any time and continue: one HDF5 shard per (task, part),
each with its own block of development seeds. No ROS imports.

Shared by the LIBERO recorder (``libero_demos``) and the LIBERO-shaped suites' recorder
(``tabletop_demos``): a shard is written under a temporary name and renamed when complete;
a rerun skips the complete shards and records a stopped one again from its own seed block
(the same seeds, so the same demos).
"""
from __future__ import annotations

import os
from typing import Callable, List, Sequence

#: development seeds of shard (task t, part k): SHARD_SEEDS_PER_TASK * t + SHARD_SEEDS_PER_PART * k
#: after the first seed; a shard tries at most SHARD_SEEDS_PER_PART seeds, so no two shards
#: share one
SHARD_SEEDS_PER_TASK = 10_000
SHARD_SEEDS_PER_PART = 1_000

#: record_one(partial_path, task, count, first_seed): write ``count`` demos of ``task``
#: trying at most SHARD_SEEDS_PER_PART seeds from ``first_seed`` (RuntimeError if it cannot)
RecordOne = Callable[[str, int, int, int], object]


def shard_path(out_dir: str, suite: str, task: int, part: int) -> str:
    """The file of shard ``part`` of ``suite``'s task ``task``."""
    return os.path.join(out_dir, f"{suite}_task{task:02d}_part{part:02d}.hdf5")


def record_in_shards(out_dir: str, suite: str, tasks: Sequence[int], per_task: int, seed: int,
                     shard_size: int, record_one: RecordOne, log=print,
                     shared_scenes: bool = False) -> List[str]:
    """Each task's ``per_task`` demos in shards of ``shard_size``; the shards' paths. With
    ``shared_scenes`` every task's shard ``k`` tries the same seed block (the block task 0
    would get), so tasks whose layout follows from the seed alone get the same scenes under
    each instruction."""
    os.makedirs(out_dir, exist_ok=True)
    paths = []
    for task in tasks:
        for part in range(-(-per_task // shard_size)):
            path = shard_path(out_dir, suite, task, part)
            paths.append(path)
            if os.path.exists(path):
                continue
            count = min(shard_size, per_task - part * shard_size)
            first = (seed + SHARD_SEEDS_PER_TASK * (0 if shared_scenes else task)
                     + SHARD_SEEDS_PER_PART * part)
            partial = path + ".partial"
            record_one(partial, task, count, first)
            os.replace(partial, path)
            log(f"demos: shard {path} complete")
    return paths
